//! Three-party evaluation of the shared circuits ([`ZtCircuit::shared`](crate::relu::ZtCircuit::shared)) secure against any
//! two of the three parties together (semi-honest): the GMW protocol (Goldreich, Micali and
//! Wigderson, STOC 1987) with AND triples from pairwise OT.
//!
//! Every wire is XOR-shared by parties 0, 1 and 2. A party enters its input bits XORed with
//! the streams of two fresh seeds it sends its peers offline, who take those streams as their
//! shares: an input costs nothing online. XOR and NOT are local (party 0 flips for NOT). An AND
//! gate `z = x ∧ y` consumes a triple `c = a ∧ b` (`a`, `b` uniform and XOR-shared): every
//! party broadcasts `x_i ⊕ a_i` and `y_i ⊕ b_i`, and with the opened `d`, `e` takes
//! `z_i = c_i ⊕ d·b_i ⊕ e·a_i` (party 0 also `⊕ d·e`). The gates of one AND depth share one
//! exchange, bit-sliced over the layer's instances ([`schedule`]).
//!
//! **Triples** (offline): each party draws `a_i`, `b_i`; `c = a·b` needs the cross products
//! `a_i·b_j` of every ordered pair, one random OT each from `i` to `j` on choice `b_j`
//! ([`Mesh`]): with messages `m_0`, `m_1`, `i` sends `u = m_0 ⊕ m_1 ⊕ a_i` and keeps `m_0`,
//! `j` keeps `m_{b_j} ⊕ b_j·u = m_0 ⊕ a_i·b_j`. Six OTs per AND gate: 96 B of OT-extension
//! columns and 6 bits of corrections among the three parties.
//!
//! **Output** (online): the output bits' XOR shares become additive shares of
//! `Σ w_k·y_k` in `Z_t` ([`ZtCircuit::offline_weights`](crate::relu::ZtCircuit::offline_weights)) with three random OTs per bit
//! (`layer::to_additive`): no circuit adds a mask.
//!
//! **Who sees what.** A party receives only: seeds (uniform), OT-extension columns and base-OT
//! points (uniform given its own keys), OT corrections `m_0 ⊕ m_1 ⊕ a_i` (masked by the hash
//! of an OT message it does not hold), the openings `x_i ⊕ a_i`, `y_i ⊕ b_i` (masked by the
//! sender's triple share, fresh per gate and instance), and in the conversion `m_1 − m_0 + x`
//! (masked by the sender's other message). Two parties together hold two of the three
//! shares of every wire, every triple and every input, and miss the third: its shares and
//! triples are uniform given theirs, so their joint view is simulated from their own inputs
//! and outputs. The openings `d`, `e` are uniform because `a`, `b` are (each triple is used
//! once), whatever two of the parties know.

mod layer;
mod mesh;
pub mod schedule;

pub use layer::{Prepared, SharedLayer, evaluate, prepare};
pub use mesh::Mesh;

use tessera_net::{Channel, MessageKind, SessionId};

use crate::error::{GcError, Result};

/// Base OT, each party to each peer: its point `S` (as the receiver of the peer's OTs).
pub const MESH_BASE: MessageKind = MessageKind(0x0A10);
/// Base OT, each party to each peer: its points `R_i` and its hash key (as a sender).
pub const MESH_REPLY: MessageKind = MessageKind(0x0A11);
/// Offline, per layer: a fresh seed for the peer's shares of this party's input wires.
pub const SEEDS: MessageKind = MessageKind(0x0A12);
/// OT-extension columns, per chunk, each party to each peer.
pub const COLUMNS: MessageKind = MessageKind(0x0A13);
/// Offline, per chunk: the triple OTs' corrections `m_0 ⊕ m_1 ⊕ a_i`.
pub const CORRECTIONS: MessageKind = MessageKind(0x0A14);
/// Online, per round: the openings `x_i ⊕ a_i`, `y_i ⊕ b_i` of the round's AND gates.
pub const ROUND: MessageKind = MessageKind(0x0A15);
/// Online, per chunk of output bits: the conversion OTs' shifts `m_1 − m_0 + x`.
pub const SHIFTS: MessageKind = MessageKind(0x0A16);

/// Bytes of a [`MESH_BASE`] frame.
pub const BASE_BYTES: usize = crate::ot::base::POINT_BYTES;
/// Bytes of a [`MESH_REPLY`] frame.
pub const REPLY_BYTES: usize = crate::ot::extension::KAPPA * crate::ot::base::POINT_BYTES + crate::hash::KEY_BYTES;
/// Bytes of a [`SEEDS`] frame.
pub const SEED_BYTES: usize = 16;
/// The largest [`COLUMNS`] frame: one chunk of OT-extension columns.
pub const MAX_COLUMNS: usize = crate::ot::extension::KAPPA * mesh::CHUNK_BLOCKS * 16;
/// The largest [`CORRECTIONS`] frame: one bit per OT of a chunk.
pub const MAX_CORRECTIONS: usize = mesh::CHUNK_BLOCKS * 16;
/// The largest [`SHIFTS`] frame: one element of `Z_t` per OT of a chunk.
pub const MAX_SHIFTS: usize = mesh::CHUNK_BLOCKS * 128 * 8;

/// A party's channels to its two peers, in increasing party order.
pub type Peers<'a> = [&'a mut Channel; 2];

/// Names peer `peer` as the sender of what made `result` fail (a malformed message); channel
/// errors name their peer already.
pub(crate) fn blame<T>(peer: &Channel, result: Result<T>) -> Result<T> {
    result.map_err(|e| match e {
        GcError::Net(_) | GcError::Peer { .. } => e,
        e => GcError::Peer { peer: peer.peer().to_string(), source: Box::new(e) },
    })
}

/// Sends `messages[i]` to peer `i` and receives one frame of the same kind from each, all at
/// once.
pub(crate) async fn exchange_both(
    peers: &mut Peers<'_>,
    kind: MessageKind,
    session: SessionId,
    layer: u32,
    messages: [&[u8]; 2],
) -> Result<[Vec<u8>; 2]> {
    let [p0, p1] = peers;
    let [m0, m1] = messages;
    let (r0, r1) = tokio::join!(p0.exchange(kind, session, layer, m0), p1.exchange(kind, session, layer, m1));
    Ok([r0?, r1?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modulus::Modulus;
    use crate::relu::{Nonlinear, ZtCircuit};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::time::Duration;

    /// Channels of three parties: `links[p]` are party `p`'s to its peers in increasing order.
    pub(crate) fn triangle() -> [[Channel; 2]; 3] {
        let pair = |a: &str, b: &str| Channel::pair(a, b, Duration::from_secs(30), 1 << 24);
        let (c01, c10) = pair("p0", "p1");
        let (c02, c20) = pair("p0", "p2");
        let (c12, c21) = pair("p1", "p2");
        [[c01, c02], [c10, c12], [c20, c21]]
    }

    /// Shares of values `x` (signed, small) as three uniform shares, instance-major.
    fn share(m: Modulus, x: &[i64], rng: &mut ChaCha20Rng) -> [Vec<u64>; 3] {
        let mut s: [Vec<u64>; 3] = Default::default();
        for &v in x {
            let v = if v < 0 { m.t() - v.unsigned_abs() } else { v as u64 };
            let (a, b) = (m.random(rng), m.random(rng));
            s[0].push(a);
            s[1].push(b);
            s[2].push(m.sub(m.sub(v, a), b));
        }
        s
    }

    /// Runs `layers` (op, instances) in order over one mesh; returns each layer's inputs `x`
    /// and the three parties' output shares.
    pub(crate) async fn run(layers: &[(Nonlinear, usize)], seed: u64) -> Vec<(Vec<u64>, [Vec<u64>; 3])> {
        let m = Modulus::tessera();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut inputs = Vec::new();
        for &(op, instances) in layers {
            let layer = SharedLayer::new(op, m, instances).unwrap();
            let x: Vec<i64> =
                (0..instances * layer.circuit().values()).map(|_| rng.random_range(-(1 << 40)..1 << 40)).collect();
            let xs: Vec<u64> = x.iter().map(|&v| if v < 0 { m.t() - v.unsigned_abs() } else { v as u64 }).collect();
            inputs.push((layer, xs, share(m, &x, &mut rng)));
        }
        let [l0, l1, l2] = triangle();
        let party = |p: usize, links: [Channel; 2], inputs: Vec<(SharedLayer, Vec<u64>, [Vec<u64>; 3])>| async move {
            let [mut a, mut b] = links;
            let mut peers: Peers = [&mut a, &mut b];
            let session = SessionId([7; 16]);
            let mut rng = ChaCha20Rng::seed_from_u64(100 + p as u64);
            let mut mesh = Mesh::connect(p, &mut peers, session, &mut rng).await.unwrap();
            let mut prepared = Vec::new();
            for (i, (layer, _, _)) in inputs.iter().enumerate() {
                prepared
                    .push(prepare(&mut mesh, &mut peers, session, i as u32, layer.clone(), &mut rng).await.unwrap());
            }
            let mut out = Vec::new();
            for (i, (prep, (_, _, shares))) in prepared.into_iter().zip(&inputs).enumerate() {
                out.push(evaluate(&mut mesh, &mut peers, session, i as u32, prep, &shares[p]).await.unwrap());
            }
            out
        };
        let (o0, o1, o2) =
            tokio::join!(party(0, l0, inputs.clone()), party(1, l1, inputs.clone()), party(2, l2, inputs.clone()));
        inputs
            .into_iter()
            .zip(o0.into_iter().zip(o1).zip(o2))
            .map(|((_, xs, _), ((a, b), c))| (xs, [a, b, c]))
            .collect()
    }

    /// Bytes all three parties send for one ReLU-with-rounding layer, per instance, against the
    /// per-ReLU budget in docs/gc.md: 96 B of OT columns and 6 bits of corrections per AND
    /// offline; 12 bits of openings per AND, and 48 B of OT columns and 24 B of shifts per output
    /// bit online (frame headers on top).
    #[tokio::test]
    async fn bytes_per_relu_are_the_documented_ones() {
        let m = Modulus::tessera();
        let layer = SharedLayer::new(Nonlinear::ReluTrunc { shift: 8 }, m, 1024).unwrap();
        let (ands, outputs) = (layer.circuit().and_gates() as f64, layer.circuit().offline_weights().len() as f64);
        assert_eq!((ands, outputs), (354.0, 52.0));
        let links = triangle();
        let party = |p: usize, links: [Channel; 2], layer: SharedLayer| async move {
            let [mut a, mut b] = links;
            let mut peers: Peers = [&mut a, &mut b];
            let session = SessionId([9; 16]);
            let mut rng = ChaCha20Rng::seed_from_u64(40 + p as u64);
            let mut mesh = Mesh::connect(p, &mut peers, session, &mut rng).await.unwrap();
            let sent = |peers: &Peers| peers.iter().map(|c| c.meter().bytes_sent).sum::<u64>() as f64;
            let start = sent(&peers);
            let prepared = prepare(&mut mesh, &mut peers, session, 0, layer.clone(), &mut rng).await.unwrap();
            let offline = sent(&peers) - start;
            let shares = vec![1u64; layer.instances()];
            evaluate(&mut mesh, &mut peers, session, 0, prepared, &shares).await.unwrap();
            (offline, sent(&peers) - start - offline)
        };
        let [l0, l1, l2] = links;
        let (a, b, c) =
            tokio::join!(party(0, l0, layer.clone()), party(1, l1, layer.clone()), party(2, l2, layer.clone()));
        let n = layer.instances() as f64;
        let (offline, online) = ((a.0 + b.0 + c.0) / n, (a.1 + b.1 + c.1) / n);
        let (expected_offline, expected_online) =
            (ands * (96.0 + 6.0 / 8.0), ands * 12.0 / 8.0 + outputs * (48.0 + 24.0));
        println!(
            "bytes per ReLU: offline {offline:.0} (budget {expected_offline:.0}), online {online:.0} (budget {expected_online:.0})"
        );
        assert!((offline / expected_offline - 1.0).abs() < 0.01, "offline {offline:.0} per ReLU");
        // Above the payloads by the frame headers only: 184 rounds and a few conversion frames.
        assert!(online >= expected_online && online < expected_online * 1.02, "online {online:.0} per ReLU");
    }

    #[tokio::test]
    async fn three_parties_compute_every_nonlinear_layer_exactly() {
        let m = Modulus::tessera();
        let layers = [
            // 5,000 instances: the conversion OTs take two chunks, split inside an output bit.
            (Nonlinear::ReluTrunc { shift: 8 }, 5000),
            (Nonlinear::Relu, 129),
            (Nonlinear::MaxPool { window: 4, relu: true, shift: 8 }, 70),
            (Nonlinear::MaxPool { window: 2, relu: false, shift: 0 }, 5),
        ];
        for ((op, instances), (xs, shares)) in layers.iter().zip(run(&layers, 1).await) {
            let z = ZtCircuit::shared(*op, m).unwrap();
            assert!(shares.iter().all(|s| s.len() == *instances));
            for (i, x) in xs.chunks(z.values()).enumerate() {
                let got = m.add(m.add(shares[0][i], shares[1][i]), shares[2][i]);
                assert_eq!(got, z.reference(x), "{op:?} instance {i}");
            }
        }
    }
}
