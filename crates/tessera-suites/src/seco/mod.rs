//! Suite `seco` (PROTOCOLS.md section 8; the full message flow, threat model and leakage are in
//! docs/suites/seco.md): a user U, a gateway A and two remote servers B and C. The model is cut
//! after its `l`-th weighted layer ([`FixedModel::split`](tessera_model::fixed::FixedModel)):
//! A runs the layers before the cut with U as in suite clientserver (U garbles, A evaluates);
//! the layers after it exist only as B's and C's additive weight shares
//! ([`WeightShares`](tessera_model::shares::WeightShares)).
//!
//! After the cut every value is additively shared by A, B and C; A's shares of the cut value and
//! of every secret linear layer's output are known in preprocessing, its shares of nonlinear
//! layers' outputs come from the three-party circuits online. Per secret linear layer, preprocessing gives A `W u − s_B − s_C` under the
//! servers' collective BFV key ([`tessera_he::collective`]) for a fresh mask `u` shared by all
//! three, and online B and C open `a = v − u` (with A's opening `v_A − u_A`) and compute
//! `W_X a + b_X + s_X`. Per nonlinear layer, one three-party GMW evaluation among A, B and C
//! ([`tessera_gc::gmw`]): every wire XOR-shared, AND triples from pairwise OT in
//! preprocessing, the output bits turned back into additive shares. U shares its part of the
//! cut value with B and C through two seeds agreed by X25519 through A; B and C return their
//! logit shares to U through A under pads from the same seeds.
//!
//! Semi-honest parties; any two of A, B and C may collude, U with none (docs/suites/seco.md).

mod gateway;
mod keys;
mod linear;
mod memory;
mod remote;
mod service;
mod user;

pub use gateway::Gateway;
#[doc(hidden)]
pub use memory::{InMemoryOutcome, InMemoryRun, View, run_in_memory};
pub use remote::{Remote, RemoteRole};
pub use service::{Frames, GatewayService, RemoteService, frame_limits};
pub use user::{UserMaterial, UserModel, prepare, run};

use tessera_gc::Modulus;
use tessera_gc::gmw::SharedLayer;
use tessera_he::ConvPacking;
use tessera_he::HeParams;
use tessera_he::collective::{Smudging, fresh_noise_bound, switched_noise_bound};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, MessageKind, SessionId};

use crate::clientserver::{gc_op, local_gc};
use crate::error::{Result, SuiteError, Violation};

/// U → A: batch (u32 LE), then U's X25519 public key.
pub const PREPARE: MessageKind = MessageKind(0x0801);
/// A → U: B's and C's X25519 public keys.
pub const KEYS: MessageKind = MessageKind(0x0802);
/// U → A (preprocessing, `l > 0`): U's share of the cut value minus both seeds' streams.
pub const TRANSITION: MessageKind = MessageKind(0x0803);
/// A → U: every server's preprocessing report.
pub const PREPARED: MessageKind = MessageKind(0x0804);
/// U → A (online, `l = 0`): the images minus both seeds' streams.
pub const QUERY: MessageKind = MessageKind(0x0805);
/// A → U: the logits under both seeds' pads.
pub const LOGITS: MessageKind = MessageKind(0x0806);
/// A → U: every server's online report.
pub const REPORT: MessageKind = MessageKind(0x0807);
/// A → U, at most once per [`HEARTBEAT`] and naming no layer: the gateway is working, so a
/// long preprocessing or remote phase is not taken for a vanished peer.
pub const PROGRESS: MessageKind = MessageKind(0x0808);

/// How often the gateway tells a waiting user that the query goes on: by time, not per layer,
/// so the user learns nothing of the layers after the cut that the latency does not show.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);
/// A → B, C: batch (u32 LE), U's X25519 public key, the seed of the common polynomial.
pub const SETUP: MessageKind = MessageKind(0x0810);
/// B, C → A: its X25519 public key and its share of the collective BFV key.
pub const KEY_SHARE: MessageKind = MessageKind(0x0811);
/// A → B, C: the collective public key.
pub const COLLECTIVE: MessageKind = MessageKind(0x0812);
/// B, C → A, per secret linear layer: `⟦u_X⟧` and `⟦2^31·u_X⟧` per image.
pub const MASKS: MessageKind = MessageKind(0x0813);
/// A → B, C, per secret linear layer: `⟦u⟧` and `⟦2^31·u⟧` per image.
pub const MASK_SUM: MessageKind = MessageKind(0x0814);
/// B, C → A, per secret linear layer: `⟦W_X u − s_X⟧` per image, at level 1.
pub const PRODUCT: MessageKind = MessageKind(0x0815);
/// A → B, C, per secret linear layer: `c1` of each summed product.
pub const DECRYPT: MessageKind = MessageKind(0x0816);
/// B, C → A, per secret linear layer: the smudged decryption shares.
pub const DECRYPTION: MessageKind = MessageKind(0x0817);
/// A → B, C (online), per secret linear layer: A's share of the layer's input minus its mask
/// share.
pub const OPENING: MessageKind = MessageKind(0x0818);
/// B, C → A: its preprocessing report.
pub const REMOTE_PREPARED: MessageKind = MessageKind(0x0819);
/// A → B (online): A's share of the cut value minus its fresh mask.
pub const CUT: MessageKind = MessageKind(0x081A);
/// B, C → A (online): its logit share under its pad.
pub const OUTPUT: MessageKind = MessageKind(0x081B);
/// B, C → A: its online report.
pub const REMOTE_REPORT: MessageKind = MessageKind(0x081C);
/// B ↔ C (online), per secret linear layer: its share of the layer's input minus its mask share.
pub const OPEN: MessageKind = MessageKind(0x0820);
/// A → B, A → C, then B → C: opens the links that serve one user connection's queries; its
/// session is the links' fresh id (B passes A's on to C), its payload empty.
pub const LINK: MessageKind = MessageKind(0x0821);

/// Most images in one query.
pub const MAX_BATCH: usize = 8;

/// Parties holding a share of the collective key: A, B and C.
const HOLDERS: usize = 3;

/// The next frame of `kind` in query `session` on `channel`, past the gateway's [`PROGRESS`]
/// notes.
pub(crate) async fn recv_after_progress(
    channel: &mut Channel,
    kind: MessageKind,
    session: SessionId,
) -> Result<Vec<u8>> {
    loop {
        let (header, payload) = channel.recv_either(kind, PROGRESS, session).await?;
        if header.kind == kind {
            return Ok(payload);
        }
        if !payload.is_empty() {
            let violation = Violation::Length { actual: payload.len(), expected: 0 };
            return Err(SuiteError::Protocol { peer: channel.peer().into(), message: "progress", violation });
        }
    }
}

/// The gateway's notes to a waiting user: one [`PROGRESS`] per [`HEARTBEAT`] at most.
pub(crate) struct Heartbeat(std::time::Instant);

impl Heartbeat {
    /// Starts counting now.
    pub(crate) fn new() -> Self {
        Self(std::time::Instant::now())
    }

    /// Sends `to` a progress note if one is due.
    pub(crate) async fn beat(&mut self, to: &mut Channel, session: SessionId) -> Result<()> {
        if self.0.elapsed() >= HEARTBEAT {
            to.send(PROGRESS, session, 0, &[]).await?;
            self.0 = std::time::Instant::now();
        }
        Ok(())
    }
}

/// A three-party circuit's error at layer `node`: a peer's malformed message names that peer,
/// a channel error its own.
pub(crate) fn circuit_error(node: u32, e: tessera_gc::GcError) -> SuiteError {
    match e {
        tessera_gc::GcError::Net(e) => e.into(),
        tessera_gc::GcError::Peer { peer, source } => SuiteError::Protocol {
            peer,
            message: "three-party circuit",
            violation: Violation::Garbling { layer: node, reason: source.to_string() },
        },
        e => local_gc(node, e),
    }
}

/// The three-party circuit of `layer` for `batch` images.
pub(crate) fn shared_layer(layer: &NonlinearLayer, batch: usize) -> Result<SharedLayer> {
    SharedLayer::new(gc_op(layer)?, Modulus::tessera(), batch * layer.items()).map_err(|e| local_gc(layer.node, e))
}

/// The smudging of a secret linear layer's decryption shares: 40 bits over the proven bound
/// on the sum of B's and C's switched products, themselves on three fresh encryptions summed and
/// re-randomized by one more.
pub(crate) fn smudging(he: &HeParams, packing: &ConvPacking) -> Result<Smudging> {
    let fresh = fresh_noise_bound(he, HOLDERS);
    let product = packing.share_product_noise_bound(HOLDERS as f64 * fresh) + fresh;
    let product = switched_noise_bound(he, 0, product, HOLDERS);
    Ok(Smudging::over(he, 1, (2.0 * product).log2(), HOLDERS)?)
}
