//! Loading a model: import, merge, attach the calibration stored beside it.

use std::path::{Path, PathBuf};

use tessera_model::calibrate::Calibration;
use tessera_model::fixed::FixedModel;
use tessera_model::passes::{MergeReport, merge};
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
    pub calibration: Option<Calibration>,
    /// The posterior over the original graph's linear layers, if the model is Bayesian.
    pub posterior: Option<Posterior>,
}

/// The calibration file stored beside a model: `name.onnx` → `name.calibration.json`.
pub fn calibration_path(model: &Path) -> PathBuf {
    model.with_extension("calibration.json")
}

impl LoadedModel {
    /// Imports, merges and attaches the calibration (if present) of the model at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let limits = Limits::default();
        let (original, posterior) = tessera_onnx::import_file_with_posterior(path, &limits)?;
        let bytes = std::fs::read(path)
            .map_err(|e| tessera_onnx::ImportError::Io { path: path.display().to_string(), reason: e.to_string() })?;
        let (merged, report) = merge(&original)?;
        let sidecar = calibration_path(path);
        let calibration = match std::fs::read_to_string(&sidecar) {
            Ok(text) => Some(
                serde_json::from_str::<Calibration>(&text)
                    .map_err(|e| Error::Calibration { path: sidecar.display().to_string(), reason: e.to_string() })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(Error::Calibration { path: sidecar.display().to_string(), reason: e.to_string() });
            }
        };
        tracing::debug!(path = %path.display(), layers = merged.nodes().len(), calibrated = calibration.is_some(), "model loaded");
        Ok(Self {
            path: path.to_path_buf(),
            hash: *blake3::hash(&bytes).as_bytes(),
            original,
            merged,
            report,
            calibration,
            posterior,
        })
    }

    /// The model's metadata.
    pub fn meta(&self) -> &ModelMeta {
        &self.merged.meta
    }

    /// The fixed-point model, which needs a calibration.
    pub fn fixed(&self) -> Result<std::sync::Arc<FixedModel>> {
        Ok(FixedModel::new(&self.merged, self.params()?)?)
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

    /// Writes `calibration` beside the model.
    pub fn save_calibration(&mut self, calibration: Calibration) -> Result<PathBuf> {
        let path = calibration_path(&self.path);
        let text = serde_json::to_string_pretty(&calibration).expect("calibration serializes");
        std::fs::write(&path, text + "\n")
            .map_err(|e| Error::Calibration { path: path.display().to_string(), reason: e.to_string() })?;
        self.calibration = Some(calibration);
        Ok(path)
    }
}
