//! Suite `serpens2` (PROTOCOLS.md section 3): the user splits the image into two additive
//! shares over `Z_t`; servers `S1` and `S2` run the linear layers locally on their shares and
//! evaluate every ReLU and max pool between themselves with BFV and random masks. No third
//! party.
//!
//! Each nonlinear layer's items (elements for ReLU, windows for max pool) are cut into two
//! halves of whole ciphertexts; on the first `S1` is the key owner **A** and `S2` the masker
//! **B**, on the second the roles swap, and both halves run at once: every message below is
//! sent by both servers at the same time (one [`Channel::exchange`](tessera_net::Channel::exchange)).
//!
//! Before the input, the user deals per layer and half two independent, single-use
//! *permutation correlations* ([`CORRELATIONS`], [`correlation`] has the algebra): A gets pads
//! `α, β` (forward, per element) and `α', β'` (back, per item) from a seed; B gets a seed for
//! `π` (items permuted, and the elements inside each window) and `Δ = π(α) + β`,
//! `Δ' = π⁻¹(α') + β'`. With them the items reach A in the order `π`, which A does not know
//! ([`Layout::Hidden`], the default). Per layer, for A's half:
//!
//! 1. [`OWNED`] A → B: `x_A + α` (uniform) and `⟦β⟧_A` (encrypted ahead of the input, seeded),
//!    position-major (element `j` of the windows of a group in ciphertext `j`, window `p` in
//!    slot `p`). B's share of `π(x)` is `b = π(x_A + α + x_B) − Δ`; A's is `β`.
//! 2. [`MASKED`] B → A: `⟦k ⊙ π(x) + e⟧` and `⟦π(x) + R⟧` (section 4.3's masks,
//!    `ComparisonMasks`: `log2 k` uniform in `[0, κ]`, one `k` per window,
//!    `e` uniform in `[0, k)` per element, `R` uniform below `2^(ℓx+σ)`), sealed: switched to two
//!    primes, a fresh encryption of zero with flooding noise added, rounded.
//! 3. [`SELECTED`] A → B: A decrypts `z` and `w`, selects per window the largest `z` (ReLU:
//!    `z ≥ 0`; none where the layer clamps), keeps `Σ sel ⊙ ⌊w / 2^shift⌋` and returns `⟦sel⟧_A`
//!    (one ciphertext per element of a window), seeded.
//! 4. [`RESULT`] B → A: `⟦−Σ sel ⊙ ⌊R / 2^shift⌋ − r⟧`, `r` uniform in `Z_t`, sealed. B's share
//!    (in `π`'s order) is `r`.
//! 5. A decrypts and adds what it kept: its share in `π`'s order, exact to ±1 in the last place
//!    (the masked reveal truncates; no local share truncation). [`UNPERMUTE`] A → B:
//!    `y_A + α'`; B's share in natural order is `π⁻¹(y_A + α' + r) − Δ'`, A's is `β'`.
//!
//! [`Layout::Seed`] keeps items at their natural positions (no correlations, no
//! [`UNPERMUTE`]; only each group's ciphertexts shuffled), with the same masks and steps: the key
//! owner, who holds the model, solves the first layer for the image. It is insecure and exists
//! only to measure what hiding positions costs.
//!
//! Messages (frame kind, layer): [`CORRELATIONS`] and [`INPUT`] user → server; [`JOIN`] `S1` →
//! `S2` (batch and `S1`'s public key) and [`KEY`] `S2` → `S1` (`S2`'s public key); per nonlinear
//! layer [`OWNED`], [`MASKED`], [`SELECTED`], [`RESULT`], [`UNPERMUTE`] both ways; [`OUTPUT`] and
//! [`REPORT`] server → user.

pub mod correlation;
mod memory;
mod msgs;
mod nonlinear;
mod server;
mod service;
mod user;

pub use crate::parties::Outcome;
pub use correlation::Correlations;
#[doc(hidden)]
pub use memory::{InMemoryRun, ServerView, run_in_memory};
pub use msgs::{Join, ServerInput};
pub use server::{FromUser, PeerLink, join_from_frame, receive};
pub use service::{ShareServerService, ShareServerSetup};
pub use user::{Deal, user};

use std::str::FromStr;

use crate::masks::Comparison;
use tessera_he::{Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::MessageKind;
use tessera_net::admission::FrameLimits;

/// User → server: index, batch, the server's input share.
pub const INPUT: MessageKind = MessageKind(0x0301);
/// `S1` → `S2`: batch and `S1`'s public key.
pub const JOIN: MessageKind = MessageKind(0x0302);
/// `S2` → `S1`: `S2`'s public key.
pub const KEY: MessageKind = MessageKind(0x0303);
/// Per nonlinear layer, both ways: the owner's padded share and encrypted pad share of its half
/// (seed layout: its encrypted share).
pub const OWNED: MessageKind = MessageKind(0x0304);
/// Per nonlinear layer, both ways: the masked and the truncation-masked values.
pub const MASKED: MessageKind = MessageKind(0x0305);
/// Per nonlinear layer, both ways: the owner's encrypted selection.
pub const SELECTED: MessageKind = MessageKind(0x0306);
/// Per nonlinear layer, both ways: the owner's new shares less what it kept, masked by the
/// masker's.
pub const RESULT: MessageKind = MessageKind(0x0307);
/// Server → user: the server's share of the logits.
pub const OUTPUT: MessageKind = MessageKind(0x0308);
/// Server → user: its cost report.
pub const REPORT: MessageKind = MessageKind(0x0309);
/// User → server, before [`INPUT`]: the layout and the server's permutation correlations.
pub const CORRELATIONS: MessageKind = MessageKind(0x030A);
/// Per nonlinear layer, both ways (hidden layout): the owner's share in `π`'s order, padded.
pub const UNPERMUTE: MessageKind = MessageKind(0x030B);

/// Where a nonlinear layer's items reach their key owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// In an order `π` the key owner does not know, through permutation correlations the user
    /// deals per query (PROTOCOLS.md 3.3). The default.
    #[default]
    Hidden,
    /// At their natural positions, only each group's ciphertexts shuffled: the key owner sees
    /// masked values at known positions and reconstructs the image from the first layer.
    /// **Insecure**; for comparing costs only.
    Seed,
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "hidden" => Ok(Layout::Hidden),
            "seed" => Ok(Layout::Seed),
            other => Err(format!("layout `{other}`: hidden (the default) or seed (insecure, for comparison)")),
        }
    }
}

/// The servers' names in in-memory runs and development clusters.
pub const SERVERS: [&str; 2] = ["server-1", "server-2"];

/// The largest batch whose messages fit in frames of `max_frame` bytes: the input share, the
/// correlations (`Δ` and `Δ'` of every layer) and, per nonlinear layer, the largest message: the
/// owner's padded share and seeded ciphertexts, or the masker's two sealed ones per element (a
/// batch that fills `g` groups of `N` items sends at most `g · arity` of each).
pub fn max_batch(model: &FixedModel, he: &HeParams, max_frame: u32) -> usize {
    let seeded = Form::Seeded.size(he) as f64;
    let returned = Form::Returned.size(he) as f64;
    let slots = he.degree() as f64;
    let input = 8.0 * model.input_shape().len() as f64;
    let layers = model.nonlinear_layers();
    let correlations: f64 = layers.iter().map(|l| 8.0 * (l.arity() + 1) as f64 * l.items() as f64).sum();
    // Per group: the owned shares (seeded, one per element) or the masked comparisons and
    // elements (returned), whichever is larger.
    let per_group = |l: &NonlinearLayer| {
        let (s, c) = (l.arity(), Comparison::of_item(l.arity(), l.compares_with_zero()).len());
        (s as f64 * seeded).max((c + s) as f64 * returned)
    };
    let per_image = layers
        .iter()
        .map(|l| l.items() as f64 * (8.0 * l.arity() as f64 + per_group(l) / slots))
        .fold(input.max(correlations), f64::max);
    // Partial ciphertexts: one more group per half.
    let fixed = 2.0 * layers.iter().map(per_group).fold(0.0, f64::max);
    (((max_frame as f64 - fixed) / per_image).floor() as usize).max(1)
}

/// Bytes of a public key on the wire.
pub fn key_size(he: &HeParams) -> usize {
    PublicKey::size(he)
}

/// The largest frame of each kind a share server receives, for the largest batch frames of
/// `max_frame` bytes allow ([`max_batch`]).
#[derive(Debug, Clone)]
pub struct Frames {
    /// Either server, from users: `CORRELATIONS` and `INPUT`.
    pub user: FrameLimits,
    /// `S2`, from `S1`: `JOIN` and every nonlinear layer's messages.
    pub peer: FrameLimits,
}

/// The frame limits of `model`'s share servers under the BFV parameters `he` and frames of at
/// most `max_frame` bytes; any other kind (but an abort) is refused.
pub fn frame_limits(model: &FixedModel, he: &HeParams, max_frame: u32) -> Frames {
    let batch = max_batch(model, he, max_frame);
    let (seeded, returned, slots) = (Form::Seeded.size(he), Form::Returned.size(he), he.degree());
    let input = 8 + 8 * model.input_shape().len() * batch;
    // The layout tag and the seed, then per layer `Δ` and `Δ'` of the masked half.
    let mut correlations = 4 + 32;
    let (mut owned, mut masked, mut selected, mut result, mut unpermute) = (0, 0, 0, 0, 0);
    for l in &model.nonlinear_layers() {
        // S1's half is the larger one.
        let n = nonlinear::Halves::new(l, batch, slots).half(0).len();
        let (s, c) = (l.arity(), Comparison::of_item(l.arity(), l.compares_with_zero()).len());
        let groups = n.div_ceil(slots);
        correlations += 8 * (s + 1) * n;
        owned = owned.max(8 * n * s + groups * s * seeded);
        masked = masked.max(groups * (c + s) * returned);
        selected = selected.max(groups * s * seeded);
        result = result.max(groups * returned);
        unpermute = unpermute.max(8 * n);
    }
    Frames {
        user: FrameLimits::new(0).with(CORRELATIONS, correlations).with(INPUT, input),
        peer: FrameLimits::new(0)
            .with(JOIN, 4 + key_size(he))
            .with(OWNED, owned)
            .with(MASKED, masked)
            .with(SELECTED, selected)
            .with(RESULT, result)
            .with(UNPERMUTE, unpermute),
    }
}
