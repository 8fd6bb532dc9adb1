//! The nonlinear layer: garbler and evaluator as state machines without I/O.
//!
//! The evaluator holds shares `a`, the garbler shares `b`; the garbler draws its output masks
//! `r` (one per instance, uniform in `Z_t`) itself, and they are its output shares
//! ([`OutputShares`]); the evaluator ends with `f(a + b) − r mod t`, `f` the layer's
//! [`Nonlinear`].
//!
//! **Offline** (input-independent). The garbler draws `Δ`, its label seed, `r` and the layer's
//! hash key `K` ([`crate::hash`]). The evaluator draws its *offline share* `c`, uniform in
//! `Z_t`, per input value. Base OT: evaluator → garbler `S` (32 B); garbler → evaluator 128
//! points (4 KiB) and `K` (16 B). Extension: evaluator → garbler columns, 16 B per OT, one OT
//! per bit of `c` plus [`PADDING`]; KOS: garbler → evaluator a challenge (16 B), evaluator →
//! garbler the answer (32 B). The garbler's zero labels of the evaluator's input wires are its OT strings `q_j`,
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
use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::block::{Block, Delta};
use crate::circuit::to_bits;
use crate::decode::OutputCoder;
use crate::error::{GcError, Input, Message, Result};
use crate::evaluate::Evaluator;
use crate::garble::{Garbler, LANES};
use crate::hash::{KEY_BYTES, Tccr};
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
    /// Validates the two-party layer and builds its circuit.
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

    /// Chunks of the evaluator's OT-extension columns.
    pub fn ot_chunks(&self) -> usize {
        self.evaluator_ots().chunks()
    }

    fn chunk_range(&self, chunk: usize) -> std::ops::Range<usize> {
        let start = chunk * self.per_chunk;
        start..(start + self.per_chunk).min(self.instances)
    }

    /// The evaluator's input bits per instance (one OT each).
    fn ebits(&self) -> usize {
        self.z.evaluator_bits()
    }

    fn gbits(&self) -> usize {
        self.z.circuit().garbler_inputs()
    }

    /// The OTs of the evaluator's input bits.
    fn evaluator_ots(&self) -> OtShape {
        OtShape::new(self.instances * self.ebits())
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

    /// Bytes the evaluator keeps from the offline phase to the online one: the garbled tables
    /// with their decoding, its OT labels and its offline shares.
    pub fn evaluator_stored_bytes(&self) -> usize {
        KEY_BYTES + self.table_bytes(self.instances) + 16 * self.evaluator_ots().real + 8 * self.values()
    }

    /// Bytes the offline phase moves (all directions, payloads only).
    pub fn offline_bytes(&self) -> usize {
        let ot = |shape: OtShape| POINT_BYTES * (1 + KAPPA) + 16 * KAPPA * shape.words + 48;
        ot(self.evaluator_ots()) + KEY_BYTES + self.table_bytes(self.instances)
    }

    /// Bytes the online phase moves (both directions, payloads only).
    pub fn online_bytes(&self) -> usize {
        self.reshare_bytes(self.instances) + self.label_bytes(self.instances)
    }

    fn outputs(&self) -> usize {
        self.z.circuit().outputs().len()
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

/// One OT extension's size: its real OTs and its 128-OT words, padding included.
#[derive(Clone, Copy, Debug)]
struct OtShape {
    real: usize,
    words: usize,
}

impl OtShape {
    fn new(real: usize) -> Self {
        Self { real, words: real.div_ceil(128) + PADDING / 128 }
    }

    fn chunks(&self) -> usize {
        self.words.div_ceil(OT_CHUNK_WORDS)
    }

    fn chunk_words(&self, chunk: usize) -> usize {
        OT_CHUNK_WORDS.min(self.words - chunk * OT_CHUNK_WORDS)
    }
}

/// The OT-extension receiver (the evaluator) before the base OTs: its choice
/// words (real choices first, random padding after) and its base-OT sender.
struct OtChooser {
    shape: OtShape,
    sender: BaseSender,
    choices: Zeroizing<Vec<Block>>,
}

impl OtChooser {
    /// Draws the padding; returns the base-OT message `S` and the state.
    fn start<R: RngCore + CryptoRng + ?Sized>(shape: OtShape, real: &[bool], rng: &mut R) -> (Vec<u8>, Self) {
        debug_assert_eq!(real.len(), shape.real);
        let mut choices = Zeroizing::new(vec![Block::ZERO; shape.words]);
        for w in choices.iter_mut() {
            *w = Block::random(rng);
        }
        for (j, &bit) in real.iter().enumerate() {
            let word = &mut choices[j / 128].0;
            *word = (*word & !(1u128 << (j % 128))) | (u128::from(bit) << (j % 128));
        }
        let (sender, s) = BaseSender::new(rng);
        (s.to_vec(), Self { shape, sender, choices })
    }

    /// Finishes the base OTs with the garbler's points.
    fn receive_base(self, points: &[u8]) -> Result<OtReceiving> {
        let keys = self.sender.finish(points, KAPPA)?;
        let t = Zeroizing::new(Vec::with_capacity(128 * self.shape.words));
        Ok(OtReceiving { shape: self.shape, ext: ExtReceiver::new(&keys), choices: self.choices, t, next: 0 })
    }
}

/// The OT-extension receiver producing column chunks; its strings `t_j` are its active labels.
struct OtReceiving {
    shape: OtShape,
    ext: ExtReceiver,
    choices: Zeroizing<Vec<Block>>,
    t: Zeroizing<Vec<Block>>,
    next: usize,
}

impl OtReceiving {
    fn columns(&mut self, chunk: usize) -> Result<Vec<u8>> {
        check_chunk(Message::Columns, self.next, chunk)?;
        if chunk >= self.shape.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Columns, expected: self.next, got: chunk });
        }
        let start = chunk * OT_CHUNK_WORDS;
        let words = self.shape.chunk_words(chunk);
        let mut out = Vec::new();
        self.ext.extend(&self.choices[start..start + words], &mut out, &mut self.t);
        self.next += 1;
        Ok(out)
    }

    /// Answers the challenge (after the last chunk): the answer and the real OTs' strings.
    fn prove(self, challenge: &[u8]) -> Result<(Vec<u8>, Zeroizing<Vec<Block>>)> {
        check_chunk(Message::Columns, self.shape.chunks(), self.next)?;
        expect_len(Message::Challenge, challenge, 16)?;
        let chi = Block::from_bytes(challenge.try_into().expect("16 bytes"));
        let [x, tt] = kos_prove(chi, &self.choices, &self.t);
        let mut reply = x.to_bytes().to_vec();
        reply.extend_from_slice(&tt.to_bytes());
        let mut t = self.t;
        t[self.shape.real..].zeroize();
        t.truncate(self.shape.real);
        Ok((reply, t))
    }
}

/// The garbler's side of the OT extension (sender, `s = Δ`); its strings `q_j` are the zero
/// labels of the evaluator's input wires.
struct OtSending {
    shape: OtShape,
    ext: ExtSender,
    q: Zeroizing<Vec<Block>>,
    next: usize,
}

impl OtSending {
    /// Base OT as receiver with choices the bits of `Δ`: the reply (128 points) and the state.
    fn start<R: RngCore + CryptoRng + ?Sized>(
        shape: OtShape,
        delta: &Delta,
        message: &[u8],
        rng: &mut R,
    ) -> Result<(Vec<u8>, Self)> {
        let choices: Vec<bool> = (0..KAPPA).map(|i| delta.bit(i)).collect();
        let (reply, keys) = base::receive(&choices, message, rng)?;
        let q = Zeroizing::new(Vec::with_capacity(128 * shape.words));
        Ok((reply, Self { shape, ext: ExtSender::new(delta, &keys), q, next: 0 }))
    }

    fn receive_columns(&mut self, chunk: usize, message: &[u8]) -> Result<()> {
        check_chunk(Message::Columns, self.next, chunk)?;
        if chunk >= self.shape.chunks() {
            return Err(GcError::OutOfOrder { message: Message::Columns, expected: self.next, got: chunk });
        }
        self.ext.extend(self.shape.chunk_words(chunk), message, &mut self.q)?;
        self.next += 1;
        Ok(())
    }

    /// After the last chunk: the consistency-check challenge `χ`.
    fn challenge<R: RngCore + CryptoRng + ?Sized>(&self, rng: &mut R) -> Result<Block> {
        check_chunk(Message::Columns, self.shape.chunks(), self.next)?;
        Ok(Block::random(rng))
    }
}

/// Checks the answer to `chi` against the strings `q`; returns the real OTs' strings.
fn verify_proof(
    shape: OtShape,
    chi: Block,
    delta: &Delta,
    q: Zeroizing<Vec<Block>>,
    message: &[u8],
) -> Result<Zeroizing<Vec<Block>>> {
    expect_len(Message::Proof, message, 32)?;
    let proof = [0, 16].map(|o| Block::from_bytes(message[o..o + 16].try_into().expect("16 bytes")));
    kos_verify(chi, delta, &q, proof)?;
    let mut q = q;
    q[shape.real..].zeroize();
    q.truncate(shape.real);
    Ok(q)
}

/// The garbler's output shares of a layer: its masks `r`, one per instance, drawn uniformly
/// in `Z_t` by [`GarblerAwaitBase::start`] (the evaluator's shares are `f(x) − r`). Wiped on
/// drop; `Debug` shows only the count.
pub struct OutputShares(Zeroizing<Vec<u64>>);

impl OutputShares {
    /// `instances` uniform elements of `Z_t`.
    fn random<R: RngCore + CryptoRng + ?Sized>(m: &Modulus, instances: usize, rng: &mut R) -> Self {
        Self(Zeroizing::new((0..instances).map(|_| m.random(rng)).collect()))
    }
}

impl std::ops::Deref for OutputShares {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.0
    }
}

impl std::fmt::Debug for OutputShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputShares").field("len", &self.0.len()).finish_non_exhaustive()
    }
}

/// What the garbler keeps through the phases.
struct GarblerCore {
    layer: Layer,
    hash: Tccr,
    delta: Delta,
    label_seed: Zeroizing<Block>,
    masks: OutputShares,
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
    ot: OtSending,
}
/// The garbler, waiting for the answer to its consistency-check challenge.
pub struct GarblerAwaitProof {
    core: GarblerCore,
    q: Zeroizing<Vec<Block>>,
    chi: Block,
}
/// One lane group's garbling: its tables, offline decoding and online decoding rows.
type GarbledGroup = (Vec<Block>, Vec<u64>, Vec<(Block, u64)>);

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
    /// Starts a layer, drawing from `rng` (a CSPRNG) `Δ`, the label seed, the layer's hash key
    /// and the output masks `r`, uniform in `Z_t`.
    pub fn start<R: RngCore + CryptoRng + ?Sized>(layer: Layer, rng: &mut R) -> Self {
        let masks = OutputShares::random(&layer.z.modulus(), layer.instances, rng);
        Self(GarblerCore {
            hash: Tccr::random(rng),
            delta: Delta::random(rng),
            label_seed: Zeroizing::new(Block::random(rng)),
            masks,
            layer,
        })
    }

    /// Base OT as receiver with choices the bits of `Δ`: the reply (128 points, then the hash
    /// key) and the next state.
    pub fn receive_base<R: RngCore + CryptoRng + ?Sized>(
        self,
        message: &[u8],
        rng: &mut R,
    ) -> Result<(Vec<u8>, GarblerAwaitColumns)> {
        let core = self.0;
        let (mut reply, ot) = OtSending::start(core.layer.evaluator_ots(), &core.delta, message, rng)?;
        reply.extend_from_slice(&core.hash.key());
        Ok((reply, GarblerAwaitColumns { core, ot }))
    }
}

impl GarblerAwaitColumns {
    /// The layer.
    pub fn layer(&self) -> &Layer {
        &self.core.layer
    }

    /// Receives column chunk `chunk` (chunks come in order).
    pub fn receive_columns(&mut self, chunk: usize, message: &[u8]) -> Result<()> {
        self.ot.receive_columns(chunk, message)
    }

    /// After the last chunk: the consistency-check challenge (16 bytes).
    pub fn challenge<R: RngCore + CryptoRng + ?Sized>(self, rng: &mut R) -> Result<(Vec<u8>, GarblerAwaitProof)> {
        let chi = self.ot.challenge(rng)?;
        Ok((chi.to_bytes().to_vec(), GarblerAwaitProof { core: self.core, q: self.ot.q, chi }))
    }
}

impl GarblerAwaitProof {
    /// Checks the answer; on success the OTs are ready and garbling can start.
    pub fn receive_proof(self, message: &[u8]) -> Result<GarblerGarbling> {
        let q = verify_proof(self.core.layer.evaluator_ots(), self.chi, &self.core.delta, self.q, message)?;
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
        let ebits = layer.ebits();
        let (ni, no) = (ebits + layer.gbits(), layer.outputs());
        let weights = layer.z.offline_weights();
        let nfree = weights.len() - usize::from(!layer.z.has_online_output());
        let range = layer.chunk_range(chunk);
        let (ands, cts_per) = (layer.z.and_gates(), layer.offline_cts());
        let starts: Vec<usize> = range.clone().step_by(LANES).collect();
        // Lane groups are independent: garble them on every core, keep their order.
        let groups: Vec<GarbledGroup> = starts
            .par_iter()
            .map(|&first| {
                let n = (range.end - first).min(LANES);
                let mut garbler = Garbler::new(layer.z.circuit(), &core.hash, &core.delta);
                let mut tables = vec![Block::ZERO; n * 2 * ands];
                let mut inputs = Zeroizing::new(vec![Block::ZERO; n * ni]);
                let mut out0 = Zeroizing::new(vec![Block::ZERO; n * no]);
                let mut cts = vec![0u64; n * cts_per];
                let mut online = Vec::new();
                let mut coder = OutputCoder::new(m, &core.hash);
                for l in 0..n {
                    let i = first + l;
                    inputs[l * ni..l * ni + ebits].copy_from_slice(&self.q[i * ebits..(i + 1) * ebits]);
                    core.garbler_labels(i, &mut inputs[l * ni + ebits..(l + 1) * ni]);
                }
                garbler.garble(first as u64, n, &inputs, &mut tables, &mut out0);
                for l in 0..n {
                    let i = first + l;
                    let zero = &out0[l * no..(l + 1) * no];
                    let ct = &mut cts[l * cts_per..(l + 1) * cts_per];
                    let rho = coder.encode_free(delta, &zero[..nfree], &weights[..nfree], i as u64, &mut ct[..nfree]);
                    // The remaining ρ makes the shares sum to f(x) − r: Σρ = r + offset.
                    let rest = m.sub(m.add(core.masks[i], layer.z.offset()), rho);
                    if layer.z.has_online_output() {
                        online.push((zero[nfree], rest));
                    } else {
                        let k = nfree;
                        let pair = coder.encode_fixed(delta, zero[k], weights[k], rest, i as u64, k);
                        ct[k..k + 2].copy_from_slice(&pair);
                    }
                }
                (tables, cts, online)
            })
            .collect();
        let mut table_bytes = Vec::with_capacity(layer.table_bytes(range.len()));
        let mut cts = Vec::with_capacity(range.len() * cts_per);
        for (tables, group_cts, online) in groups {
            put_blocks(&tables, &mut table_bytes);
            cts.extend(group_cts);
            self.online.extend(online);
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

    /// The garbler's output shares `r`, known from the offline phase on.
    pub fn output_shares(&self) -> &OutputShares {
        &self.core.masks
    }

    /// Bytes the garbler keeps until the online phase: its keys and seed, the output masks and
    /// the online decoding rows.
    pub fn stored_bytes(&self) -> usize {
        3 * 16 + KEY_BYTES + 8 * self.core.masks.len() + 24 * self.online.len()
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
        let coder = OutputCoder::new(m, &core.hash);
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
                let output = layer.z.offline_weights().len();
                online_cts.extend(coder.encode_fixed(delta, zero, w, rho, i as u64, output));
            }
        }
        put_u64s(&online_cts, &mut out);
        self.next += 1;
        Ok(out)
    }

    /// After the last chunk: the garbler's part is done; returns its output shares `r`.
    pub fn finish(self) -> Result<OutputShares> {
        check_chunk(Message::Reshare, self.core.layer.chunks(), self.next)?;
        Ok(self.core.masks)
    }
}

/// What the evaluator keeps through the phases (from the garbler's base-OT reply on, which
/// carries the layer's hash key).
struct EvaluatorCore {
    layer: Layer,
    hash: Tccr,
    offline_shares: Zeroizing<Vec<u64>>,
}

/// The evaluator, waiting for the garbler's base-OT points and hash key.
pub struct EvaluatorAwaitBase {
    layer: Layer,
    offline_shares: Zeroizing<Vec<u64>>,
    ot: OtChooser,
}
/// The evaluator, producing OT-extension column chunks.
pub struct EvaluatorExtending {
    core: EvaluatorCore,
    ot: OtReceiving,
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
        let c: Zeroizing<Vec<u64>> = Zeroizing::new((0..layer.values()).map(|_| m.random(rng)).collect());
        // The real choices are the bits of c, in OT order; the padding stays random.
        let mut bits = Zeroizing::new(Vec::with_capacity(layer.evaluator_ots().real));
        for &cv in c.iter() {
            to_bits(cv, m.bits(), &mut bits);
        }
        let (s, ot) = OtChooser::start(layer.evaluator_ots(), &bits, rng);
        (s, Self { layer, offline_shares: c, ot })
    }

    /// Finishes the base OTs with the garbler's points and takes the layer's hash key.
    pub fn receive_base(self, message: &[u8]) -> Result<EvaluatorExtending> {
        expect_len(Message::BaseReceiver, message, POINT_BYTES * KAPPA + KEY_BYTES)?;
        let (points, key) = message.split_at(POINT_BYTES * KAPPA);
        let ot = self.ot.receive_base(points)?;
        let hash = Tccr::from_key(key.try_into().expect("KEY_BYTES bytes"));
        let core = EvaluatorCore { layer: self.layer, hash, offline_shares: self.offline_shares };
        Ok(EvaluatorExtending { core, ot })
    }
}

impl EvaluatorExtending {
    /// Column chunks to send, [`Layer::ot_chunks`] of them.
    pub fn chunks(&self) -> usize {
        self.core.layer.ot_chunks()
    }

    /// Produces column chunk `chunk` (in order).
    pub fn columns(&mut self, chunk: usize) -> Result<Vec<u8>> {
        self.ot.columns(chunk)
    }

    /// Answers the garbler's challenge (after the last chunk).
    pub fn prove(self, challenge: &[u8]) -> Result<(Vec<u8>, EvaluatorAwaitTables)> {
        let (reply, t) = self.ot.prove(challenge)?;
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
        let state = EvaluatorAwaitLabels { core: self.core, t: self.t, tables: self.tables, output, next: 0 };
        Ok((messages, state))
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
        let (ebits, gbits) = (layer.ebits(), layer.gbits());
        let (ni, no, ands) = (ebits + gbits, layer.outputs(), layer.z.and_gates());
        let online = layer.z.has_online_output();
        let split = n * 16 * gbits;
        let mut glabels = Zeroizing::new(Vec::with_capacity(n * gbits));
        get_blocks(&message[..split], &mut glabels);
        let online_cts = get_u64s(&message[split..]);
        let (tables, cts) = &self.tables[chunk];
        let weights = layer.z.offline_weights();
        let nfree = weights.len() - usize::from(!online);
        let starts: Vec<usize> = range.clone().step_by(LANES).collect();
        // Lane groups are independent: evaluate them on every core, keep their order.
        let shares: Vec<Result<Vec<u64>>> = starts
            .par_iter()
            .map_init(
                // One evaluator and its buffers per worker, not per lane group.
                || {
                    let evaluator = Evaluator::new(layer.z.circuit(), &core.hash);
                    let buffers = [LANES * ni, LANES * no].map(|n| Zeroizing::new(vec![Block::ZERO; n]));
                    (evaluator, buffers, OutputCoder::new(m, &core.hash))
                },
                |(evaluator, [inputs, out], coder), &first| {
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
                    let mut shares = Vec::with_capacity(lanes);
                    for l in 0..lanes {
                        let (i, li) = (first + l, first + l - range.start);
                        let active = &out[l * no..(l + 1) * no];
                        let ct = &cts[li * layer.offline_cts()..][..layer.offline_cts()];
                        let mut share = coder.decode_free(&active[..nfree], &ct[..nfree], i as u64).map_err(|k| {
                            GcError::OutOfRange { message: Message::Tables, index: li * layer.offline_cts() + k }
                        })?;
                        let (row, index, message) = if online {
                            ([online_cts[2 * li], online_cts[2 * li + 1]], 2 * li, Message::Labels)
                        } else {
                            ([ct[nfree], ct[nfree + 1]], li * layer.offline_cts() + nfree, Message::Tables)
                        };
                        let last = coder
                            .decode_fixed(active[nfree], row, i as u64, nfree)
                            .ok_or(GcError::OutOfRange { message, index })?;
                        share = m.add(share, last);
                        shares.push(share);
                    }
                    Ok(shares)
                },
            )
            .collect();
        for group in shares {
            self.output.extend(group?);
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
    use std::collections::{HashMap, HashSet};

    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::hash::Log;

    /// What one hand-driven layer leaves behind.
    struct Run {
        /// The evaluator's output shares `f(x) − r`.
        out: Vec<u64>,
        /// The garbler's output shares `r`.
        masks: Vec<u64>,
        /// The hash key the garbler drew, and the one the evaluator received.
        keys: [[u8; KEY_BYTES]; 2],
        delta: Block,
        /// Every (tweak, input) the garbler's and the evaluator's hash saw, if recorded.
        logs: Option<[Log; 2]>,
    }

    /// Drives both roles by hand, with no channel.
    fn run(layer: &Layer, a: &[u64], b: &[u64], seed: u64, record: bool) -> Result<Run> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let logs = record.then(|| [Log::default(), Log::default()]);
        let mut g = GarblerAwaitBase::start(layer.clone(), &mut rng);
        if let Some([log, _]) = &logs {
            g.0.hash = g.0.hash.clone().recording(log.clone());
        }
        let delta = g.0.delta.block();
        let (s, e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        let (points, mut g) = g.receive_base(&s, &mut rng)?;
        let mut e = e.receive_base(&points)?;
        let keys = [g.core.hash.key(), e.core.hash.key()];
        if let Some([_, log]) = &logs {
            e.core.hash = e.core.hash.clone().recording(log.clone());
        }
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
        let offline_masks = g.output_shares().to_vec();
        let mut g = g.online(b.to_vec())?;
        let (reshares, mut e) = e.online(a)?;
        for (chunk, msg) in reshares.iter().enumerate() {
            e.receive_labels(chunk, &g.respond(chunk, msg)?)?;
        }
        let masks = g.finish()?;
        assert_eq!(format!("{masks:?}"), format!("OutputShares {{ len: {}, .. }}", layer.instances()));
        assert_eq!(masks[..], offline_masks[..], "the offline and final output shares agree");
        Ok(Run { out: e.finish()?, masks: masks.to_vec(), keys, delta, logs })
    }

    /// Random shares `a`, `b` for a layer.
    fn shares(layer: &Layer, rng: &mut ChaCha20Rng) -> (Vec<u64>, Vec<u64>) {
        let m = layer.circuit().modulus();
        let draw = |rng: &mut ChaCha20Rng| (0..layer.values()).map(|_| m.random(rng)).collect::<Vec<_>>();
        (draw(rng), draw(rng))
    }

    /// Every evaluator output is exactly `f(a + b) − r`.
    fn assert_exact(layer: &Layer, a: &[u64], b: &[u64], run: &Run) {
        let z = layer.circuit();
        let (m, k) = (z.modulus(), z.values());
        assert_eq!((run.out.len(), run.masks.len()), (layer.instances(), layer.instances()));
        for i in 0..layer.instances() {
            let x: Vec<u64> = (0..k).map(|j| m.add(a[i * k + j], b[i * k + j])).collect();
            if z.in_domain(&x) {
                assert_eq!(m.add(run.out[i], run.masks[i]), z.reference(&x), "{:?} t={} instance {i}", z.op(), m.t());
            }
        }
    }

    #[test]
    fn every_layer_kind_gives_f_of_x_minus_r() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        for t in [Modulus::tessera().t(), 97] {
            let m = Modulus::new(t).unwrap();
            for op in [
                Nonlinear::Relu,
                Nonlinear::ReluTrunc { shift: 3 },
                Nonlinear::MaxPool { window: 4, relu: false, shift: 0 },
            ] {
                let layer = Layer::new(op, m, 45).unwrap();
                let (a, b) = shares(&layer, &mut rng);
                assert_exact(&layer, &a, &b, &run(&layer, &a, &b, 5, false).unwrap());
            }
        }
    }

    /// Pearson's statistic of `counts` against `expected` per bucket.
    fn chi_square(counts: &[u32], expected: f64) -> f64 {
        counts.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum()
    }

    #[test]
    fn output_masks_are_drawn_uniformly_and_outputs_stay_exact() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        // t = 97: every residue appears, and the counts fit the uniform distribution
        // (96 degrees of freedom: mean 96, standard deviation 13.9; 170 is beyond 5 deviations).
        let m = Modulus::new(97).unwrap();
        let layer = Layer::new(Nonlinear::Relu, m, 97 * 40).unwrap();
        let (a, b) = shares(&layer, &mut rng);
        let small = run(&layer, &a, &b, 21, false).unwrap();
        assert_exact(&layer, &a, &b, &small);
        let mut counts = vec![0u32; 97];
        for &r in &small.masks {
            counts[r as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "every residue is drawn");
        let x2 = chi_square(&counts, 40.0);
        assert!(x2 < 170.0, "chi-square {x2:.1} over 96 degrees of freedom");

        // Tessera's t: the top four of 61 bits are uniform (15 degrees of freedom: 50 is
        // beyond p = 10^-5), the masks are all below t, and two runs share none.
        let m = Modulus::tessera();
        let layer = Layer::new(Nonlinear::Relu, m, 4096).unwrap();
        let (a, b) = shares(&layer, &mut rng);
        let runs = [run(&layer, &a, &b, 22, false).unwrap(), run(&layer, &a, &b, 23, false).unwrap()];
        let mut distinct = HashSet::new();
        for r in &runs {
            assert_exact(&layer, &a, &b, r);
            let mut counts = vec![0u32; 16];
            for &v in &r.masks {
                assert!(v < m.t());
                counts[(v >> (m.bits() - 4)) as usize] += 1;
                distinct.insert(v);
            }
            let x2 = chi_square(&counts, 4096.0 / 16.0);
            assert!(x2 < 50.0, "chi-square {x2:.1} of the high bits over 15 degrees of freedom");
        }
        assert_eq!(distinct.len(), 2 * 4096, "no mask repeats within or across runs");

        // Garblers seeded from the OS draw their own masks too.
        let os = [ChaCha20Rng::from_os_rng(), ChaCha20Rng::from_os_rng()].map(|mut rng| {
            let (s, _e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
            let g = GarblerAwaitBase::start(layer.clone(), &mut rng);
            assert_eq!(g.0.masks.len(), layer.instances());
            assert_eq!(s.len(), POINT_BYTES);
            g.0.masks.to_vec()
        });
        assert_ne!(os[0], os[1]);
    }

    #[test]
    fn attack_offline_hash_table_does_not_carry_across_sessions() {
        let m = Modulus::tessera();
        let layer = Layer::new(Nonlinear::Relu, m, 20).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let (a, b) = shares(&layer, &mut rng);
        let sessions = [run(&layer, &a, &b, 31, true).unwrap(), run(&layer, &a, &b, 32, true).unwrap()];

        // Within one key no tweak repeats: the garbler hashes every tweak with exactly one
        // label pair {L, L ⊕ Δ}, the evaluator once with one of the two, and the layer uses
        // 2·ANDs + outputs tweaks per instance.
        let per_instance = 2 * layer.circuit().and_gates() + layer.outputs();
        let mut layer_tweaks = Vec::new();
        for s in &sessions {
            assert_exact(&layer, &a, &b, s);
            assert_eq!(s.keys[0], s.keys[1], "the evaluator hashes under the garbler's key");
            let [garbler, evaluator] = s.logs.as_ref().unwrap();
            let mut by_tweak: HashMap<u128, HashSet<u128>> = HashMap::new();
            for &(t, x) in garbler.lock().unwrap().iter() {
                by_tweak.entry(t).or_default().insert(x.0);
            }
            for (t, xs) in &by_tweak {
                let xs: Vec<u128> = xs.iter().copied().collect();
                assert!(xs.len() == 2 && xs[0] ^ xs[1] == s.delta.0, "tweak {t:#x} hashes {} inputs", xs.len());
            }
            assert_eq!(by_tweak.len(), layer.instances() * per_instance);
            let mut once = HashSet::new();
            for &(t, x) in evaluator.lock().unwrap().iter() {
                assert!(once.insert(t), "the evaluator hashes tweak {t:#x} twice");
                assert!(by_tweak[&t].contains(&x.0), "the evaluator's label is one of the pair");
            }
            assert_eq!(once.len(), by_tweak.len());
            let mut tweaks: Vec<u128> = by_tweak.into_keys().collect();
            tweaks.sort_unstable();
            layer_tweaks.push(tweaks);
        }
        assert_eq!(layer_tweaks[0], layer_tweaks[1], "tweaks are public: the same in every session");
        assert_ne!(sessions[0].keys[0], sessions[1].keys[0], "keys are fresh per session");
        let tweaks = &layer_tweaks[0];

        // The attacker's table: chosen labels at every tweak the layer uses, hashed under the
        // best key it can have before a session starts (here even the previous session's).
        let chosen: Vec<Block> =
            (1..=8u128).map(|j| Block(j.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))).collect();
        let hashes = |h: &Tccr| -> Vec<u128> {
            let mut out = Vec::new();
            for &x in &chosen {
                let mut xs = vec![x; tweaks.len()];
                h.hash_many(&mut xs, tweaks);
                out.extend(xs.iter().map(|y| y.0));
            }
            out
        };
        let [first, second] = [0, 1].map(|k| Tccr::from_key(sessions[k].keys[0]));
        let table: HashSet<u128> = hashes(&first).into_iter().collect();
        assert_eq!(table.len(), chosen.len() * tweaks.len());
        let hits = hashes(&second).iter().filter(|y| table.contains(y)).count();
        assert_eq!(hits, 0, "a table from one session finds nothing in the next");
    }

    #[test]
    fn wrong_inputs_and_orders_are_typed_errors() {
        let m = Modulus::tessera();
        let layer = Layer::new(Nonlinear::Relu, m, 3).unwrap();
        assert!(matches!(Layer::new(Nonlinear::Relu, m, 0), Err(GcError::TooManyInstances { .. })));
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let g = GarblerAwaitBase::start(layer.clone(), &mut rng);
        let (s, e) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        assert!(matches!(
            g.receive_base(&s[..31], &mut rng),
            Err(GcError::WrongLength { message: Message::BaseSender, .. })
        ));
        let g = GarblerAwaitBase::start(layer.clone(), &mut rng);
        let (points, mut g) = g.receive_base(&s, &mut rng).unwrap();
        assert_eq!(points.len(), POINT_BYTES * KAPPA + KEY_BYTES);
        let (_, other) = EvaluatorAwaitBase::start(layer.clone(), &mut rng);
        assert!(matches!(
            other.receive_base(&points[..points.len() - 1]),
            Err(GcError::WrongLength { message: Message::BaseReceiver, .. })
        ));
        let mut e = e.receive_base(&points).unwrap();
        assert!(matches!(g.receive_columns(1, &[]), Err(GcError::OutOfOrder { .. })));
        let cols = e.columns(0).unwrap();
        assert!(matches!(g.receive_columns(0, &cols[1..]), Err(GcError::WrongLength { .. })));
    }
}
