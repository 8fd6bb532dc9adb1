//! Suite `clientserver` (PROTOCOLS.md section 5): a user U with the image and a model owner S
//! with the weights, semi-honest; S never sees the image and U never sees a weight. The
//! architecture (layer shapes) is public.
//!
//! Every value of the model is additively shared in `Z_t` between the two: U's share of every
//! value is fixed before the image exists, S's share is computed online.
//!
//! **Preprocessing** (input-independent, per query; U drives it in model order):
//! * [`PREPARE`] U → S: batch, a fresh BFV public key (for sealing). S refuses it once the
//!   connection holds its configured pool of unused material.
//! * U draws its input mask `r_1`, uniform in `Z_t`; its share of the input.
//! * Per convolution or FC layer `i`: [`ENCRYPTED`] U → S: U's share `u_i` of the layer's input,
//!   encrypted under U's key (coefficient encoding, [`tessera_he::ConvPacking`]);
//!   [`PRODUCT`] S → U: `⟦W_i u_i − s_i⟧` with `s_i` uniform in `Z_t` per output, unused
//!   coefficients masked, sealed with flooding noise. U decrypts its share `W_i u_i − s_i`;
//!   S keeps `s_i`.
//! * Per ReLU or max-pool layer: one garbled-circuit layer ([`tessera_gc`]) with **U as garbler**
//!   and **S as evaluator**, offline phase: base OT, OT extension on S's random offline shares,
//!   and the garbled tables U → S. U's output shares are the garbler's masks `r`, so U's share
//!   of the layer's output is `r` and S's will be `f(x) − r`. The tables, the largest part of
//!   the material, stay at S: U keeps its seeds, masks and shares (the storage that led
//!   Delphi-style deployments to garble online is the server's, not the user's device's).
//! * [`PREPARED`] S → U: S's cost report of the preprocessing.
//!
//! **Online** (per query, consuming one preprocessed material, which is then destroyed):
//! * [`QUERY`] U → S: `x − r_1`, S's share of the input.
//! * S runs every linear layer on its share in the clear, `W_i a_i + b_i + s_i`, and residual
//!   additions, pads and sum pools locally; U does nothing for them (its shares are known).
//! * Per nonlinear layer, the garbled circuit's online phase: S → U the re-share
//!   `a − c` (uniform, `c` S's offline share), U → S its input labels; S evaluates and
//!   decodes its share. Truncation happens inside the circuit and rounds to nearest exactly as
//!   the fixed-point reference does, so the logits are **identical** to the reference's.
//! * [`LOGITS`] S → U: S's share of the logits; [`REPORT`] S → U: its online cost report.
//!
//! **Leakage** (semi-honest parties). S sees `x − r_1` (uniform), ciphertexts, OT messages and
//! garbled-circuit labels under U's fresh keys: nothing about the image. U sees `W_i u_i − s_i`
//! (uniform, since `s_i` is), re-shares `a − c` (uniform, since `c` is S's), S's timings, and the
//! logits: nothing about the weights beyond the logits, the architecture, the products' flooded
//! noise (2^−29 per ciphertext) and the magnitudes the timings show. A user that deviates (noise
//! it chooses in its ciphertexts, another garbled function) recovers the weights. Threat model,
//! parameters and the exact leakage: docs/suites/clientserver.md.

mod memory;
mod server;
mod service;
mod user;

pub use crate::parties::Outcome;
#[doc(hidden)]
pub use memory::{InMemoryOutcome, InMemoryRun, View, run_in_memory};
pub use server::ClientServerServer;
pub use service::ClientServerService;
pub use user::{UserMaterial, prepare, run};
pub(crate) use user::{missing_report, prepare_traced, run_layers};

use tessera_gc::{GcError, Layer, Modulus, Nonlinear};
use tessera_he::{ConvPacking, Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::{NonlinearKind, NonlinearLayer};
use tessera_net::MessageKind;
use tessera_net::admission::FrameLimits;

use crate::error::{Result, SuiteError, Violation};

/// U → S: batch (u32 LE), then U's public key.
pub const PREPARE: MessageKind = MessageKind(0x0601);
/// U → S, per linear layer (preprocessing): U's input shares, seeded ciphertexts per image.
pub const ENCRYPTED: MessageKind = MessageKind(0x0602);
/// S → U, per linear layer (preprocessing): the sealed masked products per image.
pub const PRODUCT: MessageKind = MessageKind(0x0603);
/// S → U: the preprocessing is stored; S's cost report of it.
pub const PREPARED: MessageKind = MessageKind(0x0604);
/// U → S (online): S's share of the input, `x − r_1`.
pub const QUERY: MessageKind = MessageKind(0x0605);
/// S → U (online): S's share of the logits.
pub const LOGITS: MessageKind = MessageKind(0x0606);
/// S → U: S's online cost report.
pub const REPORT: MessageKind = MessageKind(0x0607);

/// Most images in one query.
pub const MAX_BATCH: usize = 8;

/// A step of the model in the order both parties run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// A convolution or FC layer.
    Linear(u32),
    /// A ReLU or max pool.
    Nonlinear(NonlinearLayer),
}

/// The linear and nonlinear layers of `model`, in node order.
pub(crate) fn schedule(model: &FixedModel) -> Vec<Task> {
    let mut nonlinear = model.nonlinear_layers().into_iter().peekable();
    let mut tasks = Vec::new();
    for node in 0..model.ops().len() {
        if model.linear_kernel(node).is_some() {
            tasks.push(Task::Linear(node as u32));
        } else if let Some(layer) = nonlinear.next_if(|l| l.node as usize == node) {
            tasks.push(Task::Nonlinear(layer));
        }
    }
    tasks
}

/// The garbled circuit computing `layer`: ReLU with truncation, or max pool (fused with ReLU
/// or not). A leaky ReLU is refused: its slope would be a constant multiplication inside the
/// circuit, which these circuits do not have.
pub(crate) fn gc_op(layer: &NonlinearLayer) -> Result<Nonlinear> {
    match layer.kind {
        NonlinearKind::Relu => Ok(Nonlinear::ReluTrunc { shift: layer.shift }),
        NonlinearKind::MaxPool { relu, .. } => {
            Ok(Nonlinear::MaxPool { window: layer.arity(), relu, shift: layer.shift })
        }
        NonlinearKind::LeakyRelu { .. } => Err(SuiteError::UnsupportedLayer {
            node: layer.node,
            what: "a LeakyReLU: the garbled-circuit suites (clientserver, seco) have no LeakyReLU",
        }),
    }
}

/// The garbled-circuit layer of `layer` for `batch` images: one instance per output element.
pub(crate) fn gc_layer(layer: &NonlinearLayer, batch: usize) -> Result<Layer> {
    Layer::new(gc_op(layer)?, Modulus::tessera(), batch * layer.items()).map_err(|e| local_gc(layer.node, e))
}

/// Gathers one party's shares of `layer`'s input (`batch` images) in instance order: per image,
/// per item, its window's elements.
pub(crate) fn gather(layer: &NonlinearLayer, input: &[u64], batch: usize) -> Vec<u64> {
    let idx = layer.gather();
    let len = layer.input.len();
    let mut out = Vec::with_capacity(batch * idx.len());
    for image in input.chunks(len).take(batch) {
        out.extend(idx.iter().map(|&i| image[i as usize]));
    }
    out
}

/// A garbled-circuit error at layer `node` on the link to `peer`, sorted by who is at fault.
pub(crate) fn gc_error(peer: &str, node: u32, e: GcError) -> SuiteError {
    match e {
        GcError::Net(e) => e.into(),
        GcError::WrongLength { .. }
        | GcError::OutOfRange { .. }
        | GcError::InvalidPoint { .. }
        | GcError::ConsistencyCheck
        | GcError::OutOfOrder { .. } => SuiteError::Protocol {
            peer: peer.into(),
            message: "garbled circuit",
            violation: Violation::Garbling { layer: node, reason: e.to_string() },
        },
        e => local_gc(node, e),
    }
}

pub(crate) fn local_gc(node: u32, e: GcError) -> SuiteError {
    SuiteError::Garbling { layer: node, reason: e.to_string() }
}

/// The largest frame of each kind S receives from U, for queries of at most `max_batch` images
/// of `model` under the BFV parameters `he`: `PREPARE` (batch and a public key), `ENCRYPTED`
/// (the layer with the most input ciphertexts), `QUERY` (the masked input), and the garbler's
/// messages of the garbled-circuit layers; any other kind (but an abort) is refused.
pub fn frame_limits(model: &FixedModel, he: &HeParams, max_batch: usize) -> Result<FrameLimits> {
    for layer in model.nonlinear_layers() {
        gc_op(&layer)?;
    }
    let mut per_image = 0;
    for node in 0..model.ops().len() {
        if let Some(kernel) = model.linear_kernel(node) {
            per_image = per_image.max(ConvPacking::plan(he, *kernel.geometry())?.input_ciphertexts());
        }
    }
    let gc = tessera_gc::MAX_FRAME as usize;
    let limits = FrameLimits::new(0)
        .with(PREPARE, 4 + PublicKey::size(he))
        .with(ENCRYPTED, max_batch * per_image * Form::Seeded.size(he))
        .with(QUERY, 8 * max_batch * model.input_shape().len());
    Ok([tessera_gc::driver::BASE_RECEIVER, tessera_gc::driver::CHALLENGE, tessera_gc::driver::TABLES]
        .into_iter()
        .chain([tessera_gc::driver::LABELS])
        .fold(limits, |l, kind| l.with(kind, gc)))
}
