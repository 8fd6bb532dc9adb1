//! Bayesian models (suite bayes, PROTOCOLS.md section 7): a factorized Gaussian posterior over
//! the weights and biases of the linear layers, around the model's own weights as means.
//!
//! A forward pass uses a *sample* of the model: every weight `w = μ + σ·ε` with `ε ~ N(0, 1)`
//! drawn from the caller's CSPRNG, fresh per sample and layer. The sample is an ordinary
//! [`Model`], so it goes through the same merging pass and quantization as every other model.

use rand_core::{CryptoRng, RngCore};
use rand_distr::{Distribution, StandardNormal};

use std::sync::Arc;

use tessera_field::FixedPointParams;

use crate::error::{ModelError, Result};
use crate::fixed::FixedModel;
use crate::ir::{Model, Op};
use crate::passes::merge;

/// The standard deviations of one linear layer's weights and biases.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPosterior {
    /// The linear node (index into [`Model::nodes`]).
    pub node: usize,
    /// One standard deviation per weight, laid out like the weights.
    pub weight_sigma: Vec<f32>,
    /// One per bias, if the biases are Bayesian.
    pub bias_sigma: Option<Vec<f32>>,
}

/// A posterior over a model's linear layers; the means are the model's weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Posterior {
    layers: Vec<LayerPosterior>,
}

impl Posterior {
    /// Checks `layers` against `mean`: each names a distinct linear node, with one finite,
    /// non-negative standard deviation per weight (and per bias).
    pub fn new(mean: &Model, layers: Vec<LayerPosterior>) -> Result<Self> {
        let mut seen = vec![false; mean.nodes().len()];
        for l in &layers {
            let node = mean.nodes().get(l.node).ok_or_else(|| ModelError::Shape {
                node: format!("#{}", l.node),
                detail: "a posterior for a node that does not exist".into(),
            })?;
            let bad = |detail: String| ModelError::Shape { node: node.name.clone(), detail };
            let Op::Linear(linear) = &node.op else {
                return Err(bad("a posterior on a node that is not linear".into()));
            };
            if std::mem::replace(&mut seen[l.node], true) {
                return Err(bad("two posteriors for one node".into()));
            }
            if l.weight_sigma.len() != linear.weight.len() {
                return Err(bad(format!(
                    "{} weight deviations for {} weights",
                    l.weight_sigma.len(),
                    linear.weight.len()
                )));
            }
            match (&l.bias_sigma, &linear.bias) {
                (None, _) => {}
                (Some(s), Some(b)) if s.len() == b.len() => {}
                (Some(s), b) => {
                    return Err(bad(format!(
                        "{} bias deviations for {} biases",
                        s.len(),
                        b.as_ref().map_or(0, |b| b.len())
                    )));
                }
            }
            let all = l.weight_sigma.iter().chain(l.bias_sigma.iter().flatten());
            if all.clone().any(|s| !s.is_finite() || *s < 0.0) {
                return Err(bad("a standard deviation that is negative or not finite".into()));
            }
        }
        Ok(Self { layers })
    }

    /// The Bayesian layers.
    pub fn layers(&self) -> &[LayerPosterior] {
        &self.layers
    }

    /// The median standard deviation over every Bayesian weight and bias.
    pub fn median_sigma(&self) -> f32 {
        let mut all: Vec<f32> = self
            .layers
            .iter()
            .flat_map(|l| l.weight_sigma.iter().chain(l.bias_sigma.iter().flatten()))
            .copied()
            .collect();
        if all.is_empty() {
            return 0.0;
        }
        let middle = all.len() / 2;
        *all.select_nth_unstable_by(middle, f32::total_cmp).1
    }

    /// One sample of the model: every Bayesian weight and bias drawn from its Gaussian.
    /// `mean` must be the model this posterior was built for.
    pub fn sample<R: RngCore + CryptoRng>(&self, mean: &Model, rng: &mut R) -> Model {
        let mut sampled = mean.clone();
        let mut draw = |mu: &mut f32, sigma: f32| {
            let eps: f64 = StandardNormal.sample(rng);
            *mu = (*mu as f64 + sigma as f64 * eps) as f32;
        };
        for l in &self.layers {
            let Op::Linear(linear) = &mut sampled.nodes[l.node].op else { unreachable!("checked in Posterior::new") };
            linear.weight.iter_mut().zip(&l.weight_sigma).for_each(|(w, &s)| draw(w, s));
            if let (Some(b), Some(s)) = (&mut linear.bias, &l.bias_sigma) {
                b.iter_mut().zip(s).for_each(|(b, &s)| draw(b, s));
            }
        }
        sampled
    }

    /// One sample, merged and quantized with `params`: what a forward pass runs.
    pub fn sample_fixed<R: RngCore + CryptoRng>(
        &self,
        mean: &Model,
        params: FixedPointParams,
        rng: &mut R,
    ) -> Result<Arc<FixedModel>> {
        let (merged, _) = merge(&self.sample(mean, rng))?;
        FixedModel::new(&merged, params)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use tessera_field::kernels::{ConvGeometry, ImageShape};

    use super::*;
    use crate::ir::Linear;
    use crate::meta::ModelMeta;

    fn dense_model(weights: Vec<f32>) -> Model {
        let geometry = ConvGeometry::dense(weights.len() / 2, 2);
        let linear = Linear { geometry, groups: 1, weight: weights, bias: Some(vec![0.0, 1.0]), dense: true };
        Model::new(
            ImageShape::new(geometry.input.c, 1, 1),
            vec![("fc".into(), Op::Linear(linear), vec![0])],
            1,
            ModelMeta::default(),
        )
        .unwrap()
    }

    fn weights(m: &Model) -> (Vec<f32>, Vec<f32>) {
        match &m.nodes()[0].op {
            Op::Linear(l) => (l.weight.clone(), l.bias.clone().unwrap()),
            _ => unreachable!(),
        }
    }

    #[test]
    fn samples_follow_the_posterior() {
        let n = 20_000;
        let model = dense_model(vec![0.5; 2 * n]);
        let sigma: Vec<f32> = (0..2 * n).map(|i| if i < n { 0.1 } else { 0.0 }).collect();
        let layer = LayerPosterior { node: 0, weight_sigma: sigma, bias_sigma: Some(vec![2.0, 0.0]) };
        let posterior = Posterior::new(&model, vec![layer]).unwrap();
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let (w, b) = weights(&posterior.sample(&model, &mut rng));
        let (noisy, fixed) = w.split_at(n);
        let mean = noisy.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = noisy.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.003, "mean {mean}");
        assert!((var.sqrt() - 0.1).abs() < 0.003, "std {}", var.sqrt());
        assert!(fixed.iter().all(|&v| v == 0.5));
        assert_ne!(b[0], 0.0);
        assert_eq!(b[1], 1.0);
        // Fresh per sample; reproducible from the same seed.
        let again = weights(&posterior.sample(&model, &mut rng)).0;
        assert_ne!(again, w);
        assert_eq!(weights(&posterior.sample(&model, &mut ChaCha20Rng::from_seed([7; 32]))).0, w);
    }

    #[test]
    fn mismatched_posteriors_are_refused() {
        let model = dense_model(vec![0.5; 8]);
        let layer = |node, w: usize, b: Option<usize>, value: f32| LayerPosterior {
            node,
            weight_sigma: vec![value; w],
            bias_sigma: b.map(|b| vec![value; b]),
        };
        assert!(Posterior::new(&model, vec![layer(0, 8, Some(2), 0.1)]).is_ok());
        for bad in [
            vec![layer(1, 8, None, 0.1)],
            vec![layer(0, 7, None, 0.1)],
            vec![layer(0, 8, Some(3), 0.1)],
            vec![layer(0, 8, None, -1.0)],
            vec![layer(0, 8, None, f32::NAN)],
            vec![layer(0, 8, None, 0.1), layer(0, 8, None, 0.1)],
        ] {
            assert!(matches!(Posterior::new(&model, bad), Err(ModelError::Shape { .. })));
        }
    }
}
