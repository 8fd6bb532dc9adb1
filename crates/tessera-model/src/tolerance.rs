//! How far a secure run's logits may lie from the fixed-point reference, measured.
//!
//! A secure run that truncates (serpens-n, serpens-2) rounds every rescaled value
//! stochastically where the reference rounds to nearest: within one LSB of it, and those
//! differences propagate through the later layers. How far depends on the weights, so it is
//! measured rather than bounded: the reference runs on sample inputs with stochastic rounding, a
//! few times, and the tolerance is [`FACTOR`] times the largest logit difference seen.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_field::zt;

use crate::error::Result;
use crate::fixed::FixedModel;
use crate::runner::Runner;

/// Noisy runs of the reference per sample batch.
pub const DRAWS: usize = 8;
/// The tolerance as a multiple of the largest logit difference the noisy runs show on the
/// calibration images: secure runs on the test images reached 1.3 × that difference.
pub const FACTOR: i64 = 3;

/// The reference on `input` (`batch` encoded images) with every rescaling rounded
/// stochastically instead of to nearest — up if a uniform draw falls below the fraction cut off —
/// as a secure run's masked truncation rounds: `⌊(x + R) / 2^s⌋ − ⌊R / 2^s⌋` with `R` uniform is
/// `⌊x / 2^s⌋ + 1` with probability `frac(x / 2^s)`.
pub fn run_with_rounding_noise(model: &Arc<FixedModel>, input: Vec<u64>, batch: usize, rng: &mut impl Rng) -> Vec<u64> {
    let mut runner = Runner::new(model.clone(), input, batch, true);
    while let Some(layer) = runner.advance() {
        let out = layer.eval_rescaled(runner.pending_input(), batch, |v, shift| {
            let floor = v >> shift;
            let cut = v - (floor << shift);
            (floor + i128::from(rng.random_range(0..1i128 << shift) < cut)) as i64
        });
        runner.complete(out);
    }
    runner.output().to_vec()
}

/// The logit tolerance in LSB at the output scale: [`FACTOR`] × the largest difference between
/// the reference and [`DRAWS`] noisy runs on `input` (`batch` encoded images), at least one LSB.
pub fn measure(model: &Arc<FixedModel>, input: &[u64], batch: usize) -> Result<i64> {
    let reference = model.run_encoded(input.to_vec(), batch)?;
    // A measurement, not a secret: a fixed seed keeps calibration files reproducible.
    let mut rng = ChaCha8Rng::seed_from_u64(0x7e55e2a);
    let mut worst = 0i64;
    for _ in 0..DRAWS {
        let noisy = run_with_rounding_noise(model, input.to_vec(), batch, &mut rng);
        for (&a, &b) in noisy.iter().zip(&reference) {
            worst = worst.max((zt::to_i64(a) - zt::to_i64(b)).abs());
        }
    }
    Ok(FACTOR * worst.max(1))
}
