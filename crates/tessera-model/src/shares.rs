//! Additive shares of a fixed-point model's weights and biases for two servers that must not see
//! them (suite seco's remote servers B and C): `W = W_B + W_C` and `b = b_B + b_C` in `Z_t`, with
//! `W_B`, `b_B` uniform. Each server computes its share of a layer's output, `W_X·a + b_X`, on a
//! value `a` both hold; zeros the architecture fixes (the channels a grouped filter does not read)
//! stay zeros in both shares.

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::conv::conv2d_zt;
use tessera_field::kernels::{ConvGeometry, ConvKernel};
use tessera_field::zt;
use zeroize::{Zeroize, Zeroizing};

use crate::fixed::{FixedModel, FixedOp};

/// One server's share of one convolution or FC layer. `Debug` shows sizes only; wiped on drop.
pub struct LayerShare {
    /// `out_channels × terms / groups`, as [`ConvKernel::group_weights`] orders them.
    weights: Zeroizing<Vec<u64>>,
    /// One per output channel (zeros for a layer without bias).
    bias: Zeroizing<Vec<u64>>,
    /// The balanced digits of the weights ([`zt::share_digits`]) as exact kernels.
    digits: [ConvKernel; 2],
}

impl std::fmt::Debug for LayerShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerShare").field("weights", &self.weights.len()).finish_non_exhaustive()
    }
}

impl Drop for LayerShare {
    fn drop(&mut self) {
        self.digits.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl LayerShare {
    /// A share of a layer of `geometry` and `groups`; `None` when the lengths disagree with them.
    pub fn new(geometry: ConvGeometry, groups: usize, weights: Vec<u64>, bias: Vec<u64>) -> Option<Self> {
        let weights = Zeroizing::new(weights);
        let bias = Zeroizing::new(bias);
        if bias.len() != geometry.out_channels || weights.iter().chain(bias.iter()).any(|&v| v >= zt::T) {
            return None;
        }
        let (mut lo, mut hi): (Vec<i64>, Vec<i64>) = weights.iter().map(|&w| zt::share_digits(w)).unzip();
        let digits = ConvKernel::grouped(geometry, groups, &lo).zip(ConvKernel::grouped(geometry, groups, &hi));
        lo.zeroize();
        hi.zeroize();
        let (lo, hi) = digits?;
        Some(Self { weights, bias, digits: [lo, hi] })
    }

    /// The weight shares as stored (`out_channels × terms / groups`).
    pub fn weights(&self) -> &[u64] {
        &self.weights
    }

    /// The bias shares, one per output channel.
    pub fn bias(&self) -> &[u64] {
        &self.bias
    }

    /// The layer's shape.
    pub fn geometry(&self) -> &ConvGeometry {
        self.digits[0].geometry()
    }

    /// `W_X·input` for `batch` images, without the bias: the two digit products recombined.
    pub fn product(&self, input: &[u64], batch: usize, threads: usize) -> Vec<u64> {
        let lo = conv2d_zt(&self.digits[0], input, batch, threads);
        let hi = conv2d_zt(&self.digits[1], input, batch, threads);
        lo.iter().zip(&hi).map(|(&l, &h)| zt::add(l, zt::mul_pow2(h, zt::SHARE_DIGIT_BITS))).collect()
    }

    /// The weight shares as the ordinary convolution's, `out_channels × terms` (OIHW), with
    /// the public zeros where a grouped filter reads no channel (what HE products take).
    pub fn dense_weights(&self) -> Zeroizing<Vec<u64>> {
        let g = self.geometry();
        let groups = self.digits[0].groups();
        let terms = g.terms();
        let per_filter = terms / groups;
        let per_group = g.out_channels / groups;
        let mut dense = Zeroizing::new(vec![0; g.out_channels * terms]);
        for (o, row) in self.weights.chunks(per_filter.max(1)).enumerate() {
            let first = (o / per_group) * per_filter;
            dense[o * terms + first..][..row.len()].copy_from_slice(row);
        }
        dense
    }
}

/// One server's shares of every convolution and FC layer of a model, by node.
#[derive(Debug, Default)]
pub struct WeightShares {
    layers: Vec<Option<LayerShare>>,
}

impl WeightShares {
    /// Splits `model`'s weights and biases into two shares, the first uniform from `rng` (a
    /// CSPRNG), the second the difference.
    pub fn deal<R: RngCore + CryptoRng>(model: &FixedModel, rng: &mut R) -> [Self; 2] {
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for op in model.ops() {
            let FixedOp::Linear { kernel, bias } = op else {
                first.push(None);
                second.push(None);
                continue;
            };
            let g = *kernel.geometry();
            let weights = Zeroizing::new(kernel.group_weights());
            let bias = Zeroizing::new(bias.clone().unwrap_or_else(|| vec![0; g.out_channels]));
            let w_b = zt::random_vec(rng, weights.len());
            let b_b = zt::random_vec(rng, bias.len());
            let w_c = weights.iter().zip(&w_b).map(|(&w, &s)| zt::sub(zt::from_i64(w), s)).collect();
            let b_c = bias.iter().zip(&b_b).map(|(&b, &s)| zt::sub(b, s)).collect();
            let share = |w, b| LayerShare::new(g, kernel.groups(), w, b).expect("the model's own layer");
            first.push(Some(share(w_b, b_b)));
            second.push(Some(share(w_c, b_c)));
        }
        [Self { layers: first }, Self { layers: second }]
    }

    /// Shares from their layers, one entry per node of the model (`None` for nodes without
    /// weights).
    pub fn from_layers(layers: Vec<Option<LayerShare>>) -> Self {
        Self { layers }
    }

    /// The share of node `node`'s weights, if it is a convolution or FC layer.
    pub fn layer(&self, node: usize) -> Option<&LayerShare> {
        self.layers.get(node).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use tessera_field::fixed::FixedPointParams;
    use tessera_field::kernels::{ImageShape, Window2d};
    use tessera_field::seed::os_rng;

    use super::*;
    use crate::ir::{Linear, Model, Op};

    /// A grouped convolution and an FC layer: both servers' products plus bias shares sum to
    /// the layer's output, and each share alone is not the weights.
    #[test]
    fn two_shares_compute_every_linear_layer_exactly() {
        let geometry = ConvGeometry {
            input: ImageShape::new(4, 5, 5),
            out_channels: 6,
            window: Window2d { kernel: [3, 3], stride: [2, 2], pads: [1, 0, 1, 2] },
        };
        let weight = (0..6 * 2 * 9).map(|i| (i as f32 * 0.37).sin() / 2.0).collect();
        let conv = Op::Linear(Linear { geometry, groups: 2, dense: false, weight, bias: Some(vec![0.5; 6]) });
        let out = geometry.output().unwrap();
        let fc_geometry = ConvGeometry::dense(out.len(), 3);
        let weight = (0..3 * out.len()).map(|i| (i as f32 * 0.11).cos() / 4.0).collect();
        let fc = Op::Linear(Linear { geometry: fc_geometry, groups: 1, dense: true, weight, bias: None });
        let nodes = vec![
            ("conv".to_string(), conv, vec![0]),
            ("relu".to_string(), Op::Relu, vec![1]),
            ("flat".to_string(), Op::Reshape { shape: ImageShape::new(out.len(), 1, 1) }, vec![2]),
            ("fc".to_string(), fc, vec![3]),
        ];
        let model = Model::new(geometry.input, nodes, 4, Default::default()).unwrap();
        let model = FixedModel::new(&model, FixedPointParams::new(8, 8, 24).unwrap()).unwrap();
        let [b, c] = WeightShares::deal(&model, &mut os_rng());
        let mut rng = os_rng();
        let batch = 2;
        for node in [0, 3] {
            let kernel = model.linear_kernel(node).unwrap();
            let len = kernel.geometry().input.len() * batch;
            let a = zt::random_vec(&mut rng, len);
            // The reference: the runner's own linear layer (bias included) on `a`.
            let mut y = conv2d_zt(kernel, &a, batch, 1);
            let plane = kernel.geometry().output().unwrap().plane();
            if let FixedOp::Linear { bias: Some(bias), .. } = &model.ops()[node] {
                crate::runner::fold_bias(&mut y, bias, plane, zt::add);
            }
            let mut sum = b.layer(node).unwrap().product(&a, batch, 1);
            zt::add_assign(&mut sum, &c.layer(node).unwrap().product(&a, batch, 2));
            for share in [&b, &c] {
                crate::runner::fold_bias(&mut sum, share.layer(node).unwrap().bias(), plane, zt::add);
            }
            assert_eq!(sum, y, "node {node}");
            // The dense form agrees with the kernel's own, share by share.
            let dense: Vec<u64> = b
                .layer(node)
                .unwrap()
                .dense_weights()
                .iter()
                .zip(c.layer(node).unwrap().dense_weights().iter())
                .map(|(&x, &y)| zt::add(x, y))
                .collect();
            let plain: Vec<u64> = kernel.integer_weights().iter().map(|&w| zt::from_i64(w)).collect();
            assert_eq!(dense, plain);
            let ones = b
                .layer(node)
                .unwrap()
                .weights()
                .iter()
                .zip(kernel.group_weights())
                .filter(|&(&s, w)| s == zt::from_i64(w))
                .count();
            assert!(ones < 2, "a share equal to the weights");
        }
        assert!(b.layer(1).is_none() && c.layer(2).is_none());
        assert!(format!("{:?}", b.layer(0).unwrap()).starts_with("LayerShare { weights: 108"));
    }
}
