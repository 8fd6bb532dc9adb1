//! Loading a model: import, merge, attach the calibration stored beside it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tessera_model::calibrate::Calibration;
use tessera_model::fixed::FixedModel;
use tessera_model::passes::{MergeReport, Merging, merge_with};
use tessera_model::{Model, ModelMeta, Posterior};
use tessera_onnx::Limits;

use crate::error::{Error, Result};

/// A model ready to run: the imported graph, the merged graph and its calibration.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// Where it came from.
    pub path: PathBuf,
    /// BLAKE3 of the model file: every party of a cluster must load the same bytes.
    pub hash: [u8; 32],
    /// The graph as imported.
    pub original: Model,
    /// The graph after the merging pass; this is what every engine runs.
    pub merged: Model,
    /// What the merging pass changed.
    pub report: MergeReport,
    /// Fixed-point parameters, if the model was calibrated.
    calibration: Option<Calibration>,
    /// The posterior over the original graph's linear layers, if the model is Bayesian.
    pub posterior: Option<Posterior>,
    /// The fixed-point model, quantized on first use.
    fixed: OnceLock<Arc<FixedModel>>,
}

/// The calibration file stored beside a model: `name.onnx` → `name.calibration.json`.
pub fn calibration_path(model: &Path) -> PathBuf {
    model.with_extension("calibration.json")
}

impl LoadedModel {
    /// Imports, merges and attaches the calibration (if present) of the model at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_merged(path, Merging::Full)
    }

    /// [`load`](Self::load) with only the merging steps `merging` names.
    pub fn load_merged(path: &Path, merging: Merging) -> Result<Self> {
        let mut model = Self::load_uncalibrated_merged(path, merging)?;
        let sidecar = calibration_path(path);
        model.calibration = match std::fs::read_to_string(&sidecar) {
            Ok(text) => Some(serde_json::from_str::<Calibration>(&text).map_err(|e| Error::Calibration {
                path: sidecar.display().to_string(),
                reason: format!("{e} (`tessera calibrate` writes it afresh)"),
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Calibration { path: sidecar.display().to_string(), reason: e.to_string() });
            }
        };
        tracing::debug!(path = %path.display(), calibrated = model.calibration.is_some(), "calibration read");
        Ok(model)
    }

    /// Imports and merges the model at `path`, ignoring any calibration beside it (to
    /// calibrate it afresh).
    pub fn load_uncalibrated(path: &Path) -> Result<Self> {
        Self::load_uncalibrated_merged(path, Merging::Full)
    }

    fn load_uncalibrated_merged(path: &Path, merging: Merging) -> Result<Self> {
        let limits = Limits::default();
        let io = |e: std::io::Error| tessera_onnx::ImportError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > limits.max_file_bytes {
            return Err(tessera_onnx::ImportError::TooLarge { actual: len, maximum: limits.max_file_bytes }.into());
        }
        // One read: the hash every party compares is of the bytes imported.
        let bytes = std::fs::read(path).map_err(io)?;
        let (original, posterior) = tessera_onnx::import_bytes_with_posterior(&bytes, &limits)?;
        let (merged, report) = merge_with(&original, merging)?;
        tracing::debug!(path = %path.display(), layers = merged.nodes().len(), "model loaded");
        Ok(Self {
            path: path.to_path_buf(),
            hash: *blake3::hash(&bytes).as_bytes(),
            original,
            merged,
            report,
            calibration: None,
            posterior,
            fixed: OnceLock::new(),
        })
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.merged.meta
    }

    /// The fixed-point model, which needs a calibration: quantized once, then shared.
    pub fn fixed(&self) -> Result<Arc<FixedModel>> {
        if let Some(fixed) = self.fixed.get() {
            return Ok(fixed.clone());
        }
        let fixed = FixedModel::new(&self.merged, self.params()?)?;
        Ok(self.fixed.get_or_init(|| fixed).clone())
    }

    /// The fixed-point parameters of the calibration.
    pub fn params(&self) -> Result<tessera_field::FixedPointParams> {
        let cal = self.calibration.as_ref().ok_or_else(|| Error::NotCalibrated {
            model: self.path.display().to_string(),
            sidecar: calibration_path(&self.path).display().to_string(),
        })?;
        let params = cal.params().map_err(|e| Error::Calibration {
            path: calibration_path(&self.path).display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(params)
    }

    /// The fixed-point calibration, if the model has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// Chooses the fixed-point parameters from `batch` normalized sample images (in memory:
    /// [`save_calibration`](Self::save_calibration) writes them beside the model).
    pub fn calibrate(&mut self, samples: &[f32], batch: usize) -> Result<&Calibration> {
        let calibration = tessera_model::calibrate::calibrate(&self.merged, samples, batch)?;
        self.set_calibration(calibration);
        Ok(self.calibration.as_ref().expect("just set"))
    }

    /// Uses `calibration` from now on.
    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = Some(calibration);
        self.fixed = OnceLock::new();
    }

    /// Writes the calibration beside the model.
    pub fn save_calibration(&self) -> Result<PathBuf> {
        let path = calibration_path(&self.path);
        let calibration = self.calibration.as_ref().ok_or_else(|| Error::NotCalibrated {
            model: self.path.display().to_string(),
            sidecar: path.display().to_string(),
        })?;
        let text = serde_json::to_string_pretty(calibration).expect("calibration serializes");
        std::fs::write(&path, text + "\n")
            .map_err(|e| Error::Calibration { path: path.display().to_string(), reason: e.to_string() })?;
        Ok(path)
    }
}
