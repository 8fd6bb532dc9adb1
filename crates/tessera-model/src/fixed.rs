//! The fixed-point reference (PROTOCOLS.md section 1): the model evaluated in `Z_t` with exactly
//! the encodings and truncation rule of the secure suites, in the clear. Every secure run is
//! checked against it, element by element.
//!
//! Inputs are encoded with `f` fractional bits, weights with `f_w`, biases at product scale
//! `f + f_w`. A linear layer leaves its output at product scale; the next ReLU or max pool
//! truncates it (`⌊x / 2^f_w⌋`) back to `2^f`. A residual branch at scale `2^f` is lifted by
//! `2^f_w` before it meets a branch at product scale. Every nonlinear input and the logits must
//! satisfy `|x| < 2^ℓx`, or the input is refused with [`ModelError::ActivationOverflow`].

use tessera_field::kernels::conv::{ConvKernel, conv2d_zt};
use tessera_field::kernels::pool::{max_pool_zt, sum_pool_zt};
use tessera_field::kernels::{ImageShape, Window2d};
use tessera_field::{FixedPointParams, fixed, zt};

use crate::error::{ModelError, Result};
use crate::ir::{Model, Op, ValueId};
use crate::plain::pad_into;

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
    /// Reinterpretation as a flat vector.
    Flatten,
    /// Residual add; `lift` names the input (0 or 1) multiplied by `2^f_w` first.
    Add {
        /// Which input is lifted to product scale, if the scales differ.
        lift: Option<usize>,
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
    params: FixedPointParams,
    input: ImageShape,
    ops: Vec<FixedOp>,
    inputs: Vec<Vec<ValueId>>,
    shapes: Vec<ImageShape>,
    names: Vec<String>,
    scales: Vec<Scale>,
    output: ValueId,
}

impl FixedModel {
    /// Quantizes a merged model. Refuses BatchNorm and average pools the merging pass could not
    /// fold, and linear layers fed at product scale (no truncation between them).
    pub fn new(model: &Model, params: FixedPointParams) -> Result<Self> {
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
                    let kernel = ConvKernel::new(geometry, &q)
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
                Op::Flatten => (FixedOp::Flatten, s),
                Op::Pad { pads } => (FixedOp::Pad { pads: *pads }, s),
                Op::Add => {
                    let t = scales[node.inputs[1]];
                    match (s, t) {
                        (a, b) if a == b => (FixedOp::Add { lift: None }, a),
                        (Scale::Activation, _) => (FixedOp::Add { lift: Some(0) }, Scale::Product),
                        _ => (FixedOp::Add { lift: Some(1) }, Scale::Product),
                    }
                }
                Op::BatchNorm { .. } => {
                    return Err(not_fixed(&node.name, "BatchNorm not folded into a linear layer"));
                }
                Op::AvgPool { .. } => {
                    return Err(not_fixed(&node.name, "average pool not folded into a linear layer"));
                }
            };
            ops.push(op);
            scales.push(scale);
        }
        Ok(Self {
            params,
            input: model.input_shape(),
            ops,
            inputs: model.nodes().iter().map(|n| n.inputs.clone()).collect(),
            shapes: model.nodes().iter().map(|n| n.shape).collect(),
            names: model.nodes().iter().map(|n| n.name.clone()).collect(),
            scales,
            output: model.output(),
        })
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
    pub fn run_encoded(&self, x: Vec<u64>, batch: usize) -> Result<Vec<u64>> {
        let threads = rayon::current_num_threads();
        let f_w = self.params.f_w();
        let mut values: Vec<Vec<u64>> = vec![x];
        for (i, op) in self.ops.iter().enumerate() {
            let x = &values[self.inputs[i][0]];
            let in_shape = if self.inputs[i][0] == 0 { self.input } else { self.shapes[self.inputs[i][0] - 1] };
            let shape = self.shapes[i];
            let bounded = |v: &[u64]| self.check_bound(i, v);
            let out = match op {
                FixedOp::Linear { kernel, bias } => {
                    let mut y = conv2d_zt(kernel, x, batch, threads);
                    if let Some(b) = bias {
                        for (chunk, &bv) in y.chunks_mut(shape.plane()).zip(b.iter().cycle()) {
                            chunk.iter_mut().for_each(|v| *v = zt::add(*v, bv));
                        }
                    }
                    y
                }
                FixedOp::Relu { truncate } => {
                    bounded(x)?;
                    x.iter().map(|&v| relu(if *truncate { fixed::truncate(v, f_w) } else { v })).collect()
                }
                FixedOp::MaxPool { window, relu: with_relu, truncate } => {
                    bounded(x)?;
                    let t: Vec<u64> =
                        if *truncate { x.iter().map(|&v| fixed::truncate(v, f_w)).collect() } else { x.clone() };
                    let mut y = vec![0; batch * shape.len()];
                    max_pool_zt(&t, in_shape, window, batch, &mut y);
                    if *with_relu {
                        y.iter_mut().for_each(|v| *v = relu(*v));
                    }
                    y
                }
                FixedOp::SumPool { window } => {
                    let mut y = vec![0; batch * shape.len()];
                    sum_pool_zt(x, in_shape, window, batch, &mut y);
                    y
                }
                FixedOp::Flatten => x.clone(),
                FixedOp::Pad { pads } => {
                    let mut y = vec![0; batch * shape.len()];
                    pad_into(x, in_shape, *pads, &mut y, 0);
                    y
                }
                FixedOp::Add { lift } => {
                    let lift_factor = 1u64 << f_w;
                    let a = &values[self.inputs[i][0]];
                    let b = &values[self.inputs[i][1]];
                    let scale = |k: usize, v: u64| {
                        if *lift == Some(k) { zt::mul(v, lift_factor) } else { v }
                    };
                    a.iter().zip(b).map(|(&p, &q)| zt::add(scale(0, p), scale(1, q))).collect()
                }
            };
            values.push(out);
        }
        let logits = std::mem::take(&mut values[self.output]);
        self.check_bound(self.output.saturating_sub(1), &logits)?;
        Ok(logits)
    }

    /// Logits as real numbers for normalized `f32` images.
    pub fn run(&self, input: &[f32], batch: usize) -> Result<Vec<f64>> {
        let y = self.run_encoded(self.encode_input(input, batch)?, batch)?;
        Ok(y.iter().map(|&v| fixed::decode(v, self.output_bits())).collect())
    }

    fn check_bound(&self, node: usize, values: &[u64]) -> Result<()> {
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

fn relu(v: u64) -> u64 {
    if zt::to_i64(v) < 0 { 0 } else { v }
}
