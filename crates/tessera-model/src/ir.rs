//! The typed model IR: a list of nodes in topological order over per-image shapes.
//!
//! Value `0` is the model input; value `i + 1` is the output of node `i`. Every value is an
//! image shape `C × H × W`; a flat vector of `K` features is `K × 1 × 1` with the same memory
//! layout, so a flatten moves no data.

use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};

use crate::error::{ModelError, Result};
use crate::meta::ModelMeta;

/// Index of a value: `0` the model input, `i + 1` the output of node `i`.
pub type ValueId = usize;

/// A linear layer with weights: a convolution, or a fully connected layer (a convolution on a
/// `K × 1 × 1` image).
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Shape of the operation.
    pub geometry: ConvGeometry,
    /// Groups of channels: filter `o` reads only the input channels of group
    /// `o / (out / groups)` (1 for an ordinary convolution, `in` for a depthwise one).
    pub groups: usize,
    /// Weights, `out × in/groups × kh × kw` (OIHW) or `out × in`, row-major.
    pub weight: Vec<f32>,
    /// One bias per output channel, if any.
    pub bias: Option<Vec<f32>>,
    /// Whether the layer came from a fully connected op (Gemm/MatMul).
    pub dense: bool,
}

impl Linear {
    /// Weights per output channel.
    pub fn terms_per_output(&self) -> usize {
        self.geometry.terms() / self.groups.max(1)
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> usize {
        self.geometry.macs() / self.groups.max(1)
    }
}

/// What a node computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Convolution or fully connected layer.
    Linear(Linear),
    /// Inference-time batch normalization `y = x · scale[c] + shift[c]`.
    BatchNorm {
        /// Per-channel factor `γ / √(var + ε)`.
        scale: Vec<f32>,
        /// Per-channel offset `β − mean · scale`.
        shift: Vec<f32>,
    },
    /// `max(x, 0)`.
    Relu,
    /// Max pooling; with `relu`, the maximum of the window and 0 (max pool fused with a ReLU).
    MaxPool {
        /// Window.
        window: Window2d,
        /// Whether a ReLU is fused in.
        relu: bool,
    },
    /// Average pooling.
    AvgPool {
        /// Window.
        window: Window2d,
        /// Whether each window divides by its positions inside the image only (ONNX
        /// `count_include_pad = 0` where a window overlaps the padding), rather than by the
        /// window's size.
        exclude_pad: bool,
    },
    /// Sum pooling: an average pool whose `1/k` moved into a neighbouring linear layer.
    SumPool {
        /// Window.
        window: Window2d,
    },
    /// Reinterpret the elements, in order, as `shape` (as many elements): a flatten, or any
    /// reshape or transpose that moves no data.
    Reshape {
        /// The output shape.
        shape: ImageShape,
    },
    /// Element-wise sum of two values (residual connection).
    Add,
    /// The inputs' channels one after another (same height and width).
    Concat,
    /// `x` where `x ≥ 0`, else `alpha · x`.
    LeakyRelu {
        /// Slope below zero.
        alpha: f32,
    },
    /// Zero padding of the spatial dimensions: top, left, bottom, right.
    Pad {
        /// Pads.
        pads: [usize; 4],
    },
}

impl Op {
    /// A short name for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Linear(l) if l.dense => "Dense",
            Op::Linear(_) => "Conv",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Relu => "Relu",
            Op::MaxPool { relu: true, .. } => "MaxPool+Relu",
            Op::MaxPool { .. } => "MaxPool",
            Op::AvgPool { .. } => "AvgPool",
            Op::SumPool { .. } => "SumPool",
            Op::Reshape { .. } => "Reshape",
            Op::Add => "Add",
            Op::Concat => "Concat",
            Op::LeakyRelu { .. } => "LeakyRelu",
            Op::Pad { .. } => "Pad",
        }
    }

    /// Whether the node is nonlinear (needs an interactive protocol in the secure suites).
    pub fn is_nonlinear(&self) -> bool {
        matches!(self, Op::Relu | Op::MaxPool { .. } | Op::LeakyRelu { .. })
    }
}

/// One node of the graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Name (from the ONNX node, or derived by a pass).
    pub name: String,
    /// Operation.
    pub op: Op,
    /// Input values.
    pub inputs: Vec<ValueId>,
    /// Output shape, per image.
    pub shape: ImageShape,
}

/// A validated model.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    input: ImageShape,
    pub(crate) nodes: Vec<Node>,
    output: ValueId,
    /// Dataset, classes, normalization.
    pub meta: ModelMeta,
}

impl Model {
    /// Builds a model, inferring and checking every node's output shape.
    pub fn new(
        input: ImageShape,
        nodes: Vec<(String, Op, Vec<ValueId>)>,
        output: ValueId,
        meta: ModelMeta,
    ) -> Result<Self> {
        let mut shapes = vec![input];
        let mut built = Vec::with_capacity(nodes.len());
        for (name, op, inputs) in nodes {
            let shape = infer_shape(&name, &op, &inputs, &shapes)?;
            shapes.push(shape);
            built.push(Node { name, op, inputs, shape });
        }
        if output >= shapes.len() {
            return Err(ModelError::Shape {
                node: "<output>".into(),
                detail: format!("output value {output} does not exist"),
            });
        }
        Ok(Self { input, nodes: built, output, meta })
    }

    /// The per-image input shape.
    pub fn input_shape(&self) -> ImageShape {
        self.input
    }

    /// The nodes, in topological order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The value holding the logits.
    pub fn output(&self) -> ValueId {
        self.output
    }

    /// The shape of a value.
    pub fn value_shape(&self, v: ValueId) -> ImageShape {
        if v == 0 { self.input } else { self.nodes[v - 1].shape }
    }

    /// The logits per image.
    pub fn output_len(&self) -> usize {
        self.value_shape(self.output).len()
    }

    /// How many nodes read each value (the output counts as one reader).
    pub fn readers(&self) -> Vec<usize> {
        let mut r = vec![0; self.nodes.len() + 1];
        for n in &self.nodes {
            for &i in &n.inputs {
                r[i] += 1;
            }
        }
        r[self.output] += 1;
        r
    }
}

fn shape_err(node: &str, detail: String) -> ModelError {
    ModelError::Shape { node: node.to_string(), detail }
}

fn infer_shape(name: &str, op: &Op, inputs: &[ValueId], shapes: &[ImageShape]) -> Result<ImageShape> {
    if inputs.iter().any(|&i| i >= shapes.len()) {
        return Err(shape_err(name, format!("reads values {inputs:?}, not all defined earlier")));
    }
    output_shape(name, op, &inputs.iter().map(|&i| shapes[i]).collect::<Vec<_>>())
}

/// The output shape of `op` on inputs of the given shapes, or why they do not fit.
pub fn output_shape(name: &str, op: &Op, inputs: &[ImageShape]) -> Result<ImageShape> {
    let arity_fits = match op {
        Op::Add => inputs.len() == 2,
        Op::Concat => !inputs.is_empty(),
        _ => inputs.len() == 1,
    };
    if !arity_fits {
        return Err(shape_err(name, format!("{} input(s) do not fit a {}", inputs.len(), op.kind())));
    }
    let x = inputs[0];
    let per_channel = |v: &[f32], what: &str| {
        if v.len() == x.c {
            Ok(())
        } else {
            Err(shape_err(name, format!("{what} has {} values for {} channels", v.len(), x.c)))
        }
    };
    let pooled = |w: &Window2d| {
        w.output_hw(x.h, x.w)
            .filter(|_| {
                w.pads[0] < w.kernel[0] && w.pads[2] < w.kernel[0] && w.pads[1] < w.kernel[1] && w.pads[3] < w.kernel[1]
            })
            .map(|(h, ww)| ImageShape::new(x.c, h, ww))
            .ok_or_else(|| shape_err(name, format!("window {w:?} does not fit input {x:?}")))
    };
    match op {
        Op::Linear(l) => {
            let g = &l.geometry;
            let fits = if l.dense { g.input.len() == x.len() } else { g.input == x };
            if !fits {
                return Err(shape_err(name, format!("expects input {:?}, got {x:?}", g.input)));
            }
            if g.group(l.groups).is_none() || (l.dense && l.groups != 1) {
                return Err(shape_err(name, format!("{} groups do not divide {g:?}", l.groups)));
            }
            if l.weight.len() != g.out_channels * l.terms_per_output() {
                return Err(shape_err(
                    name,
                    format!("weight has {} values, expected {}", l.weight.len(), g.out_channels * l.terms_per_output()),
                ));
            }
            if l.bias.as_ref().is_some_and(|b| b.len() != g.out_channels) {
                return Err(shape_err(name, format!("bias length differs from {} outputs", g.out_channels)));
            }
            g.output().ok_or_else(|| shape_err(name, format!("window {:?} does not fit input {x:?}", g.window)))
        }
        Op::BatchNorm { scale, shift } => {
            per_channel(scale, "scale")?;
            per_channel(shift, "shift")?;
            Ok(x)
        }
        Op::Relu | Op::LeakyRelu { .. } => Ok(x),
        Op::MaxPool { window, .. } | Op::AvgPool { window, .. } | Op::SumPool { window } => pooled(window),
        Op::Reshape { shape } if shape.len() == x.len() => Ok(*shape),
        Op::Reshape { shape } => Err(shape_err(name, format!("reshapes {x:?} to {shape:?}"))),
        Op::Concat => {
            if let Some(y) = inputs.iter().find(|y| (y.h, y.w) != (x.h, x.w)) {
                return Err(shape_err(name, format!("concatenates {x:?} and {y:?} along channels")));
            }
            Ok(ImageShape::new(inputs.iter().map(|y| y.c).sum(), x.h, x.w))
        }
        Op::Add => {
            let y = inputs[1];
            if x == y { Ok(x) } else { Err(shape_err(name, format!("adds {x:?} and {y:?}"))) }
        }
        Op::Pad { pads } => Ok(ImageShape::new(x.c, x.h + pads[0] + pads[2], x.w + pads[1] + pads[3])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_inferred_and_checked() {
        let conv = Linear {
            geometry: ConvGeometry { input: ImageShape::new(1, 8, 8), out_channels: 2, window: Window2d::square(3, 1) },
            groups: 1,
            weight: vec![0.0; 18],
            bias: None,
            dense: false,
        };
        let m = Model::new(
            ImageShape::new(1, 8, 8),
            vec![
                ("c".into(), Op::Linear(conv.clone()), vec![0]),
                ("f".into(), Op::Reshape { shape: ImageShape::new(72, 1, 1) }, vec![1]),
            ],
            2,
            ModelMeta::default(),
        )
        .unwrap();
        assert_eq!(m.value_shape(1), ImageShape::new(2, 6, 6));
        assert_eq!(m.output_len(), 72);
        let bad = Model::new(
            ImageShape::new(3, 8, 8),
            vec![("c".into(), Op::Linear(conv), vec![0])],
            1,
            ModelMeta::default(),
        );
        assert!(matches!(bad, Err(ModelError::Shape { ref node, .. }) if node == "c"));
    }

    #[test]
    fn concatenation_and_relabelling_check_their_shapes() {
        let (a, b) = (ImageShape::new(2, 4, 4), ImageShape::new(3, 4, 4));
        assert_eq!(output_shape("cat", &Op::Concat, &[a, b, a]).unwrap(), ImageShape::new(7, 4, 4));
        let err = output_shape("cat", &Op::Concat, &[a, ImageShape::new(2, 4, 5)]).unwrap_err();
        assert!(matches!(err, ModelError::Shape { ref node, .. } if node == "cat"));
        assert!(output_shape("cat", &Op::Concat, &[]).is_err());
        let to = |c, h, w| Op::Reshape { shape: ImageShape::new(c, h, w) };
        assert_eq!(output_shape("view", &to(8, 1, 4), &[a]).unwrap(), ImageShape::new(8, 1, 4));
        assert!(output_shape("view", &to(8, 1, 5), &[a]).is_err());
        let conv = |groups, weights| {
            Op::Linear(Linear {
                geometry: ConvGeometry { input: a, out_channels: 4, window: Window2d::square(3, 1) },
                groups,
                weight: vec![0.0; weights],
                bias: None,
                dense: false,
            })
        };
        // Two groups: each filter reads one of the two channels, 9 weights.
        assert_eq!(output_shape("dw", &conv(2, 36), &[a]).unwrap(), ImageShape::new(4, 2, 2));
        assert!(output_shape("dw", &conv(2, 72), &[a]).is_err());
        assert!(output_shape("dw", &conv(3, 24), &[a]).is_err());
    }
}
