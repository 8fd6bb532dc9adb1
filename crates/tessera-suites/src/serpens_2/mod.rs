//! Suite `serpens2` (PROTOCOLS.md section 3): the user splits the image into two additive
//! shares over `Z_t`; servers `S1` and `S2` run the linear layers locally on their shares and
//! evaluate every ReLU and max pool between themselves with BFV and random masks. No third
//! party.
//!
//! Each nonlinear layer's items (elements for ReLU, windows for max pool) are cut into two
//! halves of whole ciphertexts; on the first `S1` is the key owner **A** and `S2` the masker
//! **B**, on the second the roles swap, and both halves run at once: every message below is
//! sent by both servers at the same time (one [`Channel::exchange`](tessera_net::Channel::exchange)).
//! Per layer, for A's half:
//!
//! 1. [`OWNED`] A → B: `⟦x_A⟧_A`, seeded (half size), windows laid out position-major (element
//!    `j` of the windows of a group in ciphertext `j`, window `p` in slot `p`).
//! 2. [`MASKED`] B → A: `⟦k ⊙ (x_A + x_B)⟧`, `k` uniform in `[1, 2^κ]` per item (one per window),
//!    groups in a random order `π` and each group's ciphertexts in a random order; switched
//!    to two primes, re-randomized with 40 bits of flooding, rounded.
//! 3. [`SELECTED`] A → B: A decrypts `z = k·x`, takes per slot the largest of its group
//!    (ReLU: the only one), zero where ReLU clamps it, and returns `⟦sel⟧_A` seeded.
//! 4. [`RESULT`] B → A: `⟦k^−1 ⊙ π^−1(sel) − r⟧`, `r` uniform in `Z_t`, back in the original
//!    order, flooded and rounded as in 2. B's share of the output is `r`.
//! 5. A decrypts its share `y − r`. Both servers then truncate their shares locally (SecureML
//!    in a prime field; exact to ±1 in the last place except with probability
//!    `2^(ℓx+1)/t ≤ 2^−(σ+1)` per element, PROTOCOLS.md section 1).
//!
//! Messages (frame kind, layer): [`INPUT`] user → server; [`JOIN`] `S1` → `S2` (batch and
//! `S1`'s public key) and [`KEY`] `S2` → `S1` (`S2`'s public key); per nonlinear layer
//! [`OWNED`], [`MASKED`], [`SELECTED`], [`RESULT`] both ways; [`OUTPUT`] and [`REPORT`] server →
//! user.

mod layer;
mod memory;
mod server;
mod user;

pub use crate::parties::Outcome;
pub use memory::run_in_memory;
pub use server::{Join, PeerLink, ServerInput, join_from_frame, server};
pub use user::user;

use tessera_he::{Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_net::MessageKind;

/// User → server: index, batch, the server's input share.
pub const INPUT: MessageKind = MessageKind(0x0301);
/// `S1` → `S2`: batch and `S1`'s public key.
pub const JOIN: MessageKind = MessageKind(0x0302);
/// `S2` → `S1`: `S2`'s public key.
pub const KEY: MessageKind = MessageKind(0x0303);
/// Per nonlinear layer, both ways: the owner's encrypted share of its half.
pub const OWNED: MessageKind = MessageKind(0x0304);
/// Per nonlinear layer, both ways: the masked, shuffled sums.
pub const MASKED: MessageKind = MessageKind(0x0305);
/// Per nonlinear layer, both ways: the owner's selected values.
pub const SELECTED: MessageKind = MessageKind(0x0306);
/// Per nonlinear layer, both ways: the owner's new shares, masked by the masker's.
pub const RESULT: MessageKind = MessageKind(0x0307);
/// Server → user: the server's share of the logits.
pub const OUTPUT: MessageKind = MessageKind(0x0308);
/// Server → user: its cost report.
pub const REPORT: MessageKind = MessageKind(0x0309);

/// The servers' names in in-memory runs and development clusters.
pub const SERVERS: [&str; 2] = ["server-1", "server-2"];

/// The largest batch whose messages fit in frames of `max_frame` bytes: the input share and,
/// per nonlinear layer, both halves' seeded ciphertexts (the largest message; a batch that
/// fills `g` groups of `N` items sends at most `g · arity` of them).
pub fn max_batch(model: &FixedModel, he: &HeParams, max_frame: u32) -> usize {
    let seeded = Form::Seeded.size(he) as f64;
    let slots = he.degree() as f64;
    let input = 8.0 * model.input_shape().len() as f64;
    let per_image = model
        .nonlinear_layers()
        .iter()
        .map(|l| seeded * l.arity() as f64 * l.items() as f64 / slots)
        .fold(input, f64::max);
    // Partial ciphertexts: one more group per half.
    let fixed = 2.0 * seeded * model.nonlinear_layers().iter().map(|l| l.arity()).max().unwrap_or(1) as f64;
    (((max_frame as f64 - fixed) / per_image).floor() as usize).max(1)
}

/// Bytes of a public key on the wire.
pub fn key_size(he: &HeParams) -> usize {
    PublicKey::size(he)
}
