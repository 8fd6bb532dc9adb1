//! Calibration: choose `f`, `f_w` and the bound `ℓx` from sample inputs.
//!
//! The bound is set for the target statistical security (`σ = 40`: `ℓx = ⌊log2 t⌋ − 1 − σ`). The
//! largest value seen at any nonlinear input or logit, with one bit of headroom, fixes how many
//! fractional bits `f + f_w` fit under it; the split between `f` and `f_w` is the one with the
//! smallest logit error against `f32` on the samples.

use serde::{Deserialize, Serialize};
use tessera_field::fixed::TARGET_STATISTICAL_SECURITY;
use tessera_field::{FixedPointParams, zt};

use crate::error::{ModelError, Result};
use crate::fixed::FixedModel;
use crate::ir::Model;
use crate::plain::PlainEngine;

/// Fixed-point parameters chosen for a model, with the evidence. Stored beside the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Activation fractional bits `f`.
    pub f: u32,
    /// Weight fractional bits `f_w`.
    pub f_w: u32,
    /// Activation bound `ℓx` (bits, product scale).
    pub bound_bits: u32,
    /// Statistical security the bound leaves.
    pub statistical_security: u32,
    /// Largest magnitude seen at a nonlinear input or logit, in real units.
    pub max_abs_activation: f64,
    /// Images used.
    pub samples: usize,
    /// Mean absolute difference between fixed-point and `f32` logits on the samples.
    pub mean_abs_logit_error: f64,
}

impl Calibration {
    /// The validated parameters.
    pub fn params(&self) -> Result<FixedPointParams> {
        Ok(FixedPointParams::new(self.f, self.f_w, self.bound_bits)?)
    }
}

/// Largest magnitude at every nonlinear input and at the logits, over `samples` (`f32` run).
pub fn max_abs_activation(model: &Model, samples: &[f32], batch: usize) -> Result<f64> {
    let watched: Vec<bool> = (0..model.nodes().len())
        .map(|i| {
            i + 1 == model.output() || model.nodes().iter().any(|n| n.op.is_nonlinear() && n.inputs.contains(&(i + 1)))
        })
        .collect();
    let mut engine = PlainEngine::new(model);
    let mut max = 0f64;
    engine.run_observed(samples, batch, &mut |i, out| {
        if watched[i] {
            max = out.iter().fold(max, |m, &v| m.max(v.abs() as f64));
        }
    })?;
    Ok(max)
}

/// Calibrates a merged model on `batch` normalized sample images.
pub fn calibrate(model: &Model, samples: &[f32], batch: usize) -> Result<Calibration> {
    let max_abs = max_abs_activation(model, samples, batch)?;
    let bound_bits = zt::LOG2_T - 1 - TARGET_STATISTICAL_SECURITY;
    // |x| · 2^(f+f_w) · 2 < 2^ℓx.
    let magnitude = (max_abs.max(1e-3)).log2().ceil().max(0.0) as u32;
    let budget = bound_bits.checked_sub(1 + magnitude).filter(|&b| b >= 4).ok_or(ModelError::NotFixedPoint {
        node: "<model>".into(),
        reason: "activations too large for the field at 40 bits of statistical security",
    })?;
    let reference = PlainEngine::new(model).run(samples, batch)?;
    let mut best: Option<Calibration> = None;
    for f in 2..budget - 1 {
        let f_w = budget - f;
        let params = FixedPointParams::new(f, f_w, bound_bits)?;
        let Ok(out) = FixedModel::new(model, params)?.run(samples, batch) else {
            continue;
        };
        let err = out.iter().zip(&reference).map(|(a, &b)| (a - b as f64).abs()).sum::<f64>() / out.len() as f64;
        if best.as_ref().is_none_or(|b| err < b.mean_abs_logit_error) {
            best = Some(Calibration {
                f,
                f_w,
                bound_bits,
                statistical_security: params.statistical_security(),
                max_abs_activation: max_abs,
                samples: batch,
                mean_abs_logit_error: err,
            });
        }
    }
    best.ok_or(ModelError::NotFixedPoint { node: "<model>".into(), reason: "no fixed-point split fits the samples" })
}
