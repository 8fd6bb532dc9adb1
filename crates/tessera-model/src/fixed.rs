//! The fixed-point reference (PROTOCOLS.md section 1): the model evaluated in `Z_t` with exactly
//! the encodings and truncation rule of the secure suites, in the clear. Every secure run is
//! checked against it, element by element.
//!
//! Inputs are encoded with `f` fractional bits, weights with `f_w`, biases at product scale
//! `f + f_w`. A linear layer leaves its output at product scale; the next ReLU or max pool
//! truncates it (`⌊x / 2^f_w⌋`) back to `2^f`. A residual branch at scale `2^f` is lifted by
//! `2^f_w` before it meets a branch at product scale. Every nonlinear input and the logits must
//! satisfy `|x| < 2^ℓx`, or the input is refused with [`ModelError::ActivationOverflow`].

use std::sync::Arc;

use tessera_field::kernels::conv::ConvKernel;
use tessera_field::kernels::{ImageShape, Window2d};
use tessera_field::{FixedPointParams, fixed};

use crate::error::{ModelError, Result};
use crate::ir::{Model, Op, ValueId};
use crate::nonlinear::{NonlinearKind, NonlinearLayer, SLOPE_BITS};
use crate::runner::Runner;

/// The scale a value is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Scale {
    /// Activation scale `2^f`.
    Activation,
    /// Product scale `2^(f + f_w)`.
    Product,
}

/// One node of the fixed-point model.
#[derive(Debug, Clone)]
pub enum FixedOp {
    /// Convolution or FC layer with quantized weights; bias at product scale.
    Linear {
        /// Weights as small integers, ready for the exact kernel.
        kernel: ConvKernel,
        /// Bias per output channel, encoded at product scale.
        bias: Option<Vec<u64>>,
    },
    /// ReLU, truncating first when the input is at product scale.
    Relu {
        /// Whether the input is truncated by `f_w`.
        truncate: bool,
    },
    /// Leaky ReLU, truncating first when the input is at product scale.
    LeakyRelu {
        /// The slope below zero, over `2^SLOPE_BITS`.
        slope: u32,
        /// Whether the input is truncated by `f_w`.
        truncate: bool,
    },
    /// Max pool (optionally fused with ReLU), truncating first when needed.
    MaxPool {
        /// Window.
        window: Window2d,
        /// Whether a ReLU is fused.
        relu: bool,
        /// Whether the input is truncated by `f_w`.
        truncate: bool,
    },
    /// Sum pool (exact).
    SumPool {
        /// Window.
        window: Window2d,
    },
    /// Reinterpretation of the elements, in order, as another shape.
    Reshape,
    /// Residual add; `lift` names the input (0 or 1) multiplied by `2^f_w` first.
    Add {
        /// Which input is lifted to product scale, if the scales differ.
        lift: Option<usize>,
    },
    /// Channel concatenation; the inputs at activation scale are multiplied by `2^f_w` first
    /// when another is at product scale.
    Concat {
        /// Per input, whether it is lifted to product scale.
        lift: Vec<bool>,
    },
    /// Zero padding.
    Pad {
        /// Pads: top, left, bottom, right.
        pads: [usize; 4],
    },
}

/// A merged model quantized for `Z_t`.
#[derive(Debug, Clone)]
pub struct FixedModel {
    pub(crate) params: FixedPointParams,
    pub(crate) input: ImageShape,
    pub(crate) ops: Vec<FixedOp>,
    pub(crate) inputs: Vec<Vec<ValueId>>,
    pub(crate) shapes: Vec<ImageShape>,
    pub(crate) names: Vec<String>,
    pub(crate) scales: Vec<Scale>,
    pub(crate) output: ValueId,
}

impl FixedModel {
    /// Quantizes a merged model (shared, since every evaluation keeps a handle). Refuses
    /// BatchNorm and average pools the merging pass could not fold, and linear layers fed at
    /// product scale (no truncation between them).
    pub fn new(model: &Model, params: FixedPointParams) -> Result<Arc<Self>> {
        let mut scales = vec![Scale::Activation];
        let mut ops = Vec::new();
        let not_fixed = |node: &str, reason| ModelError::NotFixedPoint { node: node.to_string(), reason };
        for node in model.nodes() {
            let s = scales[node.inputs[0]];
            let (op, scale) = match &node.op {
                Op::Linear(l) => {
                    if s != Scale::Activation {
                        return Err(not_fixed(
                            &node.name,
                            "a linear layer on a product-scale input (no nonlinear layer in between)",
                        ));
                    }
                    let mut q = Vec::with_capacity(l.weight.len());
                    for &w in &l.weight {
                        if !w.is_finite() {
                            return Err(ModelError::NonFinite { node: node.name.clone() });
                        }
                        let v = (w as f64 * (params.f_w() as f64).exp2()).round();
                        if v.abs() >= (40f64).exp2() {
                            return Err(not_fixed(&node.name, "a weight too large for the fixed-point scale"));
                        }
                        q.push(v as i64);
                    }
                    let mut geometry = l.geometry;
                    if l.dense {
                        geometry.input = ImageShape::new(geometry.input.len(), 1, 1);
                    }
                    let kernel = ConvKernel::grouped(geometry, l.groups, &q)
                        .ok_or_else(|| not_fixed(&node.name, "inconsistent weight shape"))?;
                    let bias = match &l.bias {
                        Some(b) => Some(
                            b.iter()
                                .map(|&v| fixed::encode(v as f64, params.product_bits()))
                                .collect::<std::result::Result<Vec<_>, _>>()?,
                        ),
                        None => None,
                    };
                    (FixedOp::Linear { kernel, bias }, Scale::Product)
                }
                Op::Relu => (FixedOp::Relu { truncate: s == Scale::Product }, Scale::Activation),
                Op::MaxPool { window, relu } => (
                    FixedOp::MaxPool { window: *window, relu: *relu, truncate: s == Scale::Product },
                    Scale::Activation,
                ),
                Op::SumPool { window } => (FixedOp::SumPool { window: *window }, s),
                Op::Reshape { .. } => (FixedOp::Reshape, s),
                Op::Pad { pads } => (FixedOp::Pad { pads: *pads }, s),
                Op::Add => {
                    let t = scales[node.inputs[1]];
                    match (s, t) {
                        (a, b) if a == b => (FixedOp::Add { lift: None }, a),
                        (Scale::Activation, _) => (FixedOp::Add { lift: Some(0) }, Scale::Product),
                        _ => (FixedOp::Add { lift: Some(1) }, Scale::Product),
                    }
                }
                Op::Concat => {
                    let all: Vec<Scale> = node.inputs.iter().map(|&v| scales[v]).collect();
                    let out = if all.contains(&Scale::Product) { Scale::Product } else { Scale::Activation };
                    (FixedOp::Concat { lift: all.iter().map(|&t| t != out).collect() }, out)
                }
                Op::BatchNorm { .. } => {
                    return Err(not_fixed(
                        &node.name,
                        "a per-channel affine map (BatchNorm, or a constant added, subtracted, multiplied or divided) \
                         that no linear layer precedes to fold it into; normalizing the input belongs in the model's \
                         mean and std metadata",
                    ));
                }
                Op::AvgPool { exclude_pad: false, .. } => {
                    return Err(not_fixed(&node.name, "average pool not folded into a linear layer"));
                }
                Op::AvgPool { exclude_pad: true, .. } => {
                    return Err(not_fixed(
                        &node.name,
                        "an average pool whose divisors vary by position (count_include_pad = 0 over padding) \
                         and no fully connected layer after it, through ReLUs and reshapes only, to take them \
                         into its weights",
                    ));
                }
                Op::LeakyRelu { alpha } => {
                    if !(0.0..=1.0).contains(alpha) {
                        return Err(not_fixed(&node.name, "a LeakyReLU slope outside [0, 1]"));
                    }
                    let slope = (f64::from(*alpha) * f64::from(SLOPE_BITS).exp2()).round() as u32;
                    (FixedOp::LeakyRelu { slope, truncate: s == Scale::Product }, Scale::Activation)
                }
            };
            ops.push(op);
            scales.push(scale);
        }
        Ok(Arc::new(Self {
            params,
            input: model.input_shape(),
            ops,
            inputs: model.nodes().iter().map(|n| n.inputs.clone()).collect(),
            shapes: model.nodes().iter().map(|n| n.shape).collect(),
            names: model.nodes().iter().map(|n| n.name.clone()).collect(),
            scales,
            output: model.output(),
        }))
    }

    /// The fixed-point parameters.
    pub fn params(&self) -> FixedPointParams {
        self.params
    }

    /// The quantized nodes, in order.
    pub fn ops(&self) -> &[FixedOp] {
        &self.ops
    }

    /// The scale of the logits.
    pub fn output_scale(&self) -> Scale {
        self.scales[self.output]
    }

    /// Fractional bits of the logits.
    pub fn output_bits(&self) -> u32 {
        match self.output_scale() {
            Scale::Activation => self.params.f(),
            Scale::Product => self.params.product_bits(),
        }
    }

    /// Encodes normalized `f32` images at activation scale.
    pub fn encode_input(&self, input: &[f32], batch: usize) -> Result<Vec<u64>> {
        let expected = self.input.len();
        if input.len() != expected * batch || batch == 0 {
            return Err(ModelError::InputLength { expected, batch, actual: input.len() });
        }
        input
            .iter()
            .map(|&v| {
                fixed::encode(v as f64, self.params.f()).map_err(|_| ModelError::NonFinite { node: "<input>".into() })
            })
            .collect()
    }

    /// Logits in `Z_t` (at [`output_bits`](Self::output_bits)) for encoded images.
    pub fn run_encoded(self: &Arc<Self>, x: Vec<u64>, batch: usize) -> Result<Vec<u64>> {
        let mut runner = Runner::new(self.clone(), x, batch, true);
        while let Some(layer) = runner.advance() {
            let input = runner.pending_input();
            self.check_bound(layer.node as usize, input)?;
            let out = layer.eval_plain(input, batch);
            runner.complete(out);
        }
        let logits = runner.output().to_vec();
        self.check_output(&logits)?;
        Ok(logits)
    }

    /// Refuses logits that exceed the activation bound `ℓx`.
    pub fn check_output(&self, logits: &[u64]) -> Result<()> {
        self.check_bound(self.output.saturating_sub(1), logits)
    }

    /// The kernel of node `node`, if it is a convolution or FC layer.
    pub fn linear_kernel(&self, node: usize) -> Option<&ConvKernel> {
        match self.ops.get(node) {
            Some(FixedOp::Linear { kernel, .. }) => Some(kernel),
            _ => None,
        }
    }

    /// The convolutions and FC layers grouped by the value they read, each group in node order
    /// and the groups in the order of their first node (a residual block's first convolution
    /// and its projection shortcut read the same value).
    pub fn linear_groups(&self) -> Vec<Vec<usize>> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for node in (0..self.ops.len()).filter(|&n| self.linear_kernel(n).is_some()) {
            let reads = self.inputs[node][0];
            match groups.iter_mut().find(|g| self.inputs[g[0]][0] == reads) {
                Some(group) => {
                    let input = |n: usize| self.linear_kernel(n).map(|k| k.geometry().input);
                    debug_assert_eq!(input(group[0]), input(node), "layers reading one value read one shape");
                    group.push(node);
                }
                None => groups.push(vec![node]),
            }
        }
        groups
    }

    /// The nonlinear layers in order: all a central server needs to know of the model.
    pub fn nonlinear_layers(&self) -> Vec<NonlinearLayer> {
        (0..self.ops.len()).filter_map(|i| self.nonlinear_layer(i)).collect()
    }

    /// Values revealed under a truncation mask per image, `Σ items · arity` over the nonlinear
    /// layers: each `x + R` is within statistical distance `2^(1−σ)` of `R + 0`, so one image's
    /// reveals are within `masked_reveals() · 2^(1−σ)` of a simulation (a union bound).
    pub fn masked_reveals(&self) -> usize {
        self.nonlinear_layers().iter().map(|l| l.items() * l.arity()).sum()
    }

    /// `log2` of the statistical distance bound of one image's masked reveals:
    /// `log2(masked_reveals) + 1 − σ`.
    pub fn reveal_distance_log2(&self) -> f64 {
        (self.masked_reveals().max(1) as f64).log2() + 1.0 - self.params.statistical_security() as f64
    }

    /// Node `i` as a nonlinear layer, if it is one.
    pub(crate) fn nonlinear_layer(&self, i: usize) -> Option<NonlinearLayer> {
        let shift = |truncate: bool| if truncate { self.params.f_w() } else { 0 };
        let (kind, shift) = match self.ops[i] {
            FixedOp::Relu { truncate } => (NonlinearKind::Relu, shift(truncate)),
            FixedOp::LeakyRelu { slope, truncate } => (NonlinearKind::LeakyRelu { slope }, shift(truncate)),
            FixedOp::MaxPool { window, relu, truncate } => (NonlinearKind::MaxPool { window, relu }, shift(truncate)),
            _ => return None,
        };
        Some(NonlinearLayer {
            node: i as u32,
            kind,
            input: self.value_shape(self.inputs[i][0]),
            output: self.shapes[i],
            shift,
        })
    }

    /// The shape of value `v` (0 is the input, `i + 1` the output of node `i`) for one image.
    pub(crate) fn value_shape(&self, v: ValueId) -> ImageShape {
        if v == 0 { self.input } else { self.shapes[v - 1] }
    }

    /// The input shape of one image.
    pub fn input_shape(&self) -> ImageShape {
        self.input
    }

    /// Logits per image.
    pub fn output_len(&self) -> usize {
        self.value_shape(self.output).len()
    }

    /// Node names, in order.
    pub fn node_name(&self, node: usize) -> &str {
        &self.names[node]
    }

    /// Logits as real numbers for normalized `f32` images.
    pub fn run(self: &Arc<Self>, input: &[f32], batch: usize) -> Result<Vec<f64>> {
        let y = self.run_encoded(self.encode_input(input, batch)?, batch)?;
        Ok(y.iter().map(|&v| fixed::decode(v, self.output_bits())).collect())
    }

    /// Refuses `values`, the input of node `node` (or the logits), when they exceed the
    /// activation bound `ℓx`.
    pub fn check_bound(&self, node: usize, values: &[u64]) -> Result<()> {
        let bits = fixed::magnitude_bits(values);
        if bits > self.params.bound_bits() {
            return Err(ModelError::ActivationOverflow {
                node: self.names[node].clone(),
                bits,
                bound: self.params.bound_bits(),
            });
        }
        Ok(())
    }
}
