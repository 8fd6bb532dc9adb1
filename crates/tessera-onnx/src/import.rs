//! The importer: a table from op name to builder over a typed environment of graph values and
//! constants.

use std::collections::HashMap;

use prost::Message;
use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};
use tessera_model::ModelError;
use tessera_model::bayes::{LayerPosterior, Posterior};
use tessera_model::ir::{Linear, Model, Op, ValueId, output_shape};
use tessera_model::meta::ModelMeta;

use crate::error::{ImportError, Result};
use crate::fold::{self, Folded, Values};
use crate::proto::{AttributeProto, ModelProto, NodeProto, TensorProto, data_type};

/// The largest max-pool window imported: the secure suites decide a window from every pair of
/// its elements (quadratic in its size), and their masks and noise budgets are sized for small
/// windows.
pub const MAX_POOL_WINDOW: usize = 16;

/// Lowest default-domain opset accepted.
pub const MIN_OPSET: i64 = 13;
/// Highest default-domain opset accepted.
pub const MAX_OPSET: i64 = 20;

/// Bounds checked before anything is allocated from a size in the file.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest model file, in bytes.
    pub max_file_bytes: u64,
    /// Largest tensor, in elements.
    pub max_tensor_elements: u64,
    /// Largest image dimension (channels, height, width).
    pub max_dim: u64,
    /// Most nodes in the graph.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_file_bytes: 256 << 20, max_tensor_elements: 1 << 26, max_dim: 1 << 14, max_nodes: 10_000 }
    }
}

/// Imports the ONNX file at `path`.
pub fn import_file(path: &std::path::Path, limits: &Limits) -> Result<Model> {
    Ok(import_file_with_posterior(path, limits)?.0)
}

/// Imports the ONNX file at `path` with the posterior it carries, if it is a Bayesian model:
/// an initializer `<name>.sigma` beside a linear layer's weight or bias initializer `<name>`
/// holds the standard deviations of that tensor, laid out like it.
pub fn import_file_with_posterior(path: &std::path::Path, limits: &Limits) -> Result<(Model, Option<Posterior>)> {
    let io = |e: std::io::Error| ImportError::Io { path: path.display().to_string(), reason: e.to_string() };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > limits.max_file_bytes {
        return Err(ImportError::TooLarge { actual: len, maximum: limits.max_file_bytes });
    }
    import_bytes_with_posterior(&std::fs::read(path).map_err(io)?, limits)
}

/// Imports an ONNX model from its bytes.
pub fn import_bytes(bytes: &[u8], limits: &Limits) -> Result<Model> {
    Ok(import_bytes_with_posterior(bytes, limits)?.0)
}

/// Imports an ONNX model from its bytes, with its posterior if it is Bayesian (see
/// [`import_file_with_posterior`]).
pub fn import_bytes_with_posterior(bytes: &[u8], limits: &Limits) -> Result<(Model, Option<Posterior>)> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(ImportError::TooLarge { actual: bytes.len() as u64, maximum: limits.max_file_bytes });
    }
    let model = ModelProto::decode(bytes).map_err(|e| ImportError::NotProtobuf(e.to_string()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .unwrap_or(0);
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(ImportError::UnsupportedOpset { version: opset, min: MIN_OPSET, max: MAX_OPSET });
    }
    let meta = match model.metadata_props.iter().find(|p| p.key.as_deref() == Some("tessera")) {
        Some(p) => serde_json::from_str::<ModelMeta>(p.value.as_deref().unwrap_or(""))
            .map_err(|e| ImportError::Metadata(e.to_string()))?,
        None => ModelMeta::default(),
    };
    let graph = model.graph.ok_or(ImportError::NoGraph)?;
    if graph.node.len() > limits.max_nodes {
        return Err(ImportError::Oversized {
            what: "graph".into(),
            actual: graph.node.len() as u64,
            maximum: limits.max_nodes as u64,
        });
    }
    let mut b = Builder {
        limits: *limits,
        constants: HashMap::new(),
        values: HashMap::new(),
        nodes: Vec::new(),
        shapes: Vec::new(),
        ranks: Vec::new(),
        posterior: Vec::new(),
    };
    for t in graph.initializer {
        b.constants.insert(t.name.clone().unwrap_or_default(), t);
    }
    let input = graph
        .input
        .iter()
        .find(|i| !b.constants.contains_key(i.name.as_deref().unwrap_or("")))
        .ok_or_else(|| ImportError::Input("the graph has no non-constant input".into()))?;
    let input_shape = b.input_shape(input)?;
    b.values.insert(input.name.clone().unwrap_or_default(), 0);
    b.shapes.push(input_shape);
    let input_rank = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map_or(4, |s| s.dim.len());
    b.ranks.push(input_rank);
    for (index, node) in graph.node.iter().enumerate() {
        b.node(node, index)?;
    }
    let out_name = graph
        .output
        .first()
        .and_then(|o| o.name.clone())
        .ok_or_else(|| ImportError::Input("the graph has no output".into()))?;
    let output = *b.values.get(&out_name).ok_or_else(|| ImportError::MissingInput {
        node: "<graph output>".into(),
        op: "-".into(),
        input: out_name,
    })?;
    let model = Model::new(input_shape, b.nodes, output, meta)?;
    let posterior = match b.posterior.is_empty() {
        true => None,
        false => Some(Posterior::new(&model, b.posterior)?),
    };
    Ok((model, posterior))
}

struct Builder {
    limits: Limits,
    constants: HashMap<String, TensorProto>,
    values: HashMap<String, ValueId>,
    nodes: Vec<(String, Op, Vec<ValueId>)>,
    shapes: Vec<ImageShape>,
    /// Each value's rank in ONNX: 4 (NCHW) or 2 (NK).
    ranks: Vec<usize>,
    posterior: Vec<LayerPosterior>,
}

/// The node being imported, for error messages.
struct Ctx<'a> {
    node: &'a NodeProto,
    name: String,
    op: &'a str,
}

impl Ctx<'_> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    fn attr_err(&self, attribute: &str, detail: impl Into<String>) -> ImportError {
        ImportError::Attribute {
            node: self.name.clone(),
            op: self.op.to_string(),
            attribute: attribute.to_string(),
            detail: detail.into(),
        }
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    fn shape_err(&self, detail: impl Into<String>) -> ImportError {
        ImportError::Shape { node: self.name.clone(), op: self.op.to_string(), detail: detail.into() }
    }

    /// Requires an integer attribute to have one value.
    fn require(&self, name: &str, default: i64, allowed: i64) -> Result<()> {
        let v = self.int(name, default);
        if v != allowed { Err(self.attr_err(name, format!("{v} is not supported (only {allowed})"))) } else { Ok(()) }
    }

    fn require_no_auto_pad(&self) -> Result<()> {
        match self.attr("auto_pad").and_then(|a| a.s.as_deref()) {
            None | Some(b"NOTSET") => Ok(()),
            Some(other) => Err(self
                .attr_err("auto_pad", format!("`{}` is not supported (only NOTSET)", String::from_utf8_lossy(other)))),
        }
    }

    /// A 2-D window from `kernel_shape`, `strides`, `pads`, `dilations`.
    fn window(&self, kernel: Option<[usize; 2]>) -> Result<Window2d> {
        self.require_no_auto_pad()?;
        let pair = |name: &str, v: Option<&[i64]>, default: usize| -> Result<[usize; 2]> {
            match v {
                None => Ok([default; 2]),
                Some([a, b]) if *a >= 1 && *b >= 1 && *a <= 1 << 12 && *b <= 1 << 12 => Ok([*a as usize, *b as usize]),
                Some(other) => Err(self.attr_err(name, format!("{other:?} is not two positive values"))),
            }
        };
        if let Some(d) = self.ints("dilations")
            && d.iter().any(|&v| v != 1)
        {
            return Err(self.attr_err("dilations", format!("{d:?} is not supported (only 1)")));
        }
        let kernel = match (kernel, self.ints("kernel_shape")) {
            (Some(k), Some(ks)) if pair("kernel_shape", Some(ks), 1)? != k => {
                return Err(self.attr_err("kernel_shape", format!("{ks:?} disagrees with the weights {k:?}")));
            }
            (Some(k), _) => k,
            (None, ks @ Some(_)) => pair("kernel_shape", ks, 1)?,
            (None, None) => return Err(self.attr_err("kernel_shape", "missing")),
        };
        let stride = pair("strides", self.ints("strides"), 1)?;
        let pads = match self.ints("pads") {
            None => [0; 4],
            Some([t, l, b, r]) if [t, l, b, r].iter().all(|&&p| (0..=1 << 12).contains(&p)) => {
                [*t as usize, *l as usize, *b as usize, *r as usize]
            }
            Some(other) => Err(self.attr_err("pads", format!("{other:?} is not four non-negative values")))?,
        };
        Ok(Window2d { kernel, stride, pads })
    }
}

impl Builder {
    fn input_shape(&self, input: &crate::proto::ValueInfoProto) -> Result<ImageShape> {
        let dims = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.shape.as_ref())
            .map(|s| s.dim.as_slice())
            .ok_or_else(|| ImportError::Input("no static shape".into()))?;
        let elem = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.elem_type).unwrap_or(0);
        if elem != data_type::FLOAT {
            return Err(ImportError::Input(format!("element type {elem} is not float")));
        }
        let mut shape = Vec::new();
        for (i, d) in dims.iter().enumerate() {
            match (i, d.dim_value, &d.dim_param) {
                (0, _, Some(_)) | (0, Some(1), _) => {}
                (0, v, _) => {
                    return Err(ImportError::Input(format!("batch dimension {v:?} is neither named nor 1")));
                }
                (_, Some(v), _) if v >= 1 && v as u64 <= self.limits.max_dim => shape.push(v as usize),
                (_, v, p) => {
                    return Err(ImportError::Input(format!(
                        "dimension {i} ({v:?}, {p:?}) is not a static size in 1..={}",
                        self.limits.max_dim
                    )));
                }
            }
        }
        let s = match shape[..] {
            [c, h, w] => ImageShape::new(c, h, w),
            [k] => ImageShape::new(k, 1, 1),
            _ => {
                return Err(ImportError::Input(format!("rank {} is not 4 (NCHW) or 2 (NK)", dims.len())));
            }
        };
        if s.len() as u64 > self.limits.max_tensor_elements {
            return Err(ImportError::Oversized {
                what: "graph input".into(),
                actual: s.len() as u64,
                maximum: self.limits.max_tensor_elements,
            });
        }
        Ok(s)
    }

    /// A constant tensor as `f32` with its dims, checked for size, type and finiteness.
    fn tensor_f32(&self, ctx: &Ctx, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let t = self.constants.get(name).ok_or_else(|| {
            if self.values.contains_key(name) {
                ImportError::MissingInitializer {
                    node: ctx.name.clone(),
                    op: ctx.op.to_string(),
                    input: name.to_string(),
                }
            } else {
                ImportError::MissingInput { node: ctx.name.clone(), op: ctx.op.to_string(), input: name.to_string() }
            }
        })?;
        self.decode_f32(name, t)
    }

    /// Tensor `t` (named `name`) as `f32` with its dims, checked for size, type and finiteness.
    fn decode_f32(&self, name: &str, t: &TensorProto) -> Result<(Vec<usize>, Vec<f32>)> {
        let err = |detail: String| ImportError::Tensor { tensor: name.to_string(), detail };
        let dims = self.dims(name, t)?;
        let n: usize = dims.iter().product();
        if t.data_location == Some(1) {
            return Err(err("external data is not supported".into()));
        }
        let values: Vec<f32> = match (t.data_type.unwrap_or(0), &t.raw_data) {
            (data_type::FLOAT, Some(raw)) if raw.len() == 4 * n => {
                raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            }
            (data_type::FLOAT, None) if t.float_data.len() == n => t.float_data.clone(),
            (data_type::DOUBLE, Some(raw)) if raw.len() == 8 * n => {
                raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect()
            }
            (data_type::DOUBLE, None) if t.double_data.len() == n => t.double_data.iter().map(|&v| v as f32).collect(),
            (data_type::FLOAT | data_type::DOUBLE, _) => {
                return Err(err(format!("data does not hold the {n} elements its dims declare")));
            }
            (other, _) => return Err(err(format!("data type {other} is not float"))),
        };
        if values.iter().any(|v| !v.is_finite()) {
            return Err(err("contains NaN or infinite values".into()));
        }
        Ok((dims, values))
    }

    /// A constant integer tensor (shapes, pads).
    fn tensor_i64(&self, ctx: &Ctx, name: &str) -> Result<Vec<i64>> {
        let t = self.constants.get(name).ok_or_else(|| ImportError::MissingInitializer {
            node: ctx.name.clone(),
            op: ctx.op.to_string(),
            input: name.to_string(),
        })?;
        self.decode_i64(name, t)
    }

    /// Integer tensor `t` (named `name`).
    fn decode_i64(&self, name: &str, t: &TensorProto) -> Result<Vec<i64>> {
        let n: usize = self.dims(name, t)?.iter().product();
        let err = |detail: String| ImportError::Tensor { tensor: name.to_string(), detail };
        let v: Vec<i64> = match (t.data_type.unwrap_or(0), &t.raw_data) {
            (data_type::INT64, Some(raw)) if raw.len() == 8 * n => {
                raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
            }
            (data_type::INT64, None) if t.int64_data.len() == n => t.int64_data.clone(),
            (data_type::INT32, Some(raw)) if raw.len() == 4 * n => {
                raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect()
            }
            (data_type::INT32, None) if t.int32_data.len() == n => t.int32_data.iter().map(|&v| v as i64).collect(),
            (data_type::INT64 | data_type::INT32, _) => {
                return Err(err(format!("data does not hold the {n} elements its dims declare")));
            }
            (other, _) => return Err(err(format!("data type {other} is not an integer"))),
        };
        Ok(v)
    }

    fn dims(&self, name: &str, t: &TensorProto) -> Result<Vec<usize>> {
        let mut n: u64 = 1;
        let mut dims = Vec::with_capacity(t.dims.len().min(8));
        if t.dims.len() > 8 {
            return Err(ImportError::Tensor {
                tensor: name.to_string(),
                detail: format!("rank {} is too high", t.dims.len()),
            });
        }
        for &d in &t.dims {
            if d < 0 {
                return Err(ImportError::Tensor {
                    tensor: name.to_string(),
                    detail: format!("negative dimension {d}"),
                });
            }
            n = n.saturating_mul(d as u64);
            dims.push(d as usize);
        }
        if n > self.limits.max_tensor_elements {
            return Err(ImportError::Oversized {
                what: format!("tensor `{name}`"),
                actual: n,
                maximum: self.limits.max_tensor_elements,
            });
        }
        Ok(dims)
    }

    /// The graph value read by input `i` of the node.
    fn value(&self, ctx: &Ctx, i: usize) -> Result<ValueId> {
        let name = ctx.node.input.get(i).ok_or_else(|| ctx.shape_err(format!("missing input {i}")))?;
        self.values.get(name).copied().ok_or_else(|| {
            if self.constants.contains_key(name) {
                ctx.shape_err(format!("input `{name}` is a constant where a graph value is expected"))
            } else {
                ImportError::MissingInput { node: ctx.name.clone(), op: ctx.op.to_string(), input: name.clone() }
            }
        })
    }

    fn push(&mut self, ctx: &Ctx, op: Op, inputs: Vec<ValueId>) -> Result<()> {
        let rank = match ctx.op {
            "Gemm" | "MatMul" => 2,
            _ => self.ranks[inputs[0]],
        };
        self.push_ranked(ctx, op, inputs, rank)
    }

    /// Pushes a node whose output has `rank` in ONNX.
    fn push_ranked(&mut self, ctx: &Ctx, op: Op, inputs: Vec<ValueId>, rank: usize) -> Result<()> {
        // Infer the shape now, so that errors name the ONNX node.
        let input_shapes: Vec<ImageShape> = inputs.iter().map(|&v| self.shapes[v]).collect();
        let shape = output_shape(&ctx.name, &op, &input_shapes).map_err(|e| match e {
            ModelError::Shape { detail, .. } => ctx.shape_err(detail),
            other => ImportError::Model(other),
        })?;
        // Every engine allocates each node's output: bound it here, not at run time.
        if shape.len() as u64 > self.limits.max_tensor_elements {
            return Err(ImportError::Oversized {
                what: format!("output of node `{}`", ctx.name),
                actual: shape.len() as u64,
                maximum: self.limits.max_tensor_elements,
            });
        }
        self.nodes.push((ctx.name.clone(), op, inputs));
        self.shapes.push(shape);
        self.ranks.push(rank);
        self.bind_output(ctx, self.shapes.len() - 1)
    }

    fn bind_output(&mut self, ctx: &Ctx, v: ValueId) -> Result<()> {
        let out = ctx.node.output.first().ok_or_else(|| ctx.shape_err("no output"))?;
        self.values.insert(out.clone(), v);
        Ok(())
    }

    fn node(&mut self, node: &NodeProto, index: usize) -> Result<()> {
        let op = node.op_type.as_deref().unwrap_or("");
        let name = node.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| format!("{op}#{index}"));
        let ctx = Ctx { node, name, op };
        if !matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx")) {
            return Err(ImportError::UnsupportedOp {
                node: ctx.name,
                op: format!("{}.{op}", node.domain.as_deref().unwrap_or("")),
            });
        }
        if fold::FOLDABLE.contains(&op) && self.fold(&ctx)? {
            return Ok(());
        }
        match op {
            "Conv" => self.conv(&ctx),
            "Gemm" => self.gemm(&ctx),
            "MatMul" => self.matmul(&ctx),
            "Add" => self.add(&ctx),
            "Sub" | "Mul" | "Div" => self.affine(&ctx),
            "BatchNormalization" => self.batchnorm(&ctx),
            "Relu" => {
                let x = self.value(&ctx, 0)?;
                self.push(&ctx, Op::Relu, vec![x])
            }
            "MaxPool" => {
                let x = self.value(&ctx, 0)?;
                ctx.require("ceil_mode", 0, 0)?;
                ctx.require("storage_order", 0, 0)?;
                if node.output.len() > 1 {
                    return Err(ctx.attr_err("Indices", "the indices output is not supported"));
                }
                let window = ctx.window(None)?;
                if window.size() > MAX_POOL_WINDOW {
                    let detail = format!(
                        "a window of {} elements (at most {MAX_POOL_WINDOW}: the secure suites compare every pair)",
                        window.size()
                    );
                    return Err(ctx.attr_err("kernel_shape", detail));
                }
                self.push(&ctx, Op::MaxPool { window, relu: false }, vec![x])
            }
            "AveragePool" => {
                let x = self.value(&ctx, 0)?;
                ctx.require("ceil_mode", 0, 0)?;
                let window = ctx.window(None)?;
                let s = self.shapes[x];
                // Excluding the padding matters only where a window overlaps it.
                let exclude_pad = ctx.int("count_include_pad", 0) == 0
                    && window.inside_counts(s.h, s.w).is_some_and(|c| c.iter().any(|&k| k != window.size()));
                self.push(&ctx, Op::AvgPool { window, exclude_pad }, vec![x])
            }
            "GlobalAveragePool" => {
                let x = self.value(&ctx, 0)?;
                let s = self.shapes[x];
                self.push(
                    &ctx,
                    Op::AvgPool {
                        window: Window2d { kernel: [s.h, s.w], stride: [1, 1], pads: [0; 4] },
                        exclude_pad: false,
                    },
                    vec![x],
                )
            }
            "Flatten" => {
                let x = self.value(&ctx, 0)?;
                ctx.require("axis", 1, 1)?;
                self.relabel(&ctx, x, &[1, self.shapes[x].len() as i64])
            }
            "Reshape" => self.reshape(&ctx),
            "Transpose" => self.transpose(&ctx),
            "Squeeze" | "Unsqueeze" => self.squeeze(&ctx),
            "Concat" => self.concat(&ctx),
            "LeakyRelu" => {
                let x = self.value(&ctx, 0)?;
                let alpha = ctx.float("alpha", 0.01);
                if !alpha.is_finite() {
                    return Err(ctx.attr_err("alpha", format!("{alpha} is not finite")));
                }
                self.push(&ctx, Op::LeakyRelu { alpha }, vec![x])
            }
            "Pad" => self.pad(&ctx),
            "Identity" | "Dropout" => {
                // Exporters also route shared initializers through Identity: alias the constant.
                if let Some(t) = node.input.first().and_then(|i| self.constants.get(i)).cloned() {
                    let out = node.output.first().ok_or_else(|| ctx.shape_err("no output"))?;
                    self.constants.insert(out.clone(), t);
                    return Ok(());
                }
                let x = self.value(&ctx, 0)?;
                self.bind_output(&ctx, x)
            }
            "Constant" => {
                let t = ctx
                    .attr("value")
                    .and_then(|a| a.t.clone())
                    .ok_or_else(|| ctx.attr_err("value", "only tensor constants are supported"))?;
                let out = node.output.first().ok_or_else(|| ctx.shape_err("no output"))?;
                self.dims(out, &t)?;
                self.constants.insert(out.clone(), t);
                Ok(())
            }
            _ => Err(ImportError::UnsupportedOp { node: ctx.name, op: op.to_string() }),
        }
    }

    /// Folds the node into a constant if it reads only constants (`Shape`: a value whose shape
    /// is known); `false` if it reads a graph value, left to the op's builder.
    fn fold(&mut self, ctx: &Ctx) -> Result<bool> {
        let mut inputs = Vec::with_capacity(ctx.node.input.len());
        for name in &ctx.node.input {
            if name.is_empty() {
                inputs.push(None);
            } else if let Some(t) = self.constants.get(name) {
                inputs.push(Some(self.decode_folded(name, t)?));
            } else if let (Some(&v), "Shape") = (self.values.get(name), ctx.op) {
                inputs.push(Some(Folded::new(vec![self.ranks[v]], Values::Int(self.onnx_dims(v)))));
            } else if self.values.contains_key(name) {
                return Ok(false);
            } else {
                return Err(ImportError::MissingInput {
                    node: ctx.name.clone(),
                    op: ctx.op.to_string(),
                    input: name.clone(),
                });
            }
        }
        let out = ctx.node.output.first().ok_or_else(|| ctx.shape_err("no output"))?;
        let folded = if ctx.op == "Shape" {
            let dims = inputs.first().cloned().flatten().ok_or_else(|| ctx.shape_err("missing input 0"))?;
            let dims = match &dims.values {
                // The shape of a constant is its dims.
                Values::Float(_) => {
                    Folded::new(vec![dims.dims.len()], Values::Int(dims.dims.iter().map(|&d| d as i64).collect()))
                }
                Values::Int(_) if self.values.contains_key(&ctx.node.input[0]) => dims,
                Values::Int(_) => {
                    Folded::new(vec![dims.dims.len()], Values::Int(dims.dims.iter().map(|&d| d as i64).collect()))
                }
            };
            self.shape_slice(ctx, dims)?
        } else {
            let tensor = match ctx.attr("value").and_then(|a| a.t.as_ref()) {
                Some(t) => Some(self.decode_folded(out, t)?),
                None => None,
            };
            let int = |name: &str| ctx.attr(name).and_then(|a| a.i);
            let ints = |name: &str| ctx.ints(name).map(<[i64]>::to_vec);
            let step = fold::Step {
                op: ctx.op,
                int: &int,
                ints: &ints,
                tensor,
                max_elements: self.limits.max_tensor_elements,
            };
            fold::fold(&step, &inputs).map_err(|detail| ctx.shape_err(format!("folding a constant: {detail}")))?
        };
        self.constants.insert(out.clone(), folded.into_proto(out));
        Ok(true)
    }

    /// `Shape`'s optional `start` and `end` applied to `dims`.
    fn shape_slice(&self, ctx: &Ctx, dims: Folded) -> Result<Folded> {
        let Values::Int(all) = dims.values else { unreachable!("shapes are integers") };
        let r = all.len() as i64;
        let at = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (start, end) = (at(ctx.int("start", 0)), at(ctx.int("end", r)));
        let kept = all[start..end.max(start)].to_vec();
        Ok(Folded::new(vec![kept.len()], Values::Int(kept)))
    }

    /// Value `v`'s dims as ONNX has them, the batch (run image by image) as 1.
    fn onnx_dims(&self, v: ValueId) -> Vec<i64> {
        let s = self.shapes[v];
        match self.ranks[v] {
            2 => vec![1, s.len() as i64],
            _ => vec![1, s.c as i64, s.h as i64, s.w as i64],
        }
    }

    /// Tensor `t` (named `name`) for folding: integers or floats.
    fn decode_folded(&self, name: &str, t: &TensorProto) -> Result<Folded> {
        let dims = self.dims(name, t)?;
        let values = match t.data_type.unwrap_or(0) {
            data_type::INT64 | data_type::INT32 => Values::Int(self.decode_i64(name, t)?),
            _ => Values::Float(self.decode_f32(name, t)?.1),
        };
        Ok(Folded::new(dims, values))
    }

    fn conv(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let groups = ctx.int("group", 1);
        let wname = ctx.node.input.get(1).ok_or_else(|| ctx.shape_err("missing weights"))?;
        let (dims, weight) = self.tensor_f32(ctx, wname)?;
        let [o, c, kh, kw] = dims[..] else {
            return Err(ImportError::Tensor {
                tensor: wname.clone(),
                detail: format!("rank {} is not 4 (OIHW)", dims.len()),
            });
        };
        let window = ctx.window(Some([kh, kw]))?;
        let bias = self.bias(ctx, 2, o)?;
        let input = self.shapes[x];
        if groups < 1 || !o.is_multiple_of(groups as usize) {
            return Err(ctx.attr_err("group", format!("{groups} does not divide the {o} filters")));
        }
        let groups = groups as usize;
        if c.checked_mul(groups) != Some(input.c) {
            return Err(ctx.shape_err(format!(
                "weights expect {c} input channels per group × {groups} groups, the input has {}",
                input.c
            )));
        }
        let geometry = ConvGeometry { input, out_channels: o, window };
        let weight_sigma = self.sigma(ctx, wname, weight.len(), |s| s)?;
        self.posterior_of_next(ctx, weight_sigma, (1.0, 1.0), o)?;
        self.push(ctx, Op::Linear(Linear { geometry, groups, weight, bias, dense: false }), vec![x])
    }

    /// The standard deviations `<name>.sigma` of a weight tensor of `len` elements, laid out
    /// by `layout` like the weights, if the model is Bayesian.
    fn sigma(
        &self,
        ctx: &Ctx,
        name: &str,
        len: usize,
        layout: impl Fn(Vec<f32>) -> Vec<f32>,
    ) -> Result<Option<Vec<f32>>> {
        let sigma_name = format!("{name}.sigma");
        if !self.constants.contains_key(&sigma_name) {
            return Ok(None);
        }
        let (_, s) = self.tensor_f32(ctx, &sigma_name)?;
        if s.len() != len {
            return Err(ImportError::Tensor {
                tensor: sigma_name,
                detail: format!("{} deviations for {len} weights", s.len()),
            });
        }
        Ok(Some(layout(s)))
    }

    /// Records the posterior of the linear node about to be pushed: its weights' deviations
    /// and its bias's (one per of its `outputs`), if present, scaled by the factors the
    /// importer applied to the weights and to the bias.
    fn posterior_of_next(
        &mut self,
        ctx: &Ctx,
        weight_sigma: Option<Vec<f32>>,
        scales: (f32, f32),
        outputs: usize,
    ) -> Result<()> {
        let bias_sigma = match ctx.node.input.get(2).filter(|n| !n.is_empty()) {
            Some(name) => self.sigma(ctx, name, outputs, |s| s)?,
            None => None,
        };
        match (weight_sigma, bias_sigma) {
            (None, None) => Ok(()),
            (Some(w), b) => {
                let scaled = |v: Vec<f32>, by: f32| v.into_iter().map(|s| s * by).collect();
                self.posterior.push(LayerPosterior {
                    node: self.nodes.len(),
                    weight_sigma: scaled(w, scales.0),
                    bias_sigma: b.map(|b| scaled(b, scales.1)),
                });
                Ok(())
            }
            (None, Some(_)) => Err(ctx.shape_err("deviations for the bias but not for the weights")),
        }
    }

    fn bias(&self, ctx: &Ctx, i: usize, outputs: usize) -> Result<Option<Vec<f32>>> {
        let Some(name) = ctx.node.input.get(i).filter(|n| !n.is_empty()) else {
            return Ok(None);
        };
        let (_, b) = self.tensor_f32(ctx, name)?;
        if b.len() != outputs {
            return Err(ImportError::Tensor {
                tensor: name.clone(),
                detail: format!("{} values for {outputs} outputs", b.len()),
            });
        }
        Ok(Some(b))
    }

    /// A dense layer from a `K × out` or `out × K` matrix.
    fn dense(
        &mut self,
        ctx: &Ctx,
        x: ValueId,
        (dims, w): (&[usize], Vec<f32>),
        transposed: bool,
        bias: Option<Vec<f32>>,
        scales: (f32, f32),
    ) -> Result<()> {
        let [r, c] = dims[..] else {
            return Err(ctx.shape_err(format!("weight rank {} is not 2", dims.len())));
        };
        let (k, out) = if transposed { (c, r) } else { (r, c) };
        let to_rows = |w: Vec<f32>| -> Vec<f32> {
            if transposed {
                w
            } else {
                (0..out).flat_map(|o| (0..k).map(move |i| (i, o))).map(|(i, o)| w[i * out + o]).collect()
            }
        };
        let weight_sigma = match ctx.node.input.get(1) {
            Some(name) => self.sigma(ctx, name, w.len(), to_rows)?,
            None => None,
        };
        let weight = to_rows(w);
        let geometry = ConvGeometry::dense(k, out);
        if self.shapes[x].len() != k {
            return Err(ctx.shape_err(format!("weights expect {k} features, the input has {}", self.shapes[x].len())));
        }
        self.posterior_of_next(ctx, weight_sigma, scales, out)?;
        self.push(ctx, Op::Linear(Linear { geometry, groups: 1, weight, bias, dense: true }), vec![x])
    }

    fn gemm(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        ctx.require("transA", 0, 0)?;
        let wname = ctx.node.input.get(1).ok_or_else(|| ctx.shape_err("missing weights"))?;
        let (dims, mut w) = self.tensor_f32(ctx, wname)?;
        let trans_b = ctx.int("transB", 0) != 0;
        let out = if trans_b { dims.first().copied() } else { dims.get(1).copied() }.unwrap_or(0);
        let (alpha, beta) = (ctx.float("alpha", 1.0), ctx.float("beta", 1.0));
        w.iter_mut().for_each(|v| *v *= alpha);
        let mut bias = self.bias(ctx, 2, out)?;
        if let Some(b) = &mut bias {
            b.iter_mut().for_each(|v| *v *= beta);
        }
        self.dense(ctx, x, (&dims, w), trans_b, bias, (alpha.abs(), beta.abs()))
    }

    fn matmul(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let wname = ctx.node.input.get(1).ok_or_else(|| ctx.shape_err("missing weights"))?;
        let (dims, w) = self.tensor_f32(ctx, wname)?;
        self.dense(ctx, x, (&dims, w), false, None, (1.0, 1.0))
    }

    fn add(&mut self, ctx: &Ctx) -> Result<()> {
        let names = &ctx.node.input;
        if names.len() != 2 {
            return Err(ctx.shape_err(format!("{} inputs, expected 2", names.len())));
        }
        // value + constant: a bias on the linear layer that produced the value.
        let constant = names.iter().position(|n| self.constants.contains_key(n));
        let Some(ci) = constant else {
            let (a, b) = (self.value(ctx, 0)?, self.value(ctx, 1)?);
            return self.push(ctx, Op::Add, vec![a, b]);
        };
        let x = self.value(ctx, 1 - ci)?;
        let (_, b) = self.tensor_f32(ctx, &names[ci])?;
        let readers = self.nodes.iter().filter(|n| n.2.contains(&x)).count();
        let target = x.checked_sub(1).filter(|_| readers == 0);
        match target.map(|j| &mut self.nodes[j].1) {
            Some(Op::Linear(l)) if l.bias.is_none() && b.len() == l.geometry.out_channels => {
                l.bias = Some(b);
                self.bind_output(ctx, x)
            }
            _ => self.affine(ctx),
        }
    }

    /// An activation plus, minus, times or divided by a constant that is one value per channel
    /// (or one in all): a per-channel affine map, which the merging pass folds into the linear
    /// layer before it.
    fn affine(&mut self, ctx: &Ctx) -> Result<()> {
        let names = &ctx.node.input;
        if names.len() != 2 {
            return Err(ctx.shape_err(format!("{} inputs, expected 2", names.len())));
        }
        let Some(ci) = names.iter().position(|n| self.constants.contains_key(n)) else {
            // Two activations: only their sum is linear.
            return Err(ImportError::UnsupportedOp { node: ctx.name.clone(), op: ctx.op.to_string() });
        };
        if (ctx.op, ci) == ("Div", 0) {
            return Err(ctx.shape_err("dividing by an activation is not linear"));
        }
        let x = self.value(ctx, 1 - ci)?;
        let c = self.channel_constant(ctx, &names[ci], x)?;
        let n = c.len();
        let (scale, shift) = match (ctx.op, ci) {
            ("Add", _) => (vec![1.0; n], c),
            ("Sub", 1) => (vec![1.0; n], c.iter().map(|v| -v).collect()),
            ("Sub", _) => (vec![-1.0; n], c),
            ("Mul", _) => (c, vec![0.0; n]),
            ("Div", 1) if c.iter().all(|&v| v != 0.0) => (c.iter().map(|v| 1.0 / v).collect(), vec![0.0; n]),
            _ => return Err(ctx.shape_err("division by a constant that holds 0")),
        };
        self.push(ctx, Op::BatchNorm { scale, shift }, vec![x])
    }

    /// Constant `name` as one value per channel of value `x`: a scalar, or `C × 1 × 1` (NCHW
    /// values) or `C` (NK values), leading 1s allowed.
    fn channel_constant(&self, ctx: &Ctx, name: &str, x: ValueId) -> Result<Vec<f32>> {
        let (dims, v) = self.tensor_f32(ctx, name)?;
        let channels = self.shapes[x].c;
        let first = dims.iter().position(|&d| d != 1).unwrap_or(dims.len());
        let per_channel = match (self.ranks[x], &dims[first..]) {
            (_, []) => return Ok(vec![v[0]; channels]),
            (4, [c, 1, 1]) | (2, [c]) => *c == channels,
            _ => false,
        };
        if !per_channel || dims.len() > self.ranks[x] {
            return Err(ImportError::Tensor {
                tensor: name.to_string(),
                detail: format!("shape {dims:?} is neither one value nor one per channel of {:?}", self.shapes[x]),
            });
        }
        Ok(v)
    }

    fn batchnorm(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        ctx.require("training_mode", 0, 0)?;
        if ctx.node.output.len() > 1 {
            return Err(ctx.attr_err("training_mode", "running-statistics outputs are not supported"));
        }
        let eps = ctx.float("epsilon", 1e-5);
        let c = self.shapes[x].c;
        let get = |i: usize| -> Result<Vec<f32>> {
            let name = ctx.node.input.get(i).ok_or_else(|| ctx.shape_err(format!("missing input {i}")))?;
            let (_, v) = self.tensor_f32(ctx, name)?;
            if v.len() != c {
                return Err(ImportError::Tensor {
                    tensor: name.clone(),
                    detail: format!("{} values for {c} channels", v.len()),
                });
            }
            Ok(v)
        };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        if var.iter().any(|&v| v + eps <= 0.0) {
            return Err(ctx.attr_err("epsilon", "variance + epsilon is not positive"));
        }
        let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        self.push(ctx, Op::BatchNorm { scale, shift }, vec![x])
    }

    fn reshape(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let name = ctx.node.input.get(1).ok_or_else(|| ctx.shape_err("missing shape"))?;
        let mut target = self.tensor_i64(ctx, name)?;
        let dims = self.onnx_dims(x);
        if ctx.int("allowzero", 0) == 0 {
            // 0 copies the input's dimension at that axis.
            for (i, t) in target.iter_mut().enumerate() {
                if *t == 0 {
                    *t = dims
                        .get(i)
                        .copied()
                        .ok_or_else(|| ctx.shape_err(format!("0 at axis {i} past the input's rank")))?;
                }
            }
        }
        let known = elements(target.iter().filter(|&&t| t != -1));
        let total: i64 = dims.iter().product();
        match (target.iter().filter(|&&t| t == -1).count(), known) {
            (0, _) => {}
            (1, Some(known)) if known > 0 && total % known == 0 => {
                target.iter_mut().filter(|t| **t == -1).for_each(|t| *t = total / known)
            }
            _ => return Err(ctx.shape_err(format!("cannot infer the -1 of {target:?} for {dims:?}"))),
        }
        self.relabel(ctx, x, &target)
    }

    /// `Transpose` of an activation: only a permutation that keeps the batch axis first and the
    /// axes longer than 1 in their order, which moves no data.
    fn transpose(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let dims = self.onnx_dims(x);
        let perm: Vec<i64> = match ctx.ints("perm") {
            Some(p) => p.to_vec(),
            None => (0..dims.len() as i64).rev().collect(),
        };
        let mut seen = vec![false; dims.len()];
        let valid = perm.len() == dims.len()
            && perm
                .iter()
                .all(|&a| (0..dims.len() as i64).contains(&a) && !std::mem::replace(&mut seen[a as usize], true));
        if !valid {
            return Err(ctx.attr_err("perm", format!("{perm:?} is not a permutation of {} axes", dims.len())));
        }
        let moved: Vec<i64> = perm.iter().copied().filter(|&a| dims[a as usize] != 1).collect();
        if perm[0] != 0 || moved.windows(2).any(|w| w[0] > w[1]) {
            return Err(ctx.attr_err(
                "perm",
                format!("{perm:?} moves data of {dims:?} (only permutations that relabel are supported)"),
            ));
        }
        let out: Vec<i64> = perm.iter().map(|&a| dims[a as usize]).collect();
        self.relabel(ctx, x, &out)
    }

    /// `Squeeze` and `Unsqueeze` of an activation: unit axes removed or inserted, never the
    /// batch axis.
    fn squeeze(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        let mut dims = self.onnx_dims(x);
        let name = ctx
            .node
            .input
            .get(1)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ctx.attr_err("axes", "missing: which axes would depend on the batch size"))?;
        let axes = self.tensor_i64(ctx, name)?;
        let rank = if ctx.op == "Squeeze" { dims.len() } else { dims.len() + axes.len() } as i64;
        if axes.len() > dims.len().max(4) {
            return Err(ctx.attr_err("axes", format!("{} axes for a value of rank {}", axes.len(), dims.len())));
        }
        let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
        axes.sort_unstable();
        let bad = |detail: String| ctx.attr_err("axes", detail);
        if axes.first().is_some_and(|&a| a <= 0)
            || axes.last().is_some_and(|&a| a >= rank)
            || axes.windows(2).any(|w| w[0] == w[1])
        {
            return Err(bad(format!("{axes:?} must be distinct axes of rank {rank} after the batch axis")));
        }
        if ctx.op == "Squeeze" {
            if let Some(&a) = axes.iter().find(|&&a| dims[a as usize] != 1) {
                return Err(bad(format!("axis {a} of {dims:?} is not 1")));
            }
            axes.iter().rev().for_each(|&a| {
                dims.remove(a as usize);
            });
        } else {
            axes.iter().for_each(|&a| dims.insert(a as usize, 1));
        }
        self.relabel(ctx, x, &dims)
    }

    /// Value `x` read as the ONNX dims `target` (batch first): rank 2 or 4, as many elements.
    fn relabel(&mut self, ctx: &Ctx, x: ValueId, target: &[i64]) -> Result<()> {
        let dims = self.onnx_dims(x);
        if target.iter().any(|&t| t < 1) || elements(target.iter()) != Some(dims.iter().product()) {
            return Err(ctx.shape_err(format!("{dims:?} cannot be read as {target:?}")));
        }
        let d = |i: usize| target[i] as usize;
        let shape = match target {
            [1, _] => ImageShape::new(d(1), 1, 1),
            [1, _, _, _] => ImageShape::new(d(1), d(2), d(3)),
            _ => {
                return Err(ctx.shape_err(format!(
                    "{dims:?} read as {target:?}: only batch-first shapes of rank 2 (NK) or 4 (NCHW) are supported"
                )));
            }
        };
        self.push_ranked(ctx, Op::Reshape { shape }, vec![x], target.len())
    }

    /// Channel concatenation of activations (axis 1).
    fn concat(&mut self, ctx: &Ctx) -> Result<()> {
        let inputs = (0..ctx.node.input.len()).map(|i| self.value(ctx, i)).collect::<Result<Vec<_>>>()?;
        let rank = *inputs.first().map(|&v| &self.ranks[v]).ok_or_else(|| ctx.shape_err("no inputs"))?;
        if inputs.iter().any(|&v| self.ranks[v] != rank) {
            return Err(ctx.shape_err("inputs of different ranks"));
        }
        let axis = ctx.int("axis", 0);
        if axis != 1 && axis != 1 - rank as i64 {
            return Err(ctx.attr_err("axis", format!("{axis} is not supported (only the channel axis, 1)")));
        }
        self.push_ranked(ctx, Op::Concat, inputs, rank)
    }

    fn pad(&mut self, ctx: &Ctx) -> Result<()> {
        let x = self.value(ctx, 0)?;
        match ctx.attr("mode").and_then(|a| a.s.as_deref()) {
            None | Some(b"constant") => {}
            Some(m) => {
                return Err(
                    ctx.attr_err("mode", format!("`{}` is not supported (only constant)", String::from_utf8_lossy(m)))
                );
            }
        }
        if let Some(name) = ctx.node.input.get(2).filter(|n| !n.is_empty()) {
            let (_, v) = self.tensor_f32(ctx, name)?;
            if v.iter().any(|&v| v != 0.0) {
                return Err(ctx.attr_err("constant_value", "only zero padding is supported"));
            }
        }
        let name = ctx.node.input.get(1).ok_or_else(|| ctx.shape_err("missing pads"))?;
        let p = self.tensor_i64(ctx, name)?;
        match p[..] {
            [0, 0, t, l, 0, 0, b, r] if [t, l, b, r].iter().all(|&v| (0..=1 << 12).contains(&v)) => {
                self.push(ctx, Op::Pad { pads: [t as usize, l as usize, b as usize, r as usize] }, vec![x])
            }
            _ => Err(ctx.attr_err("pads", format!("{p:?} is not a non-negative spatial padding of an NCHW tensor"))),
        }
    }
}

/// The number of elements of a tensor of `dims`, or `None` past `i64`.
fn elements<'a>(mut dims: impl Iterator<Item = &'a i64>) -> Option<i64> {
    dims.try_fold(1i64, |n, &d| n.checked_mul(d))
}
