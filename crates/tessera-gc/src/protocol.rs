//! The two-party nonlinear layer: garbler and evaluator as state machines without I/O.
//!
//! The evaluator holds shares `a`, the garbler shares `b` and output masks `r` (one per
//! instance); the evaluator ends with `f(a + b) − r mod t`, `f` the layer's [`Nonlinear`].
//!
//! **Offline** (input-independent). The evaluator draws its *offline share* `c`, uniform in
//! `Z_t`, per input value. Base OT: evaluator → garbler `S` (32 B); garbler → evaluator 128
//! points (4 KiB). Extension: evaluator → garbler columns, 16 B per OT, one OT per bit of `c`
//! plus [`PADDING`]; KOS: garbler → evaluator a challenge (16 B), evaluator → garbler the answer
//! (32 B). The garbler's zero labels of the evaluator's input wires are its OT strings `q_j`,
//! so the evaluator's OT strings *are* its active labels. Garbler → evaluator: per instance the
//! garbled tables (32 B per AND) and the offline output decoding (8 B per output, 16 B for a
//! fixed one).
//!
//! **Online.** The evaluator re-shares: evaluator → garbler `e = a − c mod t` (8 B per value,
//! uniform because `c` is). The garbler sets `b' = b + e`, so `x = c + b'`, and sends its input
//! labels for bits derived from `b'` (16 B per bit) and, for ReLU, the two rows decoding `pos`
//! with weight `b'` (16 B). The evaluator evaluates and decodes its output share. One round trip.
//!
//! Messages are split into chunks of at most [`FRAME_BUDGET`] bytes; every chunk's length is
//! fixed by the [`Layer`] both parties agreed on, so nothing is sized by the peer.

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::block::{Block, Delta};
use crate::decode::OutputCoder;
use crate::error::{GcError, Input, Message, Result};
use crate::evaluate::Evaluator;
use crate::garble::{Garbler, LANES};
use crate::hash::Tccr;
use crate::modulus::Modulus;
use crate::msgs::{expect_len, get_blocks, get_u64s, get_zt, put_blocks, put_u64s};
use crate::ot::base::{self, BaseSender, POINT_BYTES};
use crate::ot::extension::{ExtReceiver, ExtSender, KAPPA, PADDING, kos_prove, kos_verify};
use crate::prg::Prg;
use crate::relu::{Nonlinear, ZtCircuit};

/// OT-extension words (of 128 OTs) per column chunk: 1 MiB messages.
pub const OT_CHUNK_WORDS: usize = 512;
/// The largest message chunk, in bytes.
pub const FRAME_BUDGET: usize = 1 << 21;
/// The frame size a channel must accept for this protocol (its `max_payload`).
pub const MAX_FRAME: u32 = 1 << 22;
/// The most instances one layer may have.
pub const MAX_INSTANCES: usize = 1 << 22;

/// A layer both parties agreed on: the function, the modulus and the number of instances,
/// with every message size derived from them.
#[derive(Clone, Debug)]
pub struct Layer {
    z: ZtCircuit,
    instances: usize,
    per_chunk: usize,
}

impl Layer {
    /// Validates the layer and builds its circuit.
    pub fn new(op: Nonlinear, modulus: Modulus, instances: usize) -> Result<Self> {
        if instances == 0 || instances > MAX_INSTANCES {
            return Err(GcError::TooManyInstances { actual: instances, maximum: MAX_INSTANCES });
        }
        let z = ZtCircuit::new(op, modulus)?;
        let mut layer = Self { z, instances, per_chunk: 1 };
        let widest = layer.table_bytes(1).max(layer.label_bytes(1)).max(layer.reshare_bytes(1));
        let per = (FRAME_BUDGET / widest).max(1);
        layer.per_chunk = if per >= LANES { per - per % LANES } else { per };
        Ok(layer)
    }

    /// The circuit and its decoding.
    pub fn circuit(&self) -> &ZtCircuit {
        &self.z
    }

    /// Instances (ReLUs or windows).
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Input values (shares) per party: instances × values per instance.
    pub fn values(&self) -> usize {
        self.instances * self.z.values()
    }

    /// Chunks of the table, re-share and label messages.
    pub fn chunks(&self) -> usize {
        self.instances.div_ceil(self.per_chunk)
    }

    /// Chunks of the OT-extension columns.
    pub fn ot_chunks(&self) -> usize {
        self.ot_words().div_ceil(OT_CHUNK_WORDS)
    }

    fn chunk_range(&self, chunk: usize) -> std::ops::Range<usize> {
        let start = chunk * self.per_chunk;
        start..(start + self.per_chunk).min(self.instances)
    }

    fn ebits(&self) -> usize {
        self.z.circuit().evaluator_inputs()
    }

    fn gbits(&self) -> usize {
        self.z.circuit().garbler_inputs()
    }

    fn real_ots(&self) -> usize {
        self.instances * self.ebits()
    }

    fn ot_words(&self) -> usize {
        self.real_ots().div_ceil(128) + PADDING / 128
    }

    fn ot_chunk_words(&self, chunk: usize) -> usize {
        OT_CHUNK_WORDS.min(self.ot_words() - chunk * OT_CHUNK_WORDS)
    }

    /// Offline decoding ciphertexts per instance (a fixed last output takes two).
    fn offline_cts(&self) -> usize {
        self.z.offline_weights().len() + usize::from(!self.z.has_online_output())
    }

    fn table_bytes(&self, n: usize) -> usize {
        n * (32 * self.z.and_gates() + 8 * self.offline_cts())
    }

    fn label_bytes(&self, n: usize) -> usize {
        n * (16 * self.gbits() + 16 * usize::from(self.z.has_online_output()))
    }

    fn reshare_bytes(&self, n: usize) -> usize {
        n * self.z.values() * 8
    }

    /// Bytes the offline phase moves (both directions, payloads only).
    pub fn offline_bytes(&self) -> usize {
        POINT_BYTES * (1 + KAPPA) + 16 * KAPPA * self.ot_words() + 48 + self.table_bytes(self.instances)
    }

    /// Bytes the online phase moves (both directions, payloads only).
    pub fn online_bytes(&self) -> usize {
        self.reshare_bytes(self.instances) + self.label_bytes(self.instances)
    }

    fn outputs(&self) -> usize {
        self.z.circuit().outputs().len()
    }

    fn decode_tweak(&self, instance: usize) -> u128 {
        instance as u128 * self.outputs() as u128
    }
}

fn check_values(input: Input, values: &[u64], expected: usize, m: &Modulus) -> Result<()> {
    if values.len() != expected {
        return Err(GcError::WrongCount { input, expected, actual: values.len() });
    }
    match values.iter().position(|&v| v >= m.t()) {
        Some(index) => Err(GcError::InputOutOfRange { input, index }),
        None => Ok(()),
    }
}

fn check_chunk(message: Message, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(GcError::OutOfOrder { message, expected, got }) }
}

/// What the garbler keeps through the phases.
struct GarblerCore {
    layer: Layer,
    hash: Tccr,
    delta: Delta,
    label_seed: Zeroizing<Block>,
    masks: Zeroizing<Vec<u64>>,
}

impl GarblerCore {
    /// The zero labels of instance `i`'s garbler inputs (a PRG of the layer's label seed).
    fn garbler_labels(&self, i: usize, out: &mut [Block]) {
        Prg::new(*self.label_seed).blocks_at((i * self.layer.gbits()) as u128, out);
    }
}

/// The garbler, waiting for the evaluator's base-OT point.
pub struct GarblerAwaitBase(GarblerCore);
/// The garbler, waiting for OT-extension column chunks.
pub struct GarblerAwaitColumns {
    core: GarblerCore,
    ext: ExtSender,
    q: Zeroizing<Vec<Block>>,
    next: usize,
}
/// The garbler, waiting for the answer to its consistency-check challenge.
pub struct GarblerAwaitProof {
    core: GarblerCore,
    q: Zeroizing<Vec<Block>>,
    chi: Block,
}
/// The garbler, producing table chunks.
pub struct GarblerGarbling {
    core: GarblerCore,
    q: Zeroizing<Vec<Block>>,
    online: Zeroizing<Vec<(Block, u64)>>,
    next: usize,
}
/// The garbler after the offline phase: waits for its shares and the evaluator's re-share.
pub struct GarblerOffline {
    core: GarblerCore,
    online: Zeroizing<Vec<(Block, u64)>>,
}
/// The garbler online, answering re-share chunks.
pub struct GarblerAwaitReshare {
    core: GarblerCore,
    online: Zeroizing<Vec<(Block, u64)>>,
    shares: Zeroizing<Vec<u64>>,
    next: usize,
}

macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    )*};
}
opaque_debug!(
    GarblerAwaitBase,
    GarblerAwaitColumns,
    GarblerAwaitProof,
    GarblerGarbling,
    GarblerOffline,
    GarblerAwaitReshare,
    EvaluatorAwaitBase,
    EvaluatorExtending,
    EvaluatorAwaitTables,
    EvaluatorOffline,
    EvaluatorAwaitLabels
);

impl GarblerAwaitBase {
    /// Starts a layer with the output masks `r` (one per instance, below `t`), drawing `Δ`.
    pub fn start<R: RngCore + CryptoRng + ?Sized>(layer: Layer, masks: Vec<u64>, rng: &mut R) -> Result<Self> {
        let masks = Zeroizing::new(masks);
        check_values(Input::Masks, &masks, layer.instances, &layer.z.modulus())?;
        Ok(Self(GarblerCore {
            layer,
            hash: Tccr::new(),
            delta: Delta::random(rng),
            label_seed: Zeroizing::new(Block::random(rng)),
            masks,
        }))
    }

    /// Base OT as receiver with choices the bits of `Δ`: the reply (128 points) and the next state.
    pub fn receive_base<R: RngCore + CryptoRng + ?Sized>(
        self,
        message: &[u8],
        rng: &mut R,
    ) -> Result<(Vec<u8>, GarblerAwaitColumns)> {
        let core = self.0;
        let choices: Vec<bool> = (0..KAPPA).map(|i| core.delta.bit(i)).collect();
        let (reply, keys) = base::receive(&choices, message, rng)?;
        let ext = ExtSender::new(&core.delta, &keys);
        let q = Zeroizing::new(Vec::with_capacity(128 * core.layer.ot_words()));
        Ok((reply, GarblerAwaitColumns { core, ext, q, next: 0 }))
    }
}

impl GarblerAwaitColumns {
    /// The layer.
    pub fn layer(&self) -> &Layer {
        &self.core.layer
    }

    /// Receives column chunk `chunk` (chunks come in order).
    pub fn receive_columns(&mut self, chunk: usize, message: &[u8]) -> Result<()> {
        check_chunk(Message::Columns, self.next, chunk)?;
        if chunk >= self.core.layer.ot_chunks() {
            return Err(GcError::OutOfOrder { message: Message::Columns, expected: self.next, got: chunk });
        }
        self.ext.extend(self.core.layer.ot_chunk_words(chunk), message, &mut self.q)?;
        self.next += 1;
        Ok(())
    }

    /// After the last chunk: the consistency-check challenge (16 bytes).
    pub fn challenge<R: RngCore + CryptoRng + ?Sized>(self, rng: &mut R) -> Result<(Vec<u8>, GarblerAwaitProof)> {
        check_chunk(Message::Columns, self.core.layer.ot_chunks(), self.next)?;
        let chi = Block::random(rng);
        Ok((chi.to_bytes().to_vec(), GarblerAwaitProof { core: self.core, q: self.q, chi }))
    }
}

impl GarblerAwaitProof {
    /// Checks the answer; on success the OTs are ready and garbling can start.
    pub fn receive_proof(self, message: &[u8]) -> Result<GarblerGarbling> {
        expect_len(Message::Proof, message, 32)?;
        let proof = [0, 16].map(|o| Block::from_bytes(message[o..o + 16].try_into().expect("16 bytes")));
        kos_verify(self.chi, &self.core.delta, &self.q, proof)?;
        let mut q = self.q;
        let real = self.core.layer.real_ots();
        q[real..].zeroize();
        q.truncate(real);
        let online = Zeroizing::new(Vec::with_capacity(self.core.layer.instances));
        Ok(GarblerGarbling { core: self.core, q, online, next: 0 })
    }
}

impl GarblerGarbling {
    /// The layer.
    pub fn layer(&self) -> &Layer {
        &self.core.layer
    }

    /// Garbles chunk `chunk` (in order): its tables and offline decoding.
    pub fn garble_chunk(&mut self, chunk: usize) -> Result<Vec<u8>> {
        check_chunk(Message::Tables, self.next, chunk)?;
        let core = &self.core;
        let layer = &core.layer;
        if chunk >= layer.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Tables, expected: self.next, got: chunk });
        }
        let (m, delta) = (layer.z.modulus(), core.delta.block());
        let (ebits, ni, no) = (layer.ebits(), layer.ebits() + layer.gbits(), layer.outputs());
        let weights = layer.z.offline_weights();
        let nfree = weights.len() - usize::from(!layer.z.has_online_output());
        let range = layer.chunk_range(chunk);
        let mut garbler = Garbler::new(layer.z.circuit(), &core.hash, &core.delta);
        let mut tables = vec![Block::ZERO; LANES * 2 * layer.z.and_gates()];
        let mut inputs = Zeroizing::new(vec![Block::ZERO; LANES * ni]);
        let mut out0 = Zeroizing::new(vec![Block::ZERO; LANES * no]);
        let mut cts = vec![0u64; range.len() * layer.offline_cts()];
        let mut table_bytes = Vec::with_capacity(layer.table_bytes(range.len()));
        let mut coder = OutputCoder::new(m);
        for first in range.clone().step_by(LANES) {
            let n = (range.end - first).min(LANES);
            for l in 0..n {
                let i = first + l;
                inputs[l * ni..l * ni + ebits].copy_from_slice(&self.q[i * ebits..(i + 1) * ebits]);
                core.garbler_labels(i, &mut inputs[l * ni + ebits..(l + 1) * ni]);
            }
            let tables = &mut tables[..n * 2 * layer.z.and_gates()];
            garbler.garble(first as u64, n, &inputs[..n * ni], tables, &mut out0[..n * no]);
            put_blocks(tables, &mut table_bytes);
            for l in 0..n {
                let i = first + l;
                let zero = &out0[l * no..(l + 1) * no];
                let ct = &mut cts[(i - range.start) * layer.offline_cts()..][..layer.offline_cts()];
                let tweak = layer.decode_tweak(i);
                let rho = coder.encode_free(delta, &zero[..nfree], &weights[..nfree], tweak, &mut ct[..nfree]);
                // The remaining ρ makes the shares sum to f(x) − r: Σρ = r + offset.
                let rest = m.sub(m.add(core.masks[i], layer.z.offset()), rho);
                if layer.z.has_online_output() {
                    self.online.push((zero[nfree], rest));
                } else {
                    let k = nfree;
                    let pair = coder.encode_fixed(delta, zero[k], weights[k], rest, tweak + k as u128);
                    ct[k..k + 2].copy_from_slice(&pair);
                }
            }
        }
        put_u64s(&cts, &mut table_bytes);
        self.next += 1;
        Ok(table_bytes)
    }

    /// After the last chunk: the offline phase is done.
    pub fn finish(self) -> Result<GarblerOffline> {
        check_chunk(Message::Tables, self.core.layer.chunks(), self.next)?;
        Ok(GarblerOffline { core: self.core, online: self.online })
    }
}

impl GarblerOffline {
    /// The layer.
    pub fn layer(&self) -> &Layer {
        &self.core.layer
    }

    /// Starts the online phase with the garbler's shares `b` (one per input value).
    pub fn online(self, shares: Vec<u64>) -> Result<GarblerAwaitReshare> {
        let shares = Zeroizing::new(shares);
        check_values(Input::Shares, &shares, self.core.layer.values(), &self.core.layer.z.modulus())?;
        Ok(GarblerAwaitReshare { core: self.core, online: self.online, shares, next: 0 })
    }
}

impl GarblerAwaitReshare {
    /// Answers re-share chunk `chunk` (in order) with the garbler's labels for it.
    pub fn respond(&mut self, chunk: usize, message: &[u8]) -> Result<Vec<u8>> {
        check_chunk(Message::Reshare, self.next, chunk)?;
        let core = &self.core;
        let layer = &core.layer;
        if chunk >= layer.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Reshare, expected: self.next, got: chunk });
        }
        let range = layer.chunk_range(chunk);
        expect_len(Message::Reshare, message, layer.reshare_bytes(range.len()))?;
        let e = Zeroizing::new(get_zt(Message::Reshare, message, &layer.z.modulus())?);
        let (m, delta, k) = (layer.z.modulus(), core.delta.block(), layer.z.values());
        let mut labels = Zeroizing::new(vec![Block::ZERO; layer.gbits()]);
        let mut bits = Vec::with_capacity(layer.gbits());
        let mut reshared = Zeroizing::new(vec![0u64; k]);
        let mut out = Vec::with_capacity(layer.label_bytes(range.len()));
        let mut online_cts = Vec::new();
        let coder = OutputCoder::new(m);
        for i in range.clone() {
            for j in 0..k {
                reshared[j] = m.add(self.shares[i * k + j], e[(i - range.start) * k + j]);
            }
            bits.clear();
            layer.z.garbler_bits(&reshared, &mut bits);
            core.garbler_labels(i, &mut labels);
            for (l, &b) in labels.iter_mut().zip(&bits) {
                *l ^= delta.and_bit(b);
            }
            put_blocks(&labels, &mut out);
            if let Some(w) = layer.z.online_weight(&reshared) {
                let (zero, rho) = self.online[i];
                let tweak = layer.decode_tweak(i) + layer.z.offline_weights().len() as u128;
                online_cts.extend(coder.encode_fixed(delta, zero, w, rho, tweak));
            }
        }
        put_u64s(&online_cts, &mut out);
        self.next += 1;
        Ok(out)
    }

    /// After the last chunk: the garbler's part is done (its output share is `r`).
    pub fn finish(self) -> Result<()> {
        check_chunk(Message::Reshare, self.core.layer.chunks(), self.next)
    }
}

/// What the evaluator keeps through the phases.
struct EvaluatorCore {
    layer: Layer,
    hash: Tccr,
    offline_shares: Zeroizing<Vec<u64>>,
}

/// The evaluator, waiting for the garbler's base-OT points.
pub struct EvaluatorAwaitBase {
    core: EvaluatorCore,
    sender: BaseSender,
    choices: Zeroizing<Vec<Block>>,
}
/// The evaluator, producing OT-extension column chunks.
pub struct EvaluatorExtending {
    core: EvaluatorCore,
    ext: ExtReceiver,
    choices: Zeroizing<Vec<Block>>,
    t: Zeroizing<Vec<Block>>,
    next: usize,
}
/// The evaluator, receiving table chunks.
pub struct EvaluatorAwaitTables {
    core: EvaluatorCore,
    t: Zeroizing<Vec<Block>>,
    tables: Vec<(Vec<Block>, Vec<u64>)>,
}
/// The evaluator after the offline phase: waits for its shares.
pub struct EvaluatorOffline {
    core: EvaluatorCore,
    t: Zeroizing<Vec<Block>>,
    tables: Vec<(Vec<Block>, Vec<u64>)>,
}
/// The evaluator online, evaluating label chunks.
pub struct EvaluatorAwaitLabels {
    core: EvaluatorCore,
    t: Zeroizing<Vec<Block>>,
    tables: Vec<(Vec<Block>, Vec<u64>)>,
    output: Zeroizing<Vec<u64>>,
    next: usize,
}

impl EvaluatorAwaitBase {
    /// Starts a layer: draws the offline shares `c` and the OT-padding choices; returns the
    /// base-OT message `S` and the state.
    pub fn start<R: RngCore + CryptoRng + ?Sized>(layer: Layer, rng: &mut R) -> (Vec<u8>, Self) {
        let m = layer.z.modulus();
        let bits = m.bits();
        let c: Zeroizing<Vec<u64>> = Zeroizing::new((0..layer.values()).map(|_| m.random(rng)).collect());
        let mut choices = Zeroizing::new(vec![Block::ZERO; layer.ot_words()]);
        for w in choices.iter_mut() {
            *w = Block::random(rng);
        }
        // The real choices are the bits of c, in OT order; the rest stays random (padding).
        for (v, &cv) in c.iter().enumerate() {
            for b in 0..bits {
                let j = v * bits + b;
                let word = &mut choices[j / 128].0;
                *word = (*word & !(1u128 << (j % 128))) | (u128::from((cv >> b) & 1) << (j % 128));
            }
        }
        let (sender, s) = BaseSender::new(rng);
        let core = EvaluatorCore { layer, hash: Tccr::new(), offline_shares: c };
        (s.to_vec(), Self { core, sender, choices })
    }

    /// Finishes the base OTs with the garbler's points.
    pub fn receive_base(self, message: &[u8]) -> Result<EvaluatorExtending> {
        let keys = self.sender.finish(message, KAPPA)?;
        let t = Zeroizing::new(Vec::with_capacity(128 * self.core.layer.ot_words()));
        Ok(EvaluatorExtending { ext: ExtReceiver::new(&keys), core: self.core, choices: self.choices, t, next: 0 })
    }
}

impl EvaluatorExtending {
    /// Column chunks to send, [`Layer::ot_chunks`] of them.
    pub fn chunks(&self) -> usize {
        self.core.layer.ot_chunks()
    }

    /// Produces column chunk `chunk` (in order).
    pub fn columns(&mut self, chunk: usize) -> Result<Vec<u8>> {
        check_chunk(Message::Columns, self.next, chunk)?;
        if chunk >= self.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Columns, expected: self.next, got: chunk });
        }
        let start = chunk * OT_CHUNK_WORDS;
        let words = self.core.layer.ot_chunk_words(chunk);
        let mut out = Vec::new();
        self.ext.extend(&self.choices[start..start + words], &mut out, &mut self.t);
        self.next += 1;
        Ok(out)
    }

    /// Answers the garbler's challenge (after the last chunk).
    pub fn prove(self, challenge: &[u8]) -> Result<(Vec<u8>, EvaluatorAwaitTables)> {
        check_chunk(Message::Columns, self.chunks(), self.next)?;
        expect_len(Message::Challenge, challenge, 16)?;
        let chi = Block::from_bytes(challenge.try_into().expect("16 bytes"));
        let [x, tt] = kos_prove(chi, &self.choices, &self.t);
        let mut reply = x.to_bytes().to_vec();
        reply.extend_from_slice(&tt.to_bytes());
        let mut t = self.t;
        let real = self.core.layer.real_ots();
        t[real..].zeroize();
        t.truncate(real);
        let tables = Vec::with_capacity(self.core.layer.chunks());
        Ok((reply, EvaluatorAwaitTables { core: self.core, t, tables }))
    }
}

impl EvaluatorAwaitTables {
    /// Table chunks to receive, [`Layer::chunks`] of them.
    pub fn chunks(&self) -> usize {
        self.core.layer.chunks()
    }

    /// Stores table chunk `chunk` (in order) after checking its length.
    pub fn receive_tables(&mut self, chunk: usize, message: &[u8]) -> Result<()> {
        let layer = &self.core.layer;
        check_chunk(Message::Tables, self.tables.len(), chunk)?;
        if chunk >= layer.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Tables, expected: self.tables.len(), got: chunk });
        }
        let n = layer.chunk_range(chunk).len();
        expect_len(Message::Tables, message, layer.table_bytes(n))?;
        let split = n * 32 * layer.z.and_gates();
        let mut blocks = Vec::with_capacity(split / 16);
        get_blocks(&message[..split], &mut blocks);
        self.tables.push((blocks, get_u64s(&message[split..])));
        Ok(())
    }

    /// After the last chunk: the offline phase is done.
    pub fn finish(self) -> Result<EvaluatorOffline> {
        check_chunk(Message::Tables, self.chunks(), self.tables.len())?;
        Ok(EvaluatorOffline { core: self.core, t: self.t, tables: self.tables })
    }
}

impl EvaluatorOffline {
    /// The layer.
    pub fn layer(&self) -> &Layer {
        &self.core.layer
    }

    /// Starts the online phase with the evaluator's shares `a`: the re-share chunks
    /// `e = a − c mod t` to send, and the next state.
    pub fn online(self, shares: &[u64]) -> Result<(Vec<Vec<u8>>, EvaluatorAwaitLabels)> {
        let layer = &self.core.layer;
        let m = layer.z.modulus();
        check_values(Input::Shares, shares, layer.values(), &m)?;
        let k = layer.z.values();
        let messages = (0..layer.chunks())
            .map(|chunk| {
                let r = layer.chunk_range(chunk);
                let e: Vec<u64> =
                    (r.start * k..r.end * k).map(|v| m.sub(shares[v], self.core.offline_shares[v])).collect();
                let mut out = Vec::with_capacity(8 * e.len());
                put_u64s(&e, &mut out);
                out
            })
            .collect();
        let output = Zeroizing::new(Vec::with_capacity(layer.instances));
        Ok((messages, EvaluatorAwaitLabels { core: self.core, t: self.t, tables: self.tables, output, next: 0 }))
    }
}

impl EvaluatorAwaitLabels {
    /// Label chunks to receive, [`Layer::chunks`] of them.
    pub fn chunks(&self) -> usize {
        self.core.layer.chunks()
    }

    /// Evaluates chunk `chunk` (in order) with the garbler's labels.
    pub fn receive_labels(&mut self, chunk: usize, message: &[u8]) -> Result<()> {
        let core = &self.core;
        let layer = &core.layer;
        check_chunk(Message::Labels, self.next, chunk)?;
        if chunk >= layer.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Labels, expected: self.next, got: chunk });
        }
        let range = layer.chunk_range(chunk);
        let n = range.len();
        expect_len(Message::Labels, message, layer.label_bytes(n))?;
        let m = layer.z.modulus();
        let (ebits, gbits, ni, no, ands) =
            (layer.ebits(), layer.gbits(), layer.ebits() + layer.gbits(), layer.outputs(), layer.z.and_gates());
        let online = layer.z.has_online_output();
        let split = n * 16 * gbits;
        let mut glabels = Zeroizing::new(Vec::with_capacity(n * gbits));
        get_blocks(&message[..split], &mut glabels);
        let online_cts = get_u64s(&message[split..]);
        let (tables, cts) = &self.tables[chunk];
        let weights = layer.z.offline_weights();
        let nfree = weights.len() - usize::from(!online);
        let mut evaluator = Evaluator::new(layer.z.circuit(), &core.hash);
        let mut inputs = Zeroizing::new(vec![Block::ZERO; LANES * ni]);
        let mut out = Zeroizing::new(vec![Block::ZERO; LANES * no]);
        let mut coder = OutputCoder::new(m);
        for first in range.clone().step_by(LANES) {
            let lanes = (range.end - first).min(LANES);
            for l in 0..lanes {
                let (i, li) = (first + l, first + l - range.start);
                inputs[l * ni..l * ni + ebits].copy_from_slice(&self.t[i * ebits..(i + 1) * ebits]);
                inputs[l * ni + ebits..(l + 1) * ni].copy_from_slice(&glabels[li * gbits..(li + 1) * gbits]);
            }
            let t0 = (first - range.start) * 2 * ands;
            evaluator.evaluate(
                first as u64,
                lanes,
                &inputs[..lanes * ni],
                &tables[t0..t0 + lanes * 2 * ands],
                &mut out[..lanes * no],
            );
            for l in 0..lanes {
                let (i, li) = (first + l, first + l - range.start);
                let active = &out[l * no..(l + 1) * no];
                let ct = &cts[li * layer.offline_cts()..][..layer.offline_cts()];
                let tweak = layer.decode_tweak(i);
                let mut share = coder.decode_free(&active[..nfree], &ct[..nfree], tweak).map_err(|k| {
                    GcError::OutOfRange { message: Message::Tables, index: li * layer.offline_cts() + k }
                })?;
                let (row, index, message) = if online {
                    ([online_cts[2 * li], online_cts[2 * li + 1]], 2 * li, Message::Labels)
                } else {
                    ([ct[nfree], ct[nfree + 1]], li * layer.offline_cts() + nfree, Message::Tables)
                };
                let last = coder
                    .decode_fixed(active[nfree], row, tweak + nfree as u128)
                    .ok_or(GcError::OutOfRange { message, index })?;
                share = m.add(share, last);
                self.output.push(share);
            }
        }
        self.next += 1;
        Ok(())
    }

    /// After the last chunk: the evaluator's output shares `f(x) − r`.
    pub fn finish(self) -> Result<Vec<u64>> {
        check_chunk(Message::Labels, self.core.layer.chunks(), self.next)?;
        let mut output = self.output;
        Ok(std::mem::take(&mut *output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Drives both roles by hand, with no channel; returns the evaluator's output shares.
    fn run(layer: &Layer, a: &[u64], b: &[u64], r: &[u64], seed: u64) -> Result<Vec<u64>> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let g = GarblerAwaitBase::start(layer.clone(), r.to_vec(), &mut rng)?;
        let (s, e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        let (points, mut g) = g.receive_base(&s, &mut rng)?;
        let mut e = e.receive_base(&points)?;
        for chunk in 0..e.chunks() {
            g.receive_columns(chunk, &e.columns(chunk)?)?;
        }
        let (chi, g) = g.challenge(&mut rng)?;
        let (proof, mut e) = e.prove(&chi)?;
        let mut g = g.receive_proof(&proof)?;
        for chunk in 0..e.chunks() {
            e.receive_tables(chunk, &g.garble_chunk(chunk)?)?;
        }
        let (g, e) = (g.finish()?, e.finish()?);
        let mut g = g.online(b.to_vec())?;
        let (reshares, mut e) = e.online(a)?;
        for (chunk, msg) in reshares.iter().enumerate() {
            e.receive_labels(chunk, &g.respond(chunk, msg)?)?;
        }
        g.finish()?;
        e.finish()
    }

    #[test]
    fn every_layer_kind_gives_f_of_x_minus_r() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for t in [Modulus::tessera().t(), 97] {
            let m = Modulus::new(t).unwrap();
            for op in [Nonlinear::Relu, Nonlinear::ReluTrunc { shift: 3 }, Nonlinear::MaxPool { window: 4 }] {
                let layer = Layer::new(op, m, 45).unwrap();
                let a: Vec<u64> = (0..layer.values()).map(|_| m.random(&mut rng)).collect();
                let b: Vec<u64> = (0..layer.values()).map(|_| m.random(&mut rng)).collect();
                let r: Vec<u64> = (0..layer.instances()).map(|_| m.random(&mut rng)).collect();
                let out = run(&layer, &a, &b, &r, 5).unwrap();
                let k = layer.circuit().values();
                for i in 0..layer.instances() {
                    let x: Vec<u64> = (0..k).map(|j| m.add(a[i * k + j], b[i * k + j])).collect();
                    assert_eq!(m.add(out[i], r[i]), layer.circuit().reference(&x), "{op:?} t={t} instance {i}");
                }
            }
        }
    }

    #[test]
    fn wrong_inputs_and_orders_are_typed_errors() {
        let m = Modulus::tessera();
        let layer = Layer::new(Nonlinear::Relu, m, 3).unwrap();
        assert!(matches!(Layer::new(Nonlinear::Relu, m, 0), Err(GcError::TooManyInstances { .. })));
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        assert!(matches!(
            GarblerAwaitBase::start(layer.clone(), vec![0; 2], &mut rng),
            Err(GcError::WrongCount { input: Input::Masks, expected: 3, actual: 2 })
        ));
        assert!(matches!(
            GarblerAwaitBase::start(layer.clone(), vec![0, m.t(), 0], &mut rng),
            Err(GcError::InputOutOfRange { input: Input::Masks, index: 1 })
        ));
        let g = GarblerAwaitBase::start(layer.clone(), vec![0; 3], &mut rng).unwrap();
        let (s, e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        assert!(matches!(
            g.receive_base(&s[..31], &mut rng),
            Err(GcError::WrongLength { message: Message::BaseSender, .. })
        ));
        let g = GarblerAwaitBase::start(layer.clone(), vec![0; 3], &mut rng).unwrap();
        let (points, mut g) = g.receive_base(&s, &mut rng).unwrap();
        let mut e = e.receive_base(&points).unwrap();
        assert!(matches!(g.receive_columns(1, &[]), Err(GcError::OutOfOrder { .. })));
        let cols = e.columns(0).unwrap();
        assert!(matches!(g.receive_columns(0, &cols[1..]), Err(GcError::WrongLength { .. })));
    }
}
