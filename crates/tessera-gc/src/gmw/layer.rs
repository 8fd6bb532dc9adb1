//! One nonlinear layer among three parties that XOR-share every wire: its offline material
//! (input masks, AND triples) and its online evaluation, ending in additive shares of `Z_t`.

use std::sync::Arc;

use rand_core::{CryptoRng, RngCore};
use tessera_net::SessionId;
use zeroize::Zeroizing;

use super::mesh::{CHUNK_BLOCKS, Chunk, Mesh};
use super::schedule::Schedule;
use super::{CORRECTIONS, Peers, ROUND, SEEDS, SHIFTS, blame, exchange_both};
use crate::block::Block;
use crate::circuit::Gate;
use crate::error::{GcError, Input, Message, Result};
use crate::modulus::Modulus;
use crate::msgs::{expect_len, get_u64s, get_zt, put_u64s};
use crate::prg::Prg;
use crate::protocol::MAX_FRAME;
use crate::relu::{Nonlinear, ZtCircuit};

/// A nonlinear layer's shared circuit ([`ZtCircuit::shared`]) over `instances` instances,
/// evaluated bit-sliced: each wire is a vector of one bit per instance, padded to whole
/// blocks of 128 (the lanes).
#[derive(Clone, Debug)]
pub struct SharedLayer {
    z: Arc<ZtCircuit>,
    schedule: Arc<Schedule>,
    instances: usize,
}

impl SharedLayer {
    /// Validates the layer and builds its circuit and schedule.
    pub fn new(op: Nonlinear, modulus: Modulus, instances: usize) -> Result<Self> {
        let z = ZtCircuit::shared(op, modulus)?;
        let schedule = Schedule::of(z.circuit());
        let layer = Self { z: Arc::new(z), schedule: Arc::new(schedule), instances };
        // One round's shares of one AND gate must fit a frame.
        let maximum = MAX_FRAME as usize / 16 * 64;
        if instances == 0 || instances > maximum {
            return Err(GcError::TooManyInstances { actual: instances, maximum });
        }
        Ok(layer)
    }

    /// The circuit of one instance.
    pub fn circuit(&self) -> &ZtCircuit {
        &self.z
    }

    /// Instances (output values).
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Exchanges of the online evaluation before the conversion to additive shares (the
    /// circuit's AND depth).
    pub fn rounds(&self) -> usize {
        self.schedule.exchanges()
    }

    /// Bits per wire: the instances rounded up to whole blocks of 128.
    pub fn lanes(&self) -> usize {
        self.instances.div_ceil(128).max(1) * 128
    }

    /// 64-bit words per wire.
    fn words(&self) -> usize {
        self.lanes() / 64
    }
}

/// One party's offline material for one layer: its share of every input wire's mask and its
/// AND triples. Used once (the online phase consumes it); wiped on drop.
pub struct Prepared {
    layer: SharedLayer,
    /// This party's share of each input wire before the owners add their bits (wire-major).
    inputs: Zeroizing<Vec<u64>>,
    /// Triples `a`, `b`, `c` (each AND-major, `words` per AND).
    a: Zeroizing<Vec<u64>>,
    b: Zeroizing<Vec<u64>>,
    c: Zeroizing<Vec<u64>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("instances", &self.layer.instances).finish_non_exhaustive()
    }
}

/// The least significant bit of each block, packed 64 to a word.
fn lsb_words(blocks: &[Block]) -> Zeroizing<Vec<u64>> {
    let mut words = Zeroizing::new(vec![0u64; blocks.len().div_ceil(64)]);
    for (j, b) in blocks.iter().enumerate() {
        words[j / 64] |= u64::from(b.color()) << (j % 64);
    }
    words
}

/// Words as choice blocks (word `2k` the low half of block `k`).
fn blocks_of(words: &[u64]) -> Zeroizing<Vec<Block>> {
    Zeroizing::new(words.chunks_exact(2).map(|w| Block(u128::from(w[0]) | (u128::from(w[1]) << 64))).collect())
}

/// A peer's shifts: `expected` elements of `Z_t`.
fn shifts(bytes: &[u8], expected: usize, modulus: &Modulus) -> Result<Vec<u64>> {
    expect_len(Message::Shifts, bytes, 8 * expected)?;
    get_zt(Message::Shifts, bytes, modulus)
}

/// The position of party `other` among `party`'s peers (in increasing order).
fn peer_index(party: usize, other: usize) -> usize {
    if other < party { other } else { other - 1 }
}

/// The offline phase of one layer for this party: fresh seeds for the masks of its input
/// wires (one per peer), then AND triples from random OTs with both peers. Every party calls
/// it with the same layer.
pub async fn prepare<R: RngCore + CryptoRng + ?Sized>(
    mesh: &mut Mesh,
    peers: &mut Peers<'_>,
    session: SessionId,
    layer_id: u32,
    layer: SharedLayer,
    rng: &mut R,
) -> Result<Prepared> {
    let party = mesh.party();
    let words = layer.words();
    let z = layer.z.clone();
    // Input masks: the owner of a wire XORs both its seeds' streams into its bits, each peer
    // takes the stream of the seed it got; the three shares add up to the bits.
    let own = Zeroizing::new([Block::random(rng), Block::random(rng)]);
    let sent = Zeroizing::new(own.map(|s| s.to_bytes()));
    let got = exchange_both(peers, SEEDS, session, layer_id, [&sent[0], &sent[1]]).await?;
    let mut got_seeds = Zeroizing::new([Block::ZERO; 2]);
    for (i, (seed, bytes)) in got_seeds.iter_mut().zip(&got).enumerate() {
        blame(&*peers[i], expect_len(Message::Seeds, bytes, 16))?;
        *seed = Block::from_bytes(bytes.as_slice().try_into().expect("16 bytes"));
    }
    let mut inputs = Zeroizing::new(vec![0u64; z.circuit().inputs() * words]);
    let stream = |seed: Block, len: usize| -> Zeroizing<Vec<u64>> {
        let mut blocks = Zeroizing::new(vec![Block::ZERO; len.div_ceil(2)]);
        Prg::new(seed).fill(&mut blocks);
        Zeroizing::new(blocks.iter().flat_map(|b| [b.0 as u64, (b.0 >> 64) as u64]).take(len).collect())
    };
    for owner in 0..3 {
        let range = z.shared_inputs(owner);
        let span = &mut inputs[range.start * words..range.end * words];
        let seeds: Vec<Block> = if owner == party { own.to_vec() } else { vec![got_seeds[peer_index(party, owner)]] };
        for seed in seeds {
            let len = span.len();
            for (x, s) in span.iter_mut().zip(stream(seed, len).iter()) {
                *x ^= s;
            }
        }
    }
    // Triples: c = a·b with a, b uniform and XOR-shared; each cross product a_i·b_j by one
    // random OT from i to j on choice b_j, i correcting the OT's offset to a_i.
    let ands = z.and_gates();
    let total = ands * words;
    let mut a = Zeroizing::new(vec![0u64; total]);
    let mut b = Zeroizing::new(vec![0u64; total]);
    let mut fill = |v: &mut [u64]| v.iter_mut().for_each(|x| *x = rng.next_u64());
    fill(&mut a);
    fill(&mut b);
    let mut c = Zeroizing::new(a.iter().zip(b.iter()).map(|(&x, &y)| x & y).collect::<Vec<u64>>());
    let blocks = total / 2;
    let mut start = 0;
    while start < blocks {
        let end = (start + CHUNK_BLOCKS).min(blocks);
        let span = 2 * start..2 * end;
        let choices = blocks_of(&b[span.clone()]);
        let chunks = mesh.extend(peers, session, layer_id, [&choices, &choices], [end - start; 2]).await?;
        let mut corrections: [Vec<u8>; 2] = Default::default();
        for (chunk, message) in chunks.iter().zip(&mut corrections) {
            let (m0, m1) = (lsb_words(&chunk.sent0), lsb_words(&chunk.sent1));
            let u: Vec<u64> = (0..m0.len()).map(|k| m0[k] ^ m1[k] ^ a[span.start + k]).collect();
            for (ck, m) in c[span.clone()].iter_mut().zip(m0.iter()) {
                *ck ^= m;
            }
            put_u64s(&u, message);
        }
        let received = exchange_both(peers, CORRECTIONS, session, layer_id, [&corrections[0], &corrections[1]]).await?;
        for (i, (chunk, bytes)) in chunks.iter().zip(&received).enumerate() {
            blame(&*peers[i], expect_len(Message::Corrections, bytes, 8 * span.len()))?;
            let u = get_u64s(bytes);
            let r = lsb_words(&chunk.received);
            for k in 0..span.len() {
                c[span.start + k] ^= r[k] ^ (b[span.start + k] & u[k]);
            }
        }
        start = end;
    }
    Ok(Prepared { layer, inputs, a, b, c })
}

/// The online phase of one layer for this party, on its additive shares (`values` per
/// instance, instance-major): the circuit round by round, then the conversion of the output
/// bits to additive shares. Returns this party's share of each instance's `f(x)`.
pub async fn evaluate(
    mesh: &mut Mesh,
    peers: &mut Peers<'_>,
    session: SessionId,
    layer_id: u32,
    prepared: Prepared,
    shares: &[u64],
) -> Result<Vec<u64>> {
    let party = mesh.party();
    let Prepared { layer, inputs, a, b, c } = prepared;
    let (z, schedule, words) = (layer.z.clone(), layer.schedule.clone(), layer.words());
    let m = z.modulus();
    let values = z.values();
    if shares.len() != layer.instances * values {
        return Err(GcError::WrongCount {
            input: Input::Shares,
            expected: layer.instances * values,
            actual: shares.len(),
        });
    }
    if let Some(index) = shares.iter().position(|&s| s >= m.t()) {
        return Err(GcError::InputOutOfRange { input: Input::Shares, index });
    }
    let circuit = z.circuit();
    let mut wires = Zeroizing::new(vec![0u64; circuit.wires() * words]);
    wires[..inputs.len()].copy_from_slice(&inputs);
    let range = z.shared_inputs(party);
    let mut bits = Zeroizing::new(Vec::with_capacity(range.len()));
    for (i, s) in shares.chunks_exact(values).enumerate() {
        bits.clear();
        z.shared_input_bits(party, s, &mut bits);
        for (k, &bit) in bits.iter().enumerate() {
            wires[(range.start + k) * words + i / 64] ^= u64::from(bit) << (i % 64);
        }
    }
    let offset = circuit.inputs();
    for round in schedule.rounds() {
        for &g in &round.free {
            let o = (offset + g as usize) * words;
            match circuit.gates()[g as usize] {
                Gate::Xor(x, y) => {
                    for k in 0..words {
                        wires[o + k] = wires[x as usize * words + k] ^ wires[y as usize * words + k];
                    }
                }
                Gate::Not(x) => {
                    let flip = if party == 0 { u64::MAX } else { 0 };
                    for k in 0..words {
                        wires[o + k] = wires[x as usize * words + k] ^ flip;
                    }
                }
                Gate::And(..) => unreachable!("AND gates are in the exchange"),
            }
        }
        // Split a round wider than a frame; every party splits it alike.
        let per_frame = (MAX_FRAME as usize / (16 * words)).max(1);
        for group in round.ands.chunks(per_frame) {
            let mut message = Zeroizing::new(Vec::with_capacity(group.len() * 2 * words));
            for &g in group {
                let Gate::And(x, y) = circuit.gates()[g as usize] else { unreachable!("an AND gate") };
                let t = schedule.triple(g) * words;
                message.extend((0..words).map(|k| wires[x as usize * words + k] ^ a[t + k]));
                message.extend((0..words).map(|k| wires[y as usize * words + k] ^ b[t + k]));
            }
            let mut bytes = Vec::new();
            put_u64s(&message, &mut bytes);
            let received = exchange_both(peers, ROUND, session, layer_id, [&bytes, &bytes]).await?;
            let mut opened = message;
            for (i, bytes) in received.iter().enumerate() {
                blame(&*peers[i], expect_len(Message::Round, bytes, 8 * opened.len()))?;
                let theirs = get_u64s(bytes);
                opened.iter_mut().zip(&theirs).for_each(|(o, t)| *o ^= t);
            }
            for (n, &g) in group.iter().enumerate() {
                let t = schedule.triple(g) * words;
                let o = (offset + g as usize) * words;
                let (d, e) =
                    (&opened[2 * n * words..(2 * n + 1) * words], &opened[(2 * n + 1) * words..(2 * n + 2) * words]);
                for k in 0..words {
                    let de = if party == 0 { d[k] & e[k] } else { 0 };
                    wires[o + k] = c[t + k] ^ (d[k] & b[t + k]) ^ (e[k] & a[t + k]) ^ de;
                }
            }
        }
    }
    let outputs: Vec<&[u64]> =
        circuit.outputs().iter().map(|&w| &wires[w as usize * words..(w as usize + 1) * words]).collect();
    to_additive(mesh, peers, session, layer_id, &layer, &outputs).await
}

/// The output bits' XOR shares to additive shares of `Σ w_k·y_k − offset`, per instance.
///
/// With `y = y_0 ⊕ y_1 ⊕ y_2`: parties 0 and 2 first turn `w·(y_0 ⊕ y_2) = w·y_0 + w·y_2 −
/// 2w·y_0·y_2` into additive shares `d_0 + d_2`, the product by one random OT from 0 to 2 on
/// choice `y_2`; then `w·y = (d_0 + d_2) + w·y_1 − 2·y_1·(d_0 + d_2)`, the products by one OT
/// from 0 to 1 and one from 2 to 1 on choice `y_1`. Each OT's sender sends `m_1 − m_0 + x`
/// for its value `x`; the receiver's `m_y − y·(m_1 − m_0 + x) = m_0 − y·x`.
async fn to_additive(
    mesh: &mut Mesh,
    peers: &mut Peers<'_>,
    session: SessionId,
    layer_id: u32,
    layer: &SharedLayer,
    outputs: &[&[u64]],
) -> Result<Vec<u64>> {
    let party = mesh.party();
    let z = &layer.z;
    let m = z.modulus();
    let weights = z.offline_weights();
    let lanes = layer.lanes();
    let blocks_per_bit = lanes / 128;
    let blocks = outputs.len() * blocks_per_bit;
    let mut share = Zeroizing::new(vec![0u64; lanes]);
    // Bit `i` of a wire as a mask: all ones or zero, for selections without a branch.
    let bit = |words: &[u64], i: usize| 0u64.wrapping_sub((words[i / 64] >> (i % 64)) & 1);
    let zt = |b: Block| m.reduce_u128(b.0);
    // The OTs in output-bit-major order (`k·lanes + i`), chunked like any extension.
    let mut start = 0;
    while start < blocks {
        let end = (start + CHUNK_BLOCKS).min(blocks);
        let count = end - start;
        // The receivers' choices: their shares of the output bits (party 0 receives none).
        let choices: Zeroizing<Vec<Block>> = Zeroizing::new(if party == 0 {
            Vec::new()
        } else {
            (start..end)
                .map(|block| {
                    let (k, w) = (block / blocks_per_bit, 2 * (block % blocks_per_bit));
                    blocks_of(&outputs[k][w..w + 2])[0]
                })
                .collect()
        });
        // Who receives from whom: 2 from 0, 1 from 0 and from 2.
        let (choices, sent): ([&[Block]; 2], [usize; 2]) = match party {
            0 => ([&[], &[]], [count, count]),
            1 => ([&choices, &choices], [0, 0]),
            _ => ([&choices, &[]], [0, count]),
        };
        let chunks: [Chunk; 2] = mesh.extend(peers, session, layer_id, choices, sent).await?;
        let ots = (0..count * 128).map(|j| (j, (start * 128 + j) / lanes, (start * 128 + j) % lanes));
        match party {
            0 => {
                // Peer 1 is party 2, peer 0 party 1.
                let (to2, to1) = (&chunks[1], &chunks[0]);
                let mut shift2 = Vec::with_capacity(count * 128);
                let mut shift1 = Vec::with_capacity(count * 128);
                for (j, k, i) in ots {
                    let s = &mut share[i];
                    let wy = weights[k] & bit(outputs[k], i);
                    let (r0, r1) = (zt(to2.sent0[j]), zt(to2.sent1[j]));
                    shift2.push(m.add(m.sub(r1, r0), m.add(wy, wy)));
                    let d = m.sub(wy, r0);
                    let (s0, s1) = (zt(to1.sent0[j]), zt(to1.sent1[j]));
                    shift1.push(m.add(m.sub(s1, s0), m.add(d, d)));
                    *s = m.add(*s, m.sub(d, s0));
                }
                let [p1, p2] = &mut *peers;
                for (peer, values) in [(p2, &shift2), (p1, &shift1)] {
                    let mut bytes = Vec::new();
                    put_u64s(values, &mut bytes);
                    peer.send(SHIFTS, session, layer_id, &bytes).await?;
                }
            }
            1 => {
                let [p0, p2] = &mut *peers;
                let bytes = p0.recv(SHIFTS, session, layer_id).await?;
                let from0 = blame(p0, shifts(&bytes, count * 128, &m))?;
                let bytes = p2.recv(SHIFTS, session, layer_id).await?;
                let from2 = blame(p2, shifts(&bytes, count * 128, &m))?;
                for (j, k, i) in ots {
                    let s = &mut share[i];
                    let y = bit(outputs[k], i);
                    let mut v = weights[k] & y;
                    for (chunk, shift) in [(&chunks[0], &from0), (&chunks[1], &from2)] {
                        let got = zt(chunk.received[j]);
                        v = m.add(v, m.sub(got, shift[j] & y));
                    }
                    *s = m.add(*s, v);
                }
            }
            _ => {
                let [p0, p1] = &mut *peers;
                let bytes = p0.recv(SHIFTS, session, layer_id).await?;
                let from0 = blame(p0, shifts(&bytes, count * 128, &m))?;
                let mut shift1 = Vec::with_capacity(count * 128);
                for (j, k, i) in ots {
                    let s = &mut share[i];
                    let y = bit(outputs[k], i);
                    let got = zt(chunks[0].received[j]);
                    let d = m.add(weights[k] & y, m.sub(got, from0[j] & y));
                    let (s0, s1) = (zt(chunks[1].sent0[j]), zt(chunks[1].sent1[j]));
                    shift1.push(m.add(m.sub(s1, s0), m.add(d, d)));
                    *s = m.add(*s, m.sub(d, s0));
                }
                let mut bytes = Vec::new();
                put_u64s(&shift1, &mut bytes);
                p1.send(SHIFTS, session, layer_id, &bytes).await?;
            }
        }
        start = end;
    }
    share.truncate(layer.instances);
    if party == 0 && z.offset() != 0 {
        share.iter_mut().for_each(|s| *s = m.sub(*s, z.offset()));
    }
    Ok(share.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gmw::tests::triangle;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use tessera_net::{Channel, Wiretap};

    /// Every wire of instance `i` in the clear, from the three parties' shares.
    fn plain_wires(z: &ZtCircuit, shares: &[Vec<u64>; 3], i: usize) -> Vec<bool> {
        let (c, v) = (z.circuit(), z.values());
        let mut w = vec![false; c.wires()];
        for (p, s) in shares.iter().enumerate() {
            let mut bits = Vec::new();
            z.shared_input_bits(p, &s[i * v..(i + 1) * v], &mut bits);
            w[z.shared_inputs(p)].copy_from_slice(&bits);
        }
        for (g, gate) in c.gates().iter().enumerate() {
            w[c.inputs() + g] = match *gate {
                Gate::Xor(a, b) => w[a as usize] ^ w[b as usize],
                Gate::And(a, b) => w[a as usize] & w[b as usize],
                Gate::Not(a) => !w[a as usize],
            };
        }
        w
    }

    /// Any two parties (each pair in turn) pool everything they hold and receive: their triple
    /// shares and the opened `d = x ⊕ a`, `e = y ⊕ b` of every AND gate of every round. Their
    /// best guess of each gate's inputs, `d ⊕ a_i ⊕ a_j` and `e ⊕ b_i ⊕ b_j`, agrees with the
    /// true wires at chance level (±6σ over 362,496 bits); with the third party's triple share
    /// it is exact (the control that shows the attack reads the view right).
    #[tokio::test]
    async fn attack_two_parties_pooling_openings_and_triples_read_no_wire() {
        let m = Modulus::tessera();
        let layer = SharedLayer::new(Nonlinear::ReluTrunc { shift: 8 }, m, 512).unwrap();
        let z = layer.circuit().clone();
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut shares: [Vec<u64>; 3] = Default::default();
        for _ in 0..layer.instances() {
            let x = m.sub(rng.random_range(0..1u64 << 40), 1 << 39);
            let (a, b) = (m.random(&mut rng), m.random(&mut rng));
            shares[0].push(a);
            shares[1].push(b);
            shares[2].push(m.sub(m.sub(x, a), b));
        }
        let [mut l0, mut l1, l2] = triangle();
        let taps = [Wiretap::new(), Wiretap::new()];
        for (links, tap) in [&mut l0, &mut l1].into_iter().zip(&taps) {
            links.iter_mut().for_each(|c| c.tap(tap.clone()));
        }
        let party = |p: usize, links: [Channel; 2], layer: SharedLayer, shares: Vec<u64>| async move {
            let [mut a, mut b] = links;
            let mut peers: Peers = [&mut a, &mut b];
            let session = SessionId([3; 16]);
            let mut rng = ChaCha20Rng::from_os_rng();
            let mut mesh = Mesh::connect(p, &mut peers, session, &mut rng).await.unwrap();
            let prepared = prepare(&mut mesh, &mut peers, session, 0, layer, &mut rng).await.unwrap();
            let triple = [prepared.a.to_vec(), prepared.b.to_vec()];
            evaluate(&mut mesh, &mut peers, session, 0, prepared, &shares).await.unwrap();
            triple
        };
        let (t0, t1, t2) = tokio::join!(
            party(0, l0, layer.clone(), shares[0].clone()),
            party(1, l1, layer.clone(), shares[1].clone()),
            party(2, l2, layer.clone(), shares[2].clone())
        );
        // Every round's openings, in order, from each party (what the other two received).
        let rounds_from = |tap: &Wiretap, from: &str| -> Vec<Vec<u64>> {
            let frames = tap.frames().into_iter().filter(|f| f.header.kind == super::super::ROUND && f.from == from);
            frames
                .map(|f| f.payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect())
                .collect()
        };
        let opened = [rounds_from(&taps[1], "p0"), rounds_from(&taps[0], "p1"), rounds_from(&taps[0], "p2")];
        let words = layer.words();
        let rounds: Vec<_> = layer.schedule.rounds().iter().filter(|r| !r.ands.is_empty()).collect();
        assert!(opened.iter().all(|o| o.len() == rounds.len()), "one opening per round from each party");
        let wires: Vec<Vec<bool>> = (0..layer.instances()).map(|i| plain_wires(&z, &shares, i)).collect();
        let triples = [t0, t1, t2];
        for (i, j, k) in [(0, 1, 2), (0, 2, 1), (1, 2, 0)] {
            let (mut agree, mut total) = (0usize, 0usize);
            for (r, round) in rounds.iter().enumerate() {
                for (n, &g) in round.ands.iter().enumerate() {
                    let Gate::And(x, y) = z.circuit().gates()[g as usize] else { unreachable!() };
                    let t = layer.schedule.triple(g) * words;
                    // d = x ⊕ a at 2n, e = y ⊕ b at 2n + 1.
                    for (half, wire) in [(0, x), (1, y)] {
                        for (l, w) in wires.iter().enumerate() {
                            let (word, bit) = ((2 * n + half) * words + l / 64, l % 64);
                            let share = |p: usize| triples[p][half][t + l / 64] >> bit & 1;
                            let open = (opened[0][r][word] ^ opened[1][r][word] ^ opened[2][r][word]) >> bit & 1;
                            let guess = open ^ share(i) ^ share(j);
                            let truth = u64::from(w[wire as usize]);
                            assert_eq!(guess ^ share(k), truth, "with all three triple shares");
                            agree += usize::from(guess == truth);
                            total += 1;
                        }
                    }
                }
            }
            let (frac, sigma) = (agree as f64 / total as f64, 0.5 / (total as f64).sqrt());
            assert!((frac - 0.5).abs() < 6.0 * sigma, "parties {i}, {j} guess {frac:.3} of {total} wire bits");
        }
    }
}
