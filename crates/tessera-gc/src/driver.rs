//! Drivers: move the [`crate::protocol`] messages over a [`Channel`] and step the state
//! machines, nothing else. The same code runs over in-memory pairs and mutual TLS.
//!
//! Frame kinds (`0x0A01…`), each tagged with the session and the layer index; chunks of one
//! message go in order.

use rand_core::{CryptoRng, RngCore};
use tessera_net::{Channel, MessageKind, SessionId};
use zeroize::Zeroizing;

use crate::error::Result;
use crate::protocol::{
    EvaluatorAwaitBase, EvaluatorAwaitTables, EvaluatorOffline, GarblerAwaitBase, GarblerGarbling, GarblerOffline,
    Layer, OutputShares,
};

/// Evaluator → garbler: the base-OT point `S`.
pub const BASE_SENDER: MessageKind = MessageKind(0x0A01);
/// Garbler → evaluator: the base-OT points `R_i` and the layer's hash key.
pub const BASE_RECEIVER: MessageKind = MessageKind(0x0A02);
/// Evaluator → garbler: OT-extension column chunks.
pub const COLUMNS: MessageKind = MessageKind(0x0A03);
/// Garbler → evaluator: the consistency-check challenge.
pub const CHALLENGE: MessageKind = MessageKind(0x0A04);
/// Evaluator → garbler: the consistency-check answer.
pub const PROOF: MessageKind = MessageKind(0x0A05);
/// Garbler → evaluator: garbled-table chunks with their offline decoding.
pub const TABLES: MessageKind = MessageKind(0x0A06);
/// Evaluator → garbler (online): re-share chunks `e = a − c`.
pub const RESHARE: MessageKind = MessageKind(0x0A07);
/// Garbler → evaluator (online): label chunks with the online decoding.
pub const LABELS: MessageKind = MessageKind(0x0A08);

/// The garbler's offline phase for one layer; draws `Δ`, the hash key and the output masks
/// from `rng` (its output shares: [`GarblerOffline::output_shares`]).
pub async fn garbler_offline<R: RngCore + CryptoRng + ?Sized>(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    rng: &mut R,
) -> Result<GarblerOffline> {
    let state = GarblerAwaitBase::start(layer, rng);
    let s = ch.recv(BASE_SENDER, session, layer_id).await?;
    let (reply, mut state) = state.receive_base(&s, rng)?;
    ch.send(BASE_RECEIVER, session, layer_id, &reply).await?;
    for chunk in 0..state.layer().ot_chunks() {
        let columns = ch.recv(COLUMNS, session, layer_id).await?;
        state.receive_columns(chunk, &columns)?;
    }
    let (challenge, state) = state.challenge(rng)?;
    ch.send(CHALLENGE, session, layer_id, &challenge).await?;
    let proof = ch.recv(PROOF, session, layer_id).await?;
    garble(ch, session, layer_id, state.receive_proof(&proof)?).await
}

/// Garbles and sends every table chunk to the evaluator.
async fn garble(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    mut state: GarblerGarbling,
) -> Result<GarblerOffline> {
    for chunk in 0..state.layer().chunks() {
        let tables = state.garble_chunk(chunk)?;
        ch.send(TABLES, session, layer_id, &tables).await?;
    }
    state.finish()
}

/// The garbler's online phase with its shares `b`: returns its output shares, the masks `r`.
pub async fn garbler_online(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    state: GarblerOffline,
    shares: Vec<u64>,
) -> Result<OutputShares> {
    let chunks = state.layer().chunks();
    let mut state = state.online(shares)?;
    // Every re-share first (the evaluator sends them all before it reads a label), then each
    // chunk's labels as soon as they are ready, so the evaluator works while the next are made.
    let mut reshares = Vec::with_capacity(chunks);
    for _ in 0..chunks {
        reshares.push(Zeroizing::new(ch.recv(RESHARE, session, layer_id).await?));
    }
    for (chunk, e) in reshares.iter().enumerate() {
        let reply = Zeroizing::new(state.respond(chunk, e)?);
        ch.send(LABELS, session, layer_id, &reply).await?;
    }
    state.finish()
}

/// The evaluator's offline phase for one layer.
pub async fn evaluator_offline<R: RngCore + CryptoRng + ?Sized>(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    rng: &mut R,
) -> Result<EvaluatorOffline> {
    let state = evaluator_ots(ch, session, layer_id, layer, rng).await?;
    receive_tables(ch, session, layer_id, state).await
}

/// The evaluator's OTs with the garbler.
async fn evaluator_ots<R: RngCore + CryptoRng + ?Sized>(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    rng: &mut R,
) -> Result<EvaluatorAwaitTables> {
    let (s, state) = EvaluatorAwaitBase::start(layer, rng);
    ch.send(BASE_SENDER, session, layer_id, &s).await?;
    let r = ch.recv(BASE_RECEIVER, session, layer_id).await?;
    let mut state = state.receive_base(&r)?;
    for chunk in 0..state.chunks() {
        let columns = state.columns(chunk)?;
        ch.send(COLUMNS, session, layer_id, &columns).await?;
    }
    let challenge = ch.recv(CHALLENGE, session, layer_id).await?;
    let (proof, state) = state.prove(&challenge)?;
    ch.send(PROOF, session, layer_id, &proof).await?;
    Ok(state)
}

/// Receives every table chunk from the garbler.
async fn receive_tables(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    mut state: EvaluatorAwaitTables,
) -> Result<EvaluatorOffline> {
    for chunk in 0..state.chunks() {
        let tables = ch.recv(TABLES, session, layer_id).await?;
        state.receive_tables(chunk, &tables)?;
    }
    state.finish()
}

/// The evaluator's online phase with its shares `a`: returns its output shares `f(x) − r`.
pub async fn evaluator_online(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    state: EvaluatorOffline,
    shares: &[u64],
) -> Result<Vec<u64>> {
    let (reshares, mut state) = state.online(shares)?;
    for e in &reshares {
        ch.send(RESHARE, session, layer_id, e).await?;
    }
    for chunk in 0..state.chunks() {
        let labels = ch.recv(LABELS, session, layer_id).await?;
        state.receive_labels(chunk, &labels)?;
    }
    state.finish()
}
