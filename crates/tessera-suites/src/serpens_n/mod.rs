//! Suite `serpensN` (PROTOCOLS.md section 4): the user splits the image into `m` additive shares
//! over `Z_t`; share-holders `S1…Sm` run the linear layers locally on their shares; a central
//! server `S0` evaluates every ReLU and max pool on masked, permuted values in one round trip.
//!
//! Per nonlinear layer, every holder derives from the query seed (which `S0` never sees) the
//! same uniform permutation `π` of the layer's items (elements for ReLU, windows for max pool),
//! multiplicative masks `k ∈ [1, 2^κ]` (one per item) and truncation masks `R ∈ [0, 2^(ℓx+σ))`
//! (one per element), and sends `π(k ⊙ x_j)` and `π(x_j + [j = 1]·R)` to `S0`. `S0` adds the
//! `m` messages, reads the sign or window maximum from `k ⊙ x`, truncates `w = x + R` to
//! `T = ⌊w / 2^f_w⌋` and re-shares the selected `T` and the selection bits `b`. Holder `j ≥ 2`
//! draws its re-shares from a seed it agreed with `S0` when the query started; only holder 1
//! receives explicit values. Each holder then undoes `π` and computes `b⊙T − b⊙⌊R / 2^f_w⌋`.
//!
//! The round itself lives in `nonlinear` as state machines without I/O, its messages in `msgs`;
//! `holder` and `central` drive them over the channels.
//!
//! Messages (frame kind, layer): [`INPUT`] user → holder; [`JOIN`] holder → `S0`;
//! per nonlinear layer [`MASKED`] holder → `S0` and [`RESHARE`] `S0` → holder 1; [`OUTPUT`] and
//! [`REPORT`] holder → user, and `S0`'s [`REPORT`] to holder 1, which forwards it.

#[doc(hidden)]
pub mod attack;
mod central;
mod holder;
mod masks;
mod memory;
mod msgs;
mod nonlinear;
mod service;
mod user;

pub use crate::parties::Outcome;
pub use central::{central, join_from_frame, read_join};
#[doc(hidden)]
pub use memory::{InMemoryRun, run_in_memory};
pub use msgs::{HolderInput, Join};
pub use service::{CentralService, HolderService};
pub use user::user;

use tessera_model::fixed::FixedModel;
use tessera_net::MessageKind;
use tessera_net::admission::FrameLimits;

/// User → holder: index, holder count, batch, query seed, the holder's input share.
pub const INPUT: MessageKind = MessageKind(0x0201);
/// Holder → `S0`: index, holder count, batch and the pairwise re-sharing seed.
pub const JOIN: MessageKind = MessageKind(0x0202);
/// Holder → `S0`, per nonlinear layer: `π(k ⊙ x_j)` and `π(x_j + [j = 1]·R)`, interleaved.
pub const MASKED: MessageKind = MessageKind(0x0203);
/// `S0` → holder 1, per nonlinear layer: per item, its shares of the selected `T` and of the
/// selection bits.
pub const RESHARE: MessageKind = MessageKind(0x0204);
/// Holder → user: the holder's share of the logits.
pub const OUTPUT: MessageKind = MessageKind(0x0205);
/// Cost reports (JSON list of party reports).
pub const REPORT: MessageKind = MessageKind(0x0206);

/// Fewest and most share-holders supported.
pub const HOLDERS: std::ops::RangeInclusive<usize> = 2..=8;

/// The largest batch whose messages fit in frames of `max_frame` bytes: an input share
/// (8 bytes per value) and every layer's masked message (8 bytes per comparison and per
/// gathered element; the re-shares are smaller). Parties refuse larger batches before allocating anything for them.
pub fn max_batch(model: &FixedModel, max_frame: u32) -> usize {
    let input = 8 * model.input_shape().len();
    let per_image = model.nonlinear_layers().iter().map(|l| 8 * msgs::Masked::values(l, 1)).fold(input, usize::max);
    (max_frame as usize / per_image.max(1)).max(1)
}

/// The largest frame of each kind the parties receive from their callers, for the largest
/// batch frames of `max_frame` bytes allow ([`max_batch`]).
#[derive(Debug, Clone)]
pub struct Frames {
    /// A holder, from users: `INPUT`.
    pub holder: FrameLimits,
    /// `S0`, from holders: `JOIN` and `MASKED`.
    pub central: FrameLimits,
}

/// The frame limits of `model`'s parties under frames of at most `max_frame` bytes; any other
/// kind (but an abort) is refused.
pub fn frame_limits(model: &FixedModel, max_frame: u32) -> Frames {
    let batch = max_batch(model, max_frame);
    let input = INPUT_HEADER + 8 * model.input_shape().len() * batch;
    let masked = model.nonlinear_layers().iter().map(|l| 8 * msgs::Masked::values(l, batch)).max().unwrap_or(0);
    Frames {
        holder: FrameLimits::new(0).with(INPUT, input),
        central: FrameLimits::new(0).with(JOIN, INPUT_HEADER).with(MASKED, masked),
    }
}

/// Bytes before the share in `INPUT`, and all of `JOIN`: index, holders, batch, a seed.
const INPUT_HEADER: usize = 12 + 32;

/// The name of holder `index` (1-based) in in-memory runs and development clusters.
pub fn holder_name(index: usize) -> String {
    format!("holder-{index}")
}

/// The central server's name in in-memory runs and development clusters.
pub const CENTRAL: &str = "central";
