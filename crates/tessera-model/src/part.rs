//! A split model as each party of suite seco stores it ([`SplitFile`]): the part before the cut
//! and the part after it, each as an architecture with its plaintext weights, one server's
//! weight shares ([`WeightShares`]), or no weights at all. A remote server's file holds shares
//! only; the user's holds the architecture before the cut only.
//!
//! Layout: the magic line `tessera-split/1\n`, the JSON header's length (u64 LE), the header
//! (metadata, the BLAKE3 of the model the split was cut from, split point, weighted layers in
//! all, logits per image and their scale, and per part its fixed-point parameters, input
//! shape, nodes and weight kind), then per part and convolution or FC layer, in node order, its
//! weights and biases as little-endian 64-bit words: plaintext weights as signed integers and
//! biases in `Z_t`, shares in `Z_t`. Every count comes from the header's architecture, and the
//! file must end exactly where the last layer does. Architectures are rebuilt through
//! [`Model::new`] and [`FixedModel::new`], so a file is checked as strictly as an imported model.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_field::fixed::FixedPointParams;
use tessera_field::kernels::{ConvGeometry, ConvKernel, ImageShape, Window2d};
use tessera_field::zt;

use crate::error::{ModelError, Result};
use crate::fixed::{FixedModel, FixedOp};
use crate::ir::{Linear, Model, Op};
use crate::meta::ModelMeta;
use crate::nonlinear::SLOPE_BITS;
use crate::shares::{LayerShare, WeightShares};

const MAGIC: &[u8] = b"tessera-split/1\n";
/// Headers larger than this are refused before they are parsed.
const MAX_HEADER: u64 = 1 << 24;
/// The most weights (or outputs) one layer of a split file may declare.
const MAX_LAYER_WEIGHTS: usize = 1 << 26;

/// What a part carries besides its architecture.
#[derive(Debug)]
pub enum PartWeights {
    /// The plaintext weights (in the part's [`FixedModel`]).
    Plain,
    /// One server's shares; the part's model has zero weights.
    Shares(Arc<WeightShares>),
    /// Nothing; the part's model has zero weights.
    Architecture,
}

/// One side of the cut.
#[derive(Debug)]
pub struct ModelPart {
    /// The architecture (weights zero unless [`PartWeights::Plain`]).
    pub model: Arc<FixedModel>,
    /// The weights it carries.
    pub weights: PartWeights,
}

/// A party's file of a model split after `split` weighted layers.
#[derive(Debug)]
pub struct SplitFile {
    /// The model's metadata (classes, normalization).
    pub meta: ModelMeta,
    /// BLAKE3 of the model file the split was cut from (hex; empty if unknown): the four
    /// files of one split name the same model.
    pub source: String,
    /// Weighted layers before the cut.
    pub split: usize,
    /// Weighted layers of the whole model (layers run after the cut when `split` is fewer).
    pub weighted: usize,
    /// Logits per image.
    pub logits: usize,
    /// Fractional bits of the logits (the whole model's output scale).
    pub output_bits: u32,
    /// The layers before the cut, if this party holds them.
    pub prefix: Option<ModelPart>,
    /// The layers after the cut, if this party holds them.
    pub suffix: Option<ModelPart>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    meta: ModelMeta,
    #[serde(default)]
    source: String,
    split: usize,
    weighted: usize,
    logits: usize,
    output_bits: u32,
    prefix: Option<PartHeader>,
    suffix: Option<PartHeader>,
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Plain,
    Shares,
    Architecture,
}

#[derive(Serialize, Deserialize)]
struct PartHeader {
    weights: Kind,
    /// `f`, `f_w`, `ℓx`.
    fixed_point: [u32; 3],
    input: [usize; 3],
    output: usize,
    nodes: Vec<NodeHeader>,
}

#[derive(Serialize, Deserialize)]
struct NodeHeader {
    name: String,
    inputs: Vec<usize>,
    #[serde(flatten)]
    op: OpHeader,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpHeader {
    Linear { input: [usize; 3], outputs: usize, window: WindowHeader, groups: usize, dense: bool, bias: bool },
    Relu,
    LeakyRelu { slope: u32 },
    MaxPool { window: WindowHeader, relu: bool },
    SumPool { window: WindowHeader },
    Reshape { shape: [usize; 3] },
    Add,
    Concat,
    Pad { pads: [usize; 4] },
}

#[derive(Serialize, Deserialize, Clone, Copy)]
struct WindowHeader {
    kernel: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
}

impl From<Window2d> for WindowHeader {
    fn from(w: Window2d) -> Self {
        Self { kernel: w.kernel, stride: w.stride, pads: w.pads }
    }
}

impl From<WindowHeader> for Window2d {
    fn from(w: WindowHeader) -> Self {
        Self { kernel: w.kernel, stride: w.stride, pads: w.pads }
    }
}

fn shape3(s: ImageShape) -> [usize; 3] {
    [s.c, s.h, s.w]
}

fn image([c, h, w]: [usize; 3]) -> ImageShape {
    ImageShape::new(c, h, w)
}

fn malformed(reason: impl Into<String>) -> ModelError {
    ModelError::Malformed { what: "split model file", reason: reason.into() }
}

impl SplitFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            meta: self.meta.clone(),
            source: self.source.clone(),
            split: self.split,
            weighted: self.weighted,
            logits: self.logits,
            output_bits: self.output_bits,
            prefix: self.prefix.as_ref().map(part_header),
            suffix: self.suffix.as_ref().map(part_header),
        };
        let json = serde_json::to_vec(&header).expect("a header serializes");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        for part in self.prefix.iter().chain(&self.suffix) {
            write_weights(part, &mut out);
        }
        out
    }

    /// Reads a file, checking its architecture and every length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| malformed("not a Tessera split model file"))?;
        let (len, rest) = rest.split_at_checked(8).ok_or_else(|| malformed("truncated header"))?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        if len > MAX_HEADER || len > rest.len() as u64 {
            return Err(malformed(format!("a header of {len} bytes in a file of {}", bytes.len())));
        }
        let (json, mut words) = rest.split_at(len as usize);
        let header: Header = serde_json::from_slice(json).map_err(|e| malformed(format!("header: {e}")))?;
        let mut part = |h: Option<PartHeader>| h.map(|h| read_part(h, &mut words)).transpose();
        let prefix = part(header.prefix)?;
        let suffix = part(header.suffix)?;
        if !words.is_empty() {
            return Err(malformed(format!("{} bytes after the last layer", words.len())));
        }
        if header.split > header.weighted {
            return Err(malformed(format!("split after {} of {} weighted layers", header.split, header.weighted)));
        }
        Ok(Self {
            meta: header.meta,
            source: header.source,
            split: header.split,
            weighted: header.weighted,
            logits: header.logits,
            output_bits: header.output_bits,
            prefix,
            suffix,
        })
    }
}

fn part_header(part: &ModelPart) -> PartHeader {
    let m = &part.model;
    let p = m.params();
    let nodes = m
        .ops()
        .iter()
        .enumerate()
        .map(|(i, op)| NodeHeader {
            name: m.node_name(i).to_string(),
            inputs: m.inputs[i].clone(),
            op: match op {
                FixedOp::Linear { kernel, bias } => {
                    let g = kernel.geometry();
                    OpHeader::Linear {
                        input: shape3(g.input),
                        outputs: g.out_channels,
                        window: g.window.into(),
                        groups: kernel.groups(),
                        dense: m.value_shape(m.inputs[i][0]) != g.input,
                        bias: bias.is_some(),
                    }
                }
                FixedOp::Relu { .. } => OpHeader::Relu,
                FixedOp::LeakyRelu { slope, .. } => OpHeader::LeakyRelu { slope: *slope },
                FixedOp::MaxPool { window, relu, .. } => OpHeader::MaxPool { window: (*window).into(), relu: *relu },
                FixedOp::SumPool { window } => OpHeader::SumPool { window: (*window).into() },
                FixedOp::Reshape => OpHeader::Reshape { shape: shape3(m.shapes[i]) },
                FixedOp::Add { .. } => OpHeader::Add,
                FixedOp::Concat { .. } => OpHeader::Concat,
                FixedOp::Pad { pads } => OpHeader::Pad { pads: *pads },
            },
        })
        .collect();
    PartHeader {
        weights: match part.weights {
            PartWeights::Plain => Kind::Plain,
            PartWeights::Shares(_) => Kind::Shares,
            PartWeights::Architecture => Kind::Architecture,
        },
        fixed_point: [p.f(), p.f_w(), p.bound_bits()],
        input: shape3(m.input_shape()),
        output: m.output,
        nodes,
    }
}

fn write_weights(part: &ModelPart, out: &mut Vec<u8>) {
    for (node, op) in part.model.ops().iter().enumerate() {
        let FixedOp::Linear { kernel, bias } = op else { continue };
        match &part.weights {
            PartWeights::Plain => {
                kernel.group_weights().iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
                bias.iter().flatten().for_each(|b| out.extend_from_slice(&b.to_le_bytes()));
            }
            PartWeights::Shares(shares) => {
                let share = shares.layer(node).expect("a share per linear layer");
                share.weights().iter().chain(share.bias()).for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
            }
            PartWeights::Architecture => {}
        }
    }
}

/// Takes `n` little-endian words off the front of `words`.
fn take_words(words: &mut &[u8], n: usize, what: &str) -> Result<Vec<u64>> {
    let bytes = n
        .checked_mul(8)
        .filter(|&b| b <= words.len())
        .ok_or_else(|| malformed(format!("the file ends inside the {what} ({n} words, {} bytes left)", words.len())))?;
    let (head, tail) = words.split_at(bytes);
    *words = tail;
    Ok(head.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
}

fn read_part(h: PartHeader, words: &mut &[u8]) -> Result<ModelPart> {
    let [f, f_w, bound] = h.fixed_point;
    let params = FixedPointParams::new(f, f_w, bound)?;
    let mut nodes = Vec::with_capacity(h.nodes.len());
    let mut linear = Vec::new();
    for (i, node) in h.nodes.into_iter().enumerate() {
        let op = match node.op {
            OpHeader::Linear { input, outputs, window, groups, dense, bias } => {
                let geometry = ConvGeometry { input: image(input), out_channels: outputs, window: window.into() };
                let per_output = geometry.group(groups).map(|g| g.terms()).unwrap_or(0);
                // The architecture is rebuilt with zero weights: bound them before allocating.
                let count = outputs
                    .checked_mul(per_output)
                    .filter(|&n| n <= MAX_LAYER_WEIGHTS && outputs <= MAX_LAYER_WEIGHTS)
                    .ok_or_else(|| malformed(format!("node `{}`: a layer of more than 2^26 weights", node.name)))?;
                linear.push((i, geometry, groups, count, bias));
                Op::Linear(Linear {
                    geometry,
                    groups,
                    dense,
                    weight: vec![0.0; count],
                    bias: bias.then(|| vec![0.0; outputs]),
                })
            }
            OpHeader::Relu => Op::Relu,
            // Exact in f32 (at most 17 significant bits), so the fixed-point model gets `slope` back.
            OpHeader::LeakyRelu { slope } => {
                Op::LeakyRelu { alpha: (f64::from(slope) / f64::from(SLOPE_BITS).exp2()) as f32 }
            }
            OpHeader::MaxPool { window, relu } => Op::MaxPool { window: window.into(), relu },
            OpHeader::SumPool { window } => Op::SumPool { window: window.into() },
            OpHeader::Reshape { shape } => Op::Reshape { shape: image(shape) },
            OpHeader::Add => Op::Add,
            OpHeader::Concat => Op::Concat,
            OpHeader::Pad { pads } => Op::Pad { pads },
        };
        nodes.push((node.name, op, node.inputs));
    }
    let model = Model::new(image(h.input), nodes, h.output, ModelMeta::default())?;
    let mut fixed = FixedModel::new(&model, params)?;
    let weights = match h.weights {
        Kind::Architecture => PartWeights::Architecture,
        Kind::Plain => {
            let model = Arc::make_mut(&mut fixed);
            for &(node, geometry, groups, count, has_bias) in &linear {
                let w = take_words(words, count, "weights")?;
                let w: Vec<i64> = w.into_iter().map(|v| v as i64).collect();
                let kernel = ConvKernel::grouped(geometry, groups, &w)
                    .ok_or_else(|| malformed(format!("node `{}`: a weight of 2^40 or more", model.node_name(node))))?;
                let bias = if has_bias { Some(field_words(words, geometry.out_channels, "biases")?) } else { None };
                model.ops[node] = FixedOp::Linear { kernel, bias };
            }
            PartWeights::Plain
        }
        Kind::Shares => {
            let mut layers: Vec<Option<LayerShare>> = (0..fixed.ops().len()).map(|_| None).collect();
            for &(node, geometry, groups, count, _) in &linear {
                let w = field_words(words, count, "weight shares")?;
                let b = field_words(words, geometry.out_channels, "bias shares")?;
                layers[node] = Some(LayerShare::new(geometry, groups, w, b).ok_or_else(|| malformed("a share"))?);
            }
            PartWeights::Shares(Arc::new(WeightShares::from_layers(layers)))
        }
    };
    Ok(ModelPart { model: fixed, weights })
}

/// `n` words, each an element of `Z_t`.
fn field_words(words: &mut &[u8], n: usize, what: &str) -> Result<Vec<u64>> {
    let v = take_words(words, n, what)?;
    if v.iter().any(|&x| x >= zt::T) {
        return Err(malformed(format!("{what} outside Z_t")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use tessera_field::seed::os_rng;

    use super::*;
    use crate::split::tests::residual;

    fn files(l: usize) -> (Arc<FixedModel>, [SplitFile; 2]) {
        let model = residual();
        let split = model.split(l).unwrap();
        let suffix = split.suffix.unwrap();
        let [b, _c] = WeightShares::deal(&suffix, &mut os_rng());
        let meta = ModelMeta { name: "residual".into(), ..Default::default() };
        let gateway = SplitFile {
            meta: meta.clone(),
            source: String::new(),
            split: l,
            weighted: 4,
            logits: 3,
            output_bits: 16,
            prefix: Some(ModelPart { model: split.prefix.clone(), weights: PartWeights::Plain }),
            suffix: Some(ModelPart { model: suffix.clone(), weights: PartWeights::Architecture }),
        };
        let remote = SplitFile {
            meta,
            source: String::new(),
            split: l,
            weighted: 4,
            logits: 3,
            output_bits: 16,
            prefix: None,
            suffix: Some(ModelPart { model: suffix, weights: PartWeights::Shares(Arc::new(b)) }),
        };
        (model, [gateway, remote])
    }

    #[test]
    fn split_files_round_trip_their_architecture_and_weights() {
        let (model, [gateway, remote]) = files(1);
        let back = SplitFile::from_bytes(&gateway.to_bytes()).unwrap();
        assert_eq!(back.meta.name, "residual");
        let prefix = back.prefix.unwrap().model;
        let input: Vec<u64> = (0..72).map(|i| zt::from_i64(i * 3 - 100)).collect();
        // The plaintext prefix computes what the original's first layers do.
        assert_eq!(
            prefix.run_encoded(input.clone(), 1).unwrap(),
            model.split(1).unwrap().prefix.run_encoded(input, 1).unwrap()
        );
        let suffix = back.suffix.unwrap();
        assert!(matches!(suffix.weights, PartWeights::Architecture));
        assert_eq!(suffix.model.nonlinear_layers(), model.split(1).unwrap().suffix.unwrap().nonlinear_layers());
        let bytes = remote.to_bytes();
        let back = SplitFile::from_bytes(&bytes).unwrap();
        let PartWeights::Shares(shares) = back.suffix.unwrap().weights else { panic!("shares expected") };
        let PartWeights::Shares(original) = &remote.suffix.as_ref().unwrap().weights else { unreachable!() };
        for node in 0..remote.suffix.as_ref().unwrap().model.ops().len() {
            assert_eq!(
                shares.layer(node).map(|s| s.weights().to_vec()),
                original.layer(node).map(|s| s.weights().to_vec())
            );
        }
        // A remote file holds no plaintext weight: every stored word is a share.
        let plain: Vec<u64> = model
            .ops()
            .iter()
            .filter_map(|op| match op {
                FixedOp::Linear { kernel, .. } => Some(kernel.group_weights()),
                _ => None,
            })
            .flatten()
            .map(zt::from_i64)
            .filter(|&w| w > 1 << 20 && w < zt::T - (1 << 20))
            .collect();
        assert!(plain.is_empty(), "the test model's weights are small");
        let words = &bytes[bytes.len() - 8 * 100..];
        assert!(words.chunks(8).all(|c| {
            let v = u64::from_le_bytes(c.try_into().unwrap());
            v > 1 << 20 && v < zt::T - (1 << 20)
        }));
    }

    #[test]
    fn malformed_split_files_are_typed_errors() {
        let (_, [gateway, remote]) = files(3);
        let bytes = remote.to_bytes();
        for bad in [&bytes[..bytes.len() - 1], &bytes[..20], b"not a model", &bytes[..MAGIC.len() + 8]] {
            assert!(matches!(SplitFile::from_bytes(bad), Err(ModelError::Malformed { .. })));
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(SplitFile::from_bytes(&longer).unwrap_err().to_string().contains("after the last layer"));
        let mut above = bytes.clone();
        let n = above.len();
        above[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(SplitFile::from_bytes(&above).unwrap_err().to_string().contains("outside Z_t"));
        let mut huge = gateway.to_bytes();
        huge[MAGIC.len()..MAGIC.len() + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(SplitFile::from_bytes(&huge), Err(ModelError::Malformed { .. })));
        // A header whose architecture does not hold together is refused by the model's checks.
        let text = String::from_utf8_lossy(&gateway.to_bytes()).replace("\"outputs\":4", "\"outputs\":5");
        assert!(SplitFile::from_bytes(text.as_bytes()).is_err());
        // A header that declares a huge layer is refused before anything is allocated for it.
        let json = String::from_utf8_lossy(&gateway.to_bytes()[MAGIC.len() + 8..]).into_owned();
        let end = json.rfind('}').unwrap() + 1;
        let huge = json[..end].replacen("\"outputs\":4", "\"outputs\":4000000000", 1);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(huge.len() as u64).to_le_bytes());
        bytes.extend_from_slice(huge.as_bytes());
        let err = SplitFile::from_bytes(&bytes).unwrap_err().to_string();
        assert!(err.contains("more than 2^26 weights"), "{err}");
    }
}
