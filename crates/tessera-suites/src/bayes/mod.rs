//! Suite `bayes` (PROTOCOLS.md section 7, after BAYHENN): the user's input is encrypted under
//! the user's BFV key; the server evaluates every convolution and FC layer on the ciphertexts
//! with weights it samples from its Bayesian posterior, fresh per query and sample; the user
//! decrypts each pre-activation and applies truncation, ReLU and pooling in the clear.
//!
//! Per query: [`JOIN`] user → server (batch, samples `S`, a fresh public key). Per linear layer
//! (in model order): [`LAYER`] user → server (one set of input ciphertexts shared by all samples,
//! or one per sample; packed by [`tessera_he::ConvPacking`]), [`PRODUCT`] server → user (the
//! results of every sample and image, unused coefficients masked, sealed with flooding noise).
//! [`DONE`] user → server ends the query, answered by the server's [`REPORT`]. The prediction
//! averages the softmax of the `S` sampled forward passes (the meta-prediction).
//!
//! Leakage: the server sees only ciphertexts, their count and the query's shape. The user sees
//! every layer's pre-activation under sampled weights, which is how Wong et al. (IJCAI 2020)
//! recover the weights' means with chosen inputs: the weights are hidden only heuristically.

pub mod extract;
mod memory;
mod server;
mod service;
mod user;

#[doc(hidden)]
pub use memory::run_in_memory;
pub use server::{BayesServer, Sampling};
pub use service::BayesService;
pub use user::{Outcome, Query, user};

use tessera_he::{ConvPacking, Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_net::MessageKind;
use tessera_net::admission::FrameLimits;

use crate::error::Result;

/// User → server: batch (u32 LE), samples (u32 LE), the user's public key.
pub const JOIN: MessageKind = MessageKind(0x0501);
/// User → server, per linear layer: shared (u32 LE, 1 if one set serves every sample), then the
/// seeded input ciphertexts, per set and image.
pub const LAYER: MessageKind = MessageKind(0x0502);
/// Server → user, per linear layer: sealed results, per sample, image and output block.
pub const PRODUCT: MessageKind = MessageKind(0x0503);
/// User → server: the query is over.
pub const DONE: MessageKind = MessageKind(0x0504);
/// Server → user: its cost report (JSON list of one party report).
pub const REPORT: MessageKind = MessageKind(0x0505);

/// Most samples a query may ask for.
pub const MAX_SAMPLES: usize = 16;

/// The largest frame of each kind the server receives from users, for queries of at most
/// `max_batch` images and [`MAX_SAMPLES`] samples of `model` under the BFV parameters `he`:
/// `JOIN` (batch, samples, a public key), `LAYER` (one set of seeded input ciphertexts per
/// sample, of the layer with the most) and an empty `DONE`; any other kind (but an abort) is
/// refused.
pub fn frame_limits(model: &FixedModel, he: &HeParams, max_batch: usize) -> Result<FrameLimits> {
    let mut per_image = 0;
    for node in 0..model.ops().len() {
        if let Some(kernel) = model.linear_kernel(node) {
            per_image = per_image.max(ConvPacking::plan(he, *kernel.geometry())?.input_ciphertexts());
        }
    }
    let layer = 4 + MAX_SAMPLES * max_batch * per_image * Form::Seeded.size(he);
    Ok(FrameLimits::new(0).with(JOIN, 8 + PublicKey::size(he)).with(LAYER, layer).with(DONE, 0))
}
