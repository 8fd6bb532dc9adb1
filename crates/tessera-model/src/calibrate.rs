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
use crate::tolerance;

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
    /// How far a secure run's logits may lie from the fixed-point reference's, in real units,
    /// measured on the samples ([`crate::tolerance`]).
    pub logit_tolerance: f64,
}

impl Calibration {
    /// The validated parameters.
    pub fn params(&self) -> Result<FixedPointParams> {
        Ok(FixedPointParams::new(self.f, self.f_w, self.bound_bits)?)
    }

    /// [`logit_tolerance`](Self::logit_tolerance) in units of the last place of `model`'s
    /// logits.
    pub fn tolerance_lsb(&self, model: &FixedModel) -> i64 {
        (self.logit_tolerance * (model.output_bits() as f64).exp2()).round() as i64
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

/// Lowest statistical security calibration falls back to when 40 bits leave too little precision.
pub const MIN_CALIBRATED_SECURITY: u32 = 32;
/// Label agreement with `f32` on the samples that calibration asks for before it gives up bits
/// of statistical security for precision.
pub const TARGET_AGREEMENT: f64 = 0.995;
/// Largest logit error (against `f32`) on the samples that calibration accepts before it gives
/// up bits of statistical security: label agreement on a few hundred samples is a coarse
/// signal, the worst logit error a sharper one. Secure runs add their own rounding noise of
/// the same order, so this leaves them room.
pub const MAX_LOGIT_ERROR: f64 = 0.5;

/// Calibrates a merged model on `batch` normalized sample images.
///
/// Starts at σ = 40; if the split with the smallest mean logit error does not keep the
/// fixed-point labels equal to the `f32` labels on 99.5% of the samples with every logit within
/// 0.5 of `f32`, it lowers σ one bit at a time (never below 32),
/// trading statistical security for precision. The chosen σ is recorded with the model, with
/// the logit tolerance of secure runs measured on the same samples.
pub fn calibrate(model: &Model, samples: &[f32], batch: usize) -> Result<Calibration> {
    let mut calibration = choose(model, samples, batch)?;
    let fixed = FixedModel::new(model, calibration.params()?)?;
    let lsb = tolerance::measure(&fixed, &fixed.encode_input(samples, batch)?, batch)?;
    calibration.logit_tolerance = lsb as f64 / (fixed.output_bits() as f64).exp2();
    Ok(calibration)
}

/// The parameters, without the tolerance.
fn choose(model: &Model, samples: &[f32], batch: usize) -> Result<Calibration> {
    let max_abs = max_abs_activation(model, samples, batch)?;
    let reference = PlainEngine::new(model).run(samples, batch)?;
    let classes = model.output_len();
    let labels = |v: &[f64]| v.chunks(classes).map(argmax).collect::<Vec<_>>();
    let ref_labels = labels(&reference.iter().map(|&v| v as f64).collect::<Vec<_>>());
    // |x| · 2^(f+f_w) · 2 < 2^ℓx.
    let magnitude = (max_abs.max(1e-3)).log2().ceil().max(0.0) as u32;
    let mut best: Option<(f64, Calibration)> = None;
    for sigma in (MIN_CALIBRATED_SECURITY..=TARGET_STATISTICAL_SECURITY).rev() {
        let bound_bits = zt::LOG2_T - 1 - sigma;
        let Some(budget) = bound_bits.checked_sub(1 + magnitude).filter(|&b| b >= 4) else { continue };
        let mut best_here: Option<(f64, Calibration)> = None;
        for f in 2..budget - 1 {
            let f_w = budget - f;
            let params = FixedPointParams::new(f, f_w, bound_bits)?;
            let Ok(out) = FixedModel::new(model, params)?.run(samples, batch) else { continue };
            let err = out.iter().zip(&reference).map(|(a, &b)| (a - b as f64).abs()).sum::<f64>() / out.len() as f64;
            let worst = out.iter().zip(&reference).map(|(a, &b)| (a - b as f64).abs()).fold(0.0, f64::max);
            let agree = labels(&out).iter().zip(&ref_labels).filter(|(a, b)| a == b).count() as f64 / batch as f64;
            if best_here.as_ref().is_none_or(|(_, b)| err < b.mean_abs_logit_error) {
                let cal = Calibration {
                    f,
                    f_w,
                    bound_bits,
                    statistical_security: params.statistical_security(),
                    max_abs_activation: max_abs,
                    samples: batch,
                    mean_abs_logit_error: err,
                    logit_tolerance: 0.0,
                };
                best_here = Some((if worst <= MAX_LOGIT_ERROR { agree } else { 0.0 }, cal));
            }
        }
        let Some((agree, cal)) = best_here else { continue };
        if agree >= TARGET_AGREEMENT {
            return Ok(cal);
        }
        if best.as_ref().is_none_or(|(a, _)| agree > *a) {
            best = Some((agree, cal));
        }
    }
    best.map(|(_, c)| c).ok_or(ModelError::NotFixedPoint {
        node: "<model>".into(),
        reason: "no fixed-point parameters fit the samples",
    })
}

fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}
