//! Cutting a fixed-point model in two: the layers before the `l`-th weighted layer's successor
//! (a *prefix*, run by one party) and the rest (a *suffix*, run by others), as suite seco
//! deploys a model. Composing the two reproduces the model's fixed-point reference exactly.

use std::sync::Arc;

use tessera_field::kernels::ConvKernel;

use crate::error::{ModelError, Result};
use crate::fixed::{FixedModel, FixedOp, Scale};

/// A model cut after its `l`-th weighted layer (convolution or FC layer).
#[derive(Debug, Clone)]
pub struct Split {
    /// Weighted layers before the cut.
    pub weighted: usize,
    /// The model's nodes before the cut; its output is the value crossing the cut.
    pub prefix: Arc<FixedModel>,
    /// The nodes after the cut, whose input is that value; `None` when every layer is before
    /// the cut.
    pub suffix: Option<Arc<FixedModel>>,
}

impl FixedModel {
    /// Weighted layers (convolutions and FC layers).
    pub fn weighted_layers(&self) -> usize {
        self.ops.iter().filter(|op| matches!(op, FixedOp::Linear { .. })).count()
    }

    /// The node the cut after `l` weighted layers lies before: the first node for `l = 0`, the
    /// `(l+1)`-th weighted layer otherwise, past the last node for `l` = every weighted layer.
    fn cut_node(&self, l: usize) -> Option<usize> {
        let weighted: Vec<usize> =
            (0..self.ops.len()).filter(|&i| matches!(self.ops[i], FixedOp::Linear { .. })).collect();
        match l {
            0 => Some(0),
            l if l == weighted.len() => Some(self.ops.len()),
            l => weighted.get(l).copied(),
        }
    }

    /// The one value crossing the cut before node `k` (`0` is the input, `i + 1` node `i`'s
    /// output), if exactly one does.
    fn crossing(&self, k: usize) -> Option<usize> {
        if k == self.ops.len() {
            return Some(self.output);
        }
        let mut crossing: Vec<usize> = self.inputs[k..].iter().flatten().copied().filter(|&v| v <= k).collect();
        if self.output <= k {
            crossing.push(self.output);
        }
        crossing.sort_unstable();
        crossing.dedup();
        match crossing[..] {
            [v] if self.scales[v] == Scale::Activation => Some(v),
            _ => None,
        }
    }

    /// The split points `l` at which exactly one value crosses the cut (so no residual block is
    /// cut through), from 0 (everything after the cut) to every weighted layer (nothing after).
    pub fn split_points(&self) -> Vec<usize> {
        (0..=self.weighted_layers()).filter(|&l| self.cut_node(l).and_then(|k| self.crossing(k)).is_some()).collect()
    }

    /// The same model with every weight and bias zero: the architecture a party that must not
    /// see the weights holds (what a split file without weights reads back as).
    pub fn architecture(&self) -> Arc<FixedModel> {
        let mut model = self.clone();
        for op in &mut model.ops {
            if let FixedOp::Linear { kernel, bias } = op {
                let zeros = vec![0; kernel.group_weights().len()];
                *kernel = ConvKernel::grouped(*kernel.geometry(), kernel.groups(), &zeros).expect("the same shape");
                if let Some(b) = bias {
                    b.fill(0);
                }
            }
        }
        Arc::new(model)
    }

    /// Cuts the model after `l` weighted layers.
    pub fn split(&self, l: usize) -> Result<Split> {
        let invalid = |reason: String| ModelError::Split { weighted: l, reason };
        let k = self
            .cut_node(l)
            .ok_or_else(|| invalid(format!("the model has {} weighted layers", self.weighted_layers())))?;
        let v = self.crossing(k).ok_or_else(|| {
            invalid(format!(
                "more than one value crosses the cut before node `{}` (valid split points: {:?})",
                self.names.get(k).map_or("the end", String::as_str),
                self.split_points()
            ))
        })?;
        let prefix = Self {
            params: self.params,
            input: self.input,
            ops: self.ops[..k].to_vec(),
            inputs: self.inputs[..k].to_vec(),
            shapes: self.shapes[..k].to_vec(),
            names: self.names[..k].to_vec(),
            scales: self.scales[..=k].to_vec(),
            output: v,
        };
        let suffix = (k < self.ops.len()).then(|| {
            let renumber = |u: usize| if u == v { 0 } else { u - k };
            let mut scales = vec![Scale::Activation];
            scales.extend_from_slice(&self.scales[k + 1..]);
            Arc::new(Self {
                params: self.params,
                input: self.value_shape(v),
                ops: self.ops[k..].to_vec(),
                inputs: self.inputs[k..].iter().map(|i| i.iter().map(|&u| renumber(u)).collect()).collect(),
                shapes: self.shapes[k..].to_vec(),
                names: self.names[k..].to_vec(),
                scales,
                output: renumber(self.output),
            })
        });
        Ok(Split { weighted: l, prefix: Arc::new(prefix), suffix })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use tessera_field::fixed::FixedPointParams;
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};

    use super::*;
    use crate::ir::{Linear, Model, Op};

    fn conv(c: usize, m: usize, seed: u32) -> Op {
        let geometry = ConvGeometry {
            input: ImageShape::new(c, 6, 6),
            out_channels: m,
            window: Window2d { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] },
        };
        let weight = (0..m * c * 9).map(|i| ((i as u32 * 7 + seed) % 11) as f32 / 16.0 - 0.3).collect();
        Op::Linear(Linear { geometry, groups: 1, dense: false, weight, bias: Some(vec![0.125; m]) })
    }

    /// conv → ReLU → [conv → ReLU → conv, + skip] → ReLU → sum pool → FC.
    pub(crate) fn residual() -> Arc<FixedModel> {
        let geometry = ConvGeometry::dense(4, 3);
        let weight = (0..12).map(|i| i as f32 / 8.0 - 0.7).collect();
        let fc = Op::Linear(Linear { geometry, groups: 1, dense: true, weight, bias: None });
        let nodes = vec![
            ("c1", conv(2, 4, 1), vec![0]),
            ("r1", Op::Relu, vec![1]),
            ("c2", conv(4, 4, 2), vec![2]),
            ("r2", Op::Relu, vec![3]),
            ("c3", conv(4, 4, 3), vec![4]),
            ("add", Op::Add, vec![5, 2]),
            ("r3", Op::Relu, vec![6]),
            ("pool", Op::SumPool { window: Window2d::square(6, 1) }, vec![7]),
            ("flat", Op::Reshape { shape: ImageShape::new(4, 1, 1) }, vec![8]),
            ("fc", fc, vec![9]),
        ];
        let nodes = nodes.into_iter().map(|(n, op, i)| (n.to_string(), op, i)).collect();
        let model = Model::new(ImageShape::new(2, 6, 6), nodes, 10, Default::default()).unwrap();
        FixedModel::new(&model, FixedPointParams::new(8, 8, 24).unwrap()).unwrap()
    }

    #[test]
    fn the_valid_split_points_skip_residual_blocks_and_compose_exactly() {
        let model = residual();
        assert_eq!(model.weighted_layers(), 4);
        // The cut before c3 would separate the skip connection from its block.
        assert_eq!(model.split_points(), vec![0, 1, 3, 4]);
        let input: Vec<u64> = (0..2 * 2 * 36).map(|i| tessera_field::zt::from_i64((i % 37) as i64 * 5 - 80)).collect();
        let reference = model.run_encoded(input.clone(), 2).unwrap();
        for l in model.split_points() {
            let split = model.split(l).unwrap();
            let middle = split.prefix.run_encoded(input.clone(), 2).unwrap();
            let out = match &split.suffix {
                Some(suffix) => {
                    assert_eq!(suffix.input_shape().len() * 2, middle.len());
                    suffix.run_encoded(middle, 2).unwrap()
                }
                None => middle,
            };
            assert_eq!(out, reference, "split after {l} weighted layers");
        }
        assert_eq!(model.split(0).unwrap().prefix.ops().len(), 0);
        assert!(model.split(4).unwrap().suffix.is_none());
        let err = model.split(2).unwrap_err().to_string();
        assert!(err.contains("`c3`") && err.contains("[0, 1, 3, 4]"), "{err}");
        assert!(model.split(5).unwrap_err().to_string().contains("4 weighted layers"));
        let bare = model.architecture();
        assert_eq!(bare.nonlinear_layers(), model.nonlinear_layers());
        assert!(bare.ops().iter().all(|op| match op {
            FixedOp::Linear { kernel, bias } => {
                kernel.group_weights().iter().all(|&w| w == 0) && bias.iter().flatten().all(|&b| b == 0)
            }
            _ => true,
        }));
    }
}
