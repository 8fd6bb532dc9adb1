//! Suite `verify` (PROTOCOLS.md section 6): a client that owns the model and the input offloads
//! every convolution and FC layer to an untrusted cloud, hides its data with a one-time pad, and
//! checks every result before using it; everything else runs at the client.
//!
//! Per offloaded layer `Y = K · X`: the client sends `X' = X + M` (`M` uniform, fresh per query
//! and input, with `K · M` computed in a preprocessing phase), the cloud returns `Y'`, and the
//! client checks `Y'` against `K · X'` in linear time ([`check_product`]: channels combined with
//! random `r`, output positions with a random bivariate polynomial `α^y β^x`). A wrong `Y'` passes
//! with probability at most `(H_o + W_o − 1)/|Z|` per repetition. Then `Y = Y' − K · M`.
//!
//! [`Disguise::MonomialInsecure`] (permuted, scaled im2col columns instead of the pad) hides
//! nothing: the cloud recovers the input windows by rational reconstruction. It is kept only to
//! measure it; the pad is the default and the only private disguise.
//!
//! Layers that read the same input (a residual block's first convolution and its projection
//! shortcut) share its message: one `X + M`, answered with both products, one round trip.
//!
//! Messages: [`OFFLOAD`] client → cloud per offloaded input (batch, `X'`), naming the first layer
//! that reads it; [`PRODUCT`] cloud → client, the products of every layer that reads it, in node
//! order; [`DONE`] client → cloud at the end, answered by the cloud's [`REPORT`].

mod check;
mod client;
mod cloud;
mod cost;
mod memory;
pub mod narrow;
mod service;

pub use check::{CHALLENGE_BITS, Challenge, Probe, all_pass, check_product, draw_probes};
pub use client::{ClientSettings, Disguise, Outcome, Preprocessed, client, preprocess};
pub use cloud::{Cheat, Cloud};
pub use cost::{Arithmetic, ClientCost, CpuSplit};
#[doc(hidden)]
pub use memory::run_in_memory;
pub use service::CloudService;

use tessera_model::fixed::FixedModel;
use tessera_net::MessageKind;
use tessera_net::admission::FrameLimits;

/// Client → cloud, per offloaded input: batch (u32 LE) and the disguised input.
pub const OFFLOAD: MessageKind = MessageKind(0x0301);
/// Cloud → client, per offloaded input: the products of the layers that read it.
pub const PRODUCT: MessageKind = MessageKind(0x0302);
/// Client → cloud: the query is over.
pub const DONE: MessageKind = MessageKind(0x0303);
/// Cloud → client: its cost report (JSON list of one party report).
pub const REPORT: MessageKind = MessageKind(0x0304);

/// Per offloaded input (one image): its length, and the length of the products of the layers
/// that read it, which one PRODUCT carries.
fn offloaded(model: &FixedModel) -> impl Iterator<Item = (usize, usize)> + '_ {
    model.linear_groups().into_iter().map(|group| {
        let kernel = |node: usize| model.linear_kernel(node).expect("grouped layers are linear").geometry();
        let outputs = group.iter().map(|&n| kernel(n).output().map_or(0, |out| out.len())).sum();
        (kernel(group[0]).input.len(), outputs)
    })
}

/// The largest batch whose padded `OFFLOAD` (8 bytes per input value, after the batch and the
/// disguise tag) and `PRODUCT` (8 bytes per output value of every layer that reads the input)
/// of every offloaded input fit in frames of `max_frame` bytes. The cloud refuses larger
/// batches before computing anything for them.
pub fn max_batch(model: &FixedModel, max_frame: u32) -> usize {
    let per_image = offloaded(model).map(|(input, outputs)| 8 * input.max(outputs)).max().unwrap_or(0);
    ((max_frame as usize).saturating_sub(8) / per_image.max(1)).max(1)
}

/// The largest frame of each kind the cloud receives from clients, for the largest batch
/// ([`max_batch`]): `OFFLOAD` up to the largest layer's padded input, `DONE` empty; any other
/// kind (but an abort) is refused. The insecure monomial disguise sends more per image (its
/// im2col columns), so it runs smaller batches within the same limit.
pub fn frame_limits(model: &FixedModel, max_frame: u32) -> FrameLimits {
    let per_image = offloaded(model).map(|(input, _)| input).max().unwrap_or(0);
    FrameLimits::new(0).with(OFFLOAD, 8 + 8 * max_batch(model, max_frame) * per_image).with(DONE, 0)
}
