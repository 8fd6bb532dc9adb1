//! Accuracy of the `f32` engine and the fixed-point reference on a labelled set, and how well
//! they agree.

use serde::Serialize;
use tessera_field::seed::os_rng;
use tessera_model::passes::merge;
use tessera_model::plain::PlainEngine;

use crate::dataset::Dataset;
use crate::error::{Error, InputProblem, Result};
use crate::input::normalize;
use crate::load::LoadedModel;

/// What an evaluation measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalReport {
    /// Images evaluated.
    pub images: usize,
    /// Top-1 accuracy of the `f32` engine.
    pub f32_accuracy: f64,
    /// Top-1 accuracy of the fixed-point reference (when calibrated).
    pub fixed_accuracy: Option<f64>,
    /// Fraction of images where both give the same label.
    pub label_agreement: Option<f64>,
    /// Largest |fixed − f32| over all logits.
    pub max_logit_difference: Option<f64>,
    /// Mean |fixed − f32| over all logits.
    pub mean_logit_difference: Option<f64>,
}

/// The index of the largest value.
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// Evaluates `data` in batches (`limit` images of it drawn across the classes, if given),
/// reporting progress (images done).
pub fn evaluate(
    model: &LoadedModel,
    data: &Dataset,
    limit: Option<usize>,
    progress: &mut dyn FnMut(usize),
) -> Result<EvalReport> {
    let shape = model.merged.input_shape();
    if data.shape != shape {
        return Err(Error::Input {
            path: "dataset".into(),
            problem: InputProblem::Corrupt(format!("images are {:?}, the model expects {shape:?}", data.shape)),
        });
    }
    let fixed = if model.calibration().is_some() { Some(model.fixed()?) } else { None };
    let data = &limited(data, limit);
    let n = data.len();
    let classes = model.merged.output_len();
    let mut engine = PlainEngine::new(&model.merged);
    let (mut f32_ok, mut fixed_ok, mut agree) = (0usize, 0usize, 0usize);
    let (mut max_diff, mut sum_diff) = (0f64, 0f64);
    const BATCH: usize = 50;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let b = end - start;
        let x = normalize(data.pixels(start..end), shape, model.meta());
        let logits = engine.run(&x, b)?;
        let fixed_logits = fixed.as_ref().map(|f| f.run(&x, b)).transpose()?;
        for i in 0..b {
            let label = data.labels[start + i] as usize;
            let l = &logits[i * classes..(i + 1) * classes];
            let p = argmax(l);
            f32_ok += (p == label) as usize;
            if let Some(fl) = &fixed_logits {
                let q = &fl[i * classes..(i + 1) * classes];
                let pq = argmax(q);
                fixed_ok += (pq == label) as usize;
                agree += (pq == p) as usize;
                for (a, &b) in q.iter().zip(l) {
                    let d = (a - b as f64).abs();
                    max_diff = max_diff.max(d);
                    sum_diff += d;
                }
            }
        }
        progress(end);
    }
    let frac = |k: usize| k as f64 / n.max(1) as f64;
    Ok(EvalReport {
        images: n,
        f32_accuracy: frac(f32_ok),
        fixed_accuracy: fixed.as_ref().map(|_| frac(fixed_ok)),
        label_agreement: fixed.as_ref().map(|_| frac(agree)),
        max_logit_difference: fixed.as_ref().map(|_| max_diff),
        mean_logit_difference: fixed.as_ref().map(|_| sum_diff / (n * classes).max(1) as f64),
    })
}

/// `limit` images of `data` drawn across the classes, or all of it.
fn limited(data: &Dataset, limit: Option<usize>) -> std::borrow::Cow<'_, Dataset> {
    match limit {
        Some(n) if n < data.len() => std::borrow::Cow::Owned(data.stratified(n)),
        _ => std::borrow::Cow::Borrowed(data),
    }
}

/// The accuracy of a Bayesian model's meta-prediction with `S` sampled forward passes, as suite
/// bayes computes it (the mean softmax of the samples), for each `S` in `counts`: one set of
/// `max(counts)` weight samples, fresh from the CSPRNG, of which each `S` uses the first.
pub fn sampled_accuracy(
    model: &LoadedModel,
    data: &Dataset,
    limit: Option<usize>,
    counts: &[usize],
) -> Result<Vec<(usize, f64)>> {
    let posterior =
        model.posterior.as_ref().ok_or_else(|| Error::NoPosterior { model: model.path.display().to_string() })?;
    let data = &limited(data, limit);
    let most = counts.iter().copied().max().unwrap_or(0);
    let mut rng = os_rng();
    let samples: Vec<_> =
        (0..most).map(|_| Ok(merge(&posterior.sample(&model.original, &mut rng))?.0)).collect::<Result<_>>()?;
    let mut engines: Vec<_> = samples.iter().map(PlainEngine::new).collect();
    let (shape, classes, n) = (model.merged.input_shape(), model.merged.output_len(), data.len());
    let mut correct = vec![0usize; counts.len()];
    const BATCH: usize = 50;
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let x = normalize(data.pixels(start..end), shape, model.meta());
        let mut mean = vec![vec![0f64; classes]; end - start];
        for (s, engine) in engines.iter_mut().enumerate() {
            let logits = engine.run(&x, end - start)?;
            for (m, l) in mean.iter_mut().zip(logits.chunks(classes)) {
                let top = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let e: Vec<f64> = l.iter().map(|&v| f64::from(v - top).exp()).collect();
                let sum: f64 = e.iter().sum();
                m.iter_mut().zip(&e).for_each(|(a, v)| *a += v / sum);
            }
            for (c, _) in counts.iter().enumerate().filter(|&(_, &k)| k == s + 1) {
                correct[c] +=
                    mean.iter().enumerate().filter(|(i, m)| argmax(m) == data.labels[start + i] as usize).count();
            }
        }
    }
    Ok(counts.iter().zip(correct).map(|(&k, c)| (k, c as f64 / n.max(1) as f64)).collect())
}
