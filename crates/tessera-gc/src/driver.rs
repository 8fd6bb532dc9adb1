//! Drivers: move the [`crate::protocol`] messages over a [`Channel`] and step the state
//! machines, nothing else. The same code runs over in-memory pairs and mutual TLS.
//!
//! Frame kinds (`0x0A01…`), each tagged with the session and the layer index; chunks of one
//! message go in order.
//!
//! With a helper ([`Layer::with_helper`]) the offline phase runs on two more channels: the
//! helper runs the evaluator's OT-receiver part against the garbler, with the same kinds
//! ([`BASE_SENDER`] … [`PROOF`]) on the garbler–helper channel, and forwards its active
//! labels to the evaluator ([`HELPER_LABELS`]); the online phase is the two-party one.

use rand_core::{CryptoRng, RngCore};
use tessera_net::{Channel, MessageKind, SessionId};
use zeroize::Zeroizing;

use crate::error::Result;
use crate::protocol::{
    EvaluatorAwaitBase, EvaluatorAwaitTables, EvaluatorExtending, EvaluatorOffline, GarblerAwaitBase,
    GarblerAwaitProof, GarblerGarbling, GarblerOffline, HelperAwaitBase, HelperExtending, HelperOffline,
    HelperZeroLabels, Layer, OutputShares,
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
/// Helper → evaluator (offline): chunks of the helper's active labels.
pub const HELPER_LABELS: MessageKind = MessageKind(0x0A09);

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
    let (state, proof) = garbler_evaluator_ots(ch, session, layer_id, state, rng).await?;
    garble(ch, session, layer_id, state.receive_proof(&proof)?).await
}

/// The garbler's offline phase for one layer with a helper: the evaluator's OTs on
/// `evaluator`, then the helper's on `helper` (same `Δ`), then the tables to the evaluator.
pub async fn garbler_offline_with_helper<R: RngCore + CryptoRng + ?Sized>(
    evaluator: &mut Channel,
    helper: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    rng: &mut R,
) -> Result<GarblerOffline> {
    let state = GarblerAwaitBase::start(layer, rng);
    let with_helper = state.helper()?;
    let (state, proof) = garbler_evaluator_ots(evaluator, session, layer_id, state, rng).await?;
    let s = helper.recv(BASE_SENDER, session, layer_id).await?;
    let (reply, mut hot) = with_helper.receive_base(&s, rng)?;
    helper.send(BASE_RECEIVER, session, layer_id, &reply).await?;
    for chunk in 0..hot.chunks() {
        let columns = helper.recv(COLUMNS, session, layer_id).await?;
        hot.receive_columns(chunk, &columns)?;
    }
    let (challenge, hot) = hot.challenge(rng)?;
    helper.send(CHALLENGE, session, layer_id, &challenge).await?;
    let labels: HelperZeroLabels = hot.receive_proof(&helper.recv(PROOF, session, layer_id).await?)?;
    garble(evaluator, session, layer_id, state.receive_proof_with_helper(&proof, labels)?).await
}

/// The garbler's OTs with the evaluator, up to the evaluator's answer to the challenge.
async fn garbler_evaluator_ots<R: RngCore + CryptoRng + ?Sized>(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    state: GarblerAwaitBase,
    rng: &mut R,
) -> Result<(GarblerAwaitProof, Vec<u8>)> {
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
    Ok((state, proof))
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

/// The evaluator's offline phase for one layer with a helper: its OTs with the garbler, the
/// helper's labels, then the tables.
pub async fn evaluator_offline_with_helper<R: RngCore + CryptoRng + ?Sized>(
    garbler: &mut Channel,
    helper: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    rng: &mut R,
) -> Result<EvaluatorOffline> {
    let mut state = evaluator_ots(garbler, session, layer_id, layer, rng).await?;
    for chunk in 0..state.chunks() {
        let labels = Zeroizing::new(helper.recv(HELPER_LABELS, session, layer_id).await?);
        state.receive_helper_labels(chunk, &labels)?;
    }
    receive_tables(garbler, session, layer_id, state).await
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
    receive_ots(ch, session, layer_id, &s, |r| state.receive_base(r)).await
}

/// A chooser of OTs with the garbler once its base OTs are done: the evaluator, or the helper.
trait Extending: Sized {
    /// The state after the consistency check.
    type Proved;
    fn chunks(&self) -> usize;
    fn columns(&mut self, chunk: usize) -> Result<Vec<u8>>;
    fn prove(self, challenge: &[u8]) -> Result<(Vec<u8>, Self::Proved)>;
}

/// Implements [`Extending`] for a chooser state by its own methods of the same names.
macro_rules! extending {
    ($state:ty => $proved:ty) => {
        impl Extending for $state {
            type Proved = $proved;
            fn chunks(&self) -> usize {
                self.chunks()
            }
            fn columns(&mut self, chunk: usize) -> Result<Vec<u8>> {
                self.columns(chunk)
            }
            fn prove(self, challenge: &[u8]) -> Result<(Vec<u8>, Self::Proved)> {
                self.prove(challenge)
            }
        }
    };
}
extending!(EvaluatorExtending => EvaluatorAwaitTables);
extending!(HelperExtending => HelperOffline);

/// The chooser's side of the OTs with the garbler on `ch`, the same for the evaluator and the
/// helper: the base-OT point `s`, the garbler's answer (to `receive_base`), the column chunks,
/// and the answer to the consistency check.
async fn receive_ots<E: Extending>(
    ch: &mut Channel,
    session: SessionId,
    layer_id: u32,
    s: &[u8],
    receive_base: impl FnOnce(&[u8]) -> Result<E>,
) -> Result<E::Proved> {
    ch.send(BASE_SENDER, session, layer_id, s).await?;
    let r = ch.recv(BASE_RECEIVER, session, layer_id).await?;
    let mut state = receive_base(&r)?;
    for chunk in 0..state.chunks() {
        let columns = state.columns(chunk)?;
        ch.send(COLUMNS, session, layer_id, &columns).await?;
    }
    let challenge = ch.recv(CHALLENGE, session, layer_id).await?;
    let (proof, state) = state.prove(&challenge)?;
    ch.send(PROOF, session, layer_id, &proof).await?;
    Ok(state)
}

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

/// The helper's offline phase for one layer with a helper, from its shares `h` (one per
/// input value) and output masks `m` (one per instance, its output shares): its OTs with the
/// garbler on `garbler`, then its active labels to the evaluator on `evaluator`. It takes no
/// part in the online phase.
#[allow(clippy::too_many_arguments)]
pub async fn helper_offline<R: RngCore + CryptoRng + ?Sized>(
    garbler: &mut Channel,
    evaluator: &mut Channel,
    session: SessionId,
    layer_id: u32,
    layer: Layer,
    shares: &[u64],
    masks: &[u64],
    rng: &mut R,
) -> Result<()> {
    let (s, state) = HelperAwaitBase::start(layer, shares, masks, rng)?;
    let state = receive_ots(garbler, session, layer_id, &s, |r| state.receive_base(r)).await?;
    for labels in state.forward_labels() {
        evaluator.send(HELPER_LABELS, session, layer_id, &labels).await?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use tessera_net::Wiretap;

    use super::*;
    use crate::modulus::Modulus;
    use crate::protocol::MAX_FRAME;
    use crate::protocol::tests::{Case3, case3};
    use crate::relu::Nonlinear;

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn three_parties_over_channels_share_f_of_x() {
        let (mut ge, mut eg) = Channel::pair("garbler", "evaluator", TIMEOUT, MAX_FRAME);
        let (mut gh, mut hg) = Channel::pair("garbler", "helper", TIMEOUT, MAX_FRAME);
        let (mut eh, mut he) = Channel::pair("evaluator", "helper", TIMEOUT, MAX_FRAME);
        // Each party's view: every frame it receives.
        let [vg, ve, vh] = [Wiretap::new(), Wiretap::new(), Wiretap::new()];
        ge.tap(vg.clone());
        gh.tap(vg.clone());
        eg.tap(ve.clone());
        eh.tap(ve.clone());
        hg.tap(vh.clone());
        he.tap(vh.clone());
        let mut rng = ChaCha20Rng::seed_from_u64(71);
        let m = Modulus::tessera();
        let session = SessionId([9; 16]);
        let mut cases: Vec<(Layer, Case3)> = Vec::new();
        for (id, (op, instances)) in [
            (Nonlinear::ReluTrunc { shift: 16 }, 400),
            (Nonlinear::MaxPool { window: 4, relu: false, shift: 8 }, 300),
            (Nonlinear::MaxPool { window: 4, relu: true, shift: 16 }, 300),
        ]
        .into_iter()
        .enumerate()
        {
            let id = id as u32;
            let layer = Layer::with_helper(op, m, instances).unwrap();
            let c = case3(&layer, &mut rng);
            let (mut rg, mut re, mut rh) =
                (ChaCha20Rng::from_os_rng(), ChaCha20Rng::from_os_rng(), ChaCha20Rng::from_os_rng());
            let (go, eo, ho) = tokio::join!(
                garbler_offline_with_helper(&mut ge, &mut gh, session, id, layer.clone(), &mut rg),
                evaluator_offline_with_helper(&mut eg, &mut eh, session, id, layer.clone(), &mut re),
                helper_offline(&mut hg, &mut he, session, id, layer.clone(), &c.h, &c.hm, &mut rh),
            );
            ho.unwrap();
            let (r, out) = tokio::join!(
                garbler_online(&mut ge, session, id, go.unwrap(), c.b.clone()),
                evaluator_online(&mut eg, session, id, eo.unwrap(), &c.a),
            );
            let (r, out) = (r.unwrap().to_vec(), out.unwrap());
            assert_eq!(c.wrong(&layer, &out, &r), 0, "{op:?}: r + out = f(a + b + h) − m everywhere");
            let distinct: HashSet<u64> = r.iter().copied().collect();
            assert_eq!(distinct.len(), instances, "{op:?}: the garbler's shares are its uniform masks");
            assert!(r.iter().all(|&v| v != 0));
            cases.push((layer, c));
        }

        // Who sends what: the helper hears only its OT messages from the garbler; the
        // evaluator hears only labels from the helper; the garbler only OT messages from it.
        let kinds = |view: &Wiretap, from: &str| -> HashSet<u16> {
            view.frames().iter().filter(|f| f.from == from).map(|f| f.header.kind.0).collect()
        };
        assert_eq!(kinds(&vh, "garbler"), HashSet::from([BASE_RECEIVER.0, CHALLENGE.0]));
        assert!(kinds(&vh, "evaluator").is_empty());
        assert_eq!(kinds(&ve, "helper"), HashSet::from([HELPER_LABELS.0]));
        assert_eq!(kinds(&vg, "helper"), HashSet::from([BASE_SENDER.0, COLUMNS.0, PROOF.0]));
        let forwarded: usize = ve.frames().iter().filter(|f| f.from == "helper").map(|f| f.payload.len()).sum();
        let expected: usize = cases.iter().map(|(l, _)| 16 * l.instances() * l.circuit().helper_bits()).sum();
        assert_eq!(forwarded, expected, "16 bytes per helper input bit");

        // Every payload is as long as the layer says, and the bytes per instance.
        let total: usize = [&vg, &ve, &vh].iter().flat_map(|v| v.frames()).map(|f| f.payload.len()).sum();
        assert_eq!(total, cases.iter().map(|(l, _)| l.offline_bytes() + l.online_bytes()).sum::<usize>());
        for (layer, _) in &cases {
            let n = layer.instances();
            println!(
                "{:?} with a helper, {n} instances: {} B offline, {} B online per instance",
                layer.circuit().op(),
                layer.offline_bytes() / n,
                layer.online_bytes() / n
            );
        }

        // No input share, helper mask or value crosses any channel in the clear.
        let frames: Vec<Vec<u8>> = [&vg, &ve, &vh].iter().flat_map(|v| v.frames()).map(|f| f.payload).collect();
        let mut secrets = HashSet::new();
        for (_, c) in &cases {
            for v in c.a.iter().chain(&c.b).chain(&c.h).chain(&c.hm).chain(&c.x) {
                if *v > 1 << 20 {
                    secrets.insert(v.to_le_bytes());
                }
            }
        }
        for payload in &frames {
            assert!(!payload.windows(8).any(|w| secrets.contains(<&[u8; 8]>::try_from(w).unwrap())));
        }
    }

    /// A helper that runs its OTs honestly, then forwards a label chunk short of one label.
    #[tokio::test]
    async fn a_short_label_chunk_from_the_helper_is_a_typed_error() {
        let (mut ge, mut eg) = Channel::pair("garbler", "evaluator", TIMEOUT, MAX_FRAME);
        let (mut gh, mut hg) = Channel::pair("garbler", "helper", TIMEOUT, MAX_FRAME);
        let (mut eh, mut he) = Channel::pair("evaluator", "helper", TIMEOUT, MAX_FRAME);
        let mut rng = ChaCha20Rng::seed_from_u64(72);
        let layer = Layer::with_helper(Nonlinear::ReluTrunc { shift: 8 }, Modulus::tessera(), 50).unwrap();
        let c = case3(&layer, &mut rng);
        let (session, id) = (SessionId([3; 16]), 0);
        let helper = async {
            let mut rng = ChaCha20Rng::seed_from_u64(73);
            let (s, state) = HelperAwaitBase::start(layer.clone(), &c.h, &c.hm, &mut rng).unwrap();
            hg.send(BASE_SENDER, session, id, &s).await.unwrap();
            let mut state = state.receive_base(&hg.recv(BASE_RECEIVER, session, id).await.unwrap()).unwrap();
            for chunk in 0..state.chunks() {
                hg.send(COLUMNS, session, id, &state.columns(chunk).unwrap()).await.unwrap();
            }
            let (proof, state) = state.prove(&hg.recv(CHALLENGE, session, id).await.unwrap()).unwrap();
            hg.send(PROOF, session, id, &proof).await.unwrap();
            let labels = state.forward_labels();
            he.send(HELPER_LABELS, session, id, &labels[0][16..]).await.unwrap();
        };
        let (mut rg, mut re) = (ChaCha20Rng::seed_from_u64(74), ChaCha20Rng::seed_from_u64(75));
        let (g, e, ()) = tokio::join!(
            garbler_offline_with_helper(&mut ge, &mut gh, session, id, layer.clone(), &mut rg),
            evaluator_offline_with_helper(&mut eg, &mut eh, session, id, layer.clone(), &mut re),
            helper,
        );
        assert!(g.is_ok(), "the garbler's part does not depend on the forwarded labels");
        assert!(matches!(
            e,
            Err(crate::GcError::WrongLength { message: crate::Message::HelperLabels, expected, actual })
                if actual + 16 == expected
        ));
    }
}
