//! Garbling with free-XOR and half-gates (Zahur, Rosulek and Evans, "Two halves make a whole",
//! EUROCRYPT 2015, eprint 2014/756), point-and-permute, and the per-layer-keyed hash of
//! [`crate::hash`].
//!
//! An AND gate `c = a ∧ b` with zero labels `A`, `B`, colors `p_a`, `p_b` and tweaks `j`, `j' = j + 1`
//! costs two ciphertexts and four hashes:
//! `T_G = H(A, j) ⊕ H(A ⊕ Δ, j) ⊕ p_b·Δ`, `T_E = H(B, j') ⊕ H(B ⊕ Δ, j') ⊕ A`, and
//! `C = H(A, j) ⊕ p_a·T_G ⊕ H(B, j') ⊕ p_b·(T_E ⊕ A)`. XOR and NOT cost nothing.
//!
//! Instances are garbled in *lanes*: up to [`LANES`] copies of one circuit gate by gate, so every
//! AND gate hands `4·LANES` blocks to AES at once. The tweak of AND gate `g` of instance `i` is
//! `and_tweak(i, g)` of [`crate::hash`]: unique under the layer's hash key, which is as fresh as `Δ`.

use zeroize::Zeroizing;

use crate::block::{Block, Delta};
use crate::circuit::{Circuit, Gate};
use crate::hash::{Tccr, and_tweak};

/// Instances garbled (and evaluated) side by side.
pub const LANES: usize = 16;

/// Copies instance-major labels (`n × per`) into wire-major lanes (`per × n`).
pub(crate) fn to_lanes(src: &[Block], n: usize, per: usize, wires: &mut [Block]) {
    for l in 0..n {
        for k in 0..per {
            wires[k * n + l] = src[l * per + k];
        }
    }
}

/// Copies the output labels of `n` lanes into instance-major order.
pub(crate) fn from_lanes(circuit: &Circuit, wires: &[Block], n: usize, outputs: &mut [Block]) {
    let no = circuit.outputs().len();
    for l in 0..n {
        for (o, &w) in circuit.outputs().iter().enumerate() {
            outputs[l * no + o] = wires[w as usize * n + l];
        }
    }
}

/// Garbles instances of one circuit under one `Δ` and hash key, reusing its buffers (wiped on
/// drop). An instance number must not be garbled twice under one key.
pub struct Garbler<'a> {
    circuit: &'a Circuit,
    hash: &'a Tccr,
    delta: Zeroizing<Block>,
    wires: Zeroizing<Vec<Block>>,
    hashed: Zeroizing<Vec<Block>>,
    tweaks: Vec<u128>,
}

impl std::fmt::Debug for Garbler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Garbler").field("and_gates", &self.circuit.and_gates()).finish_non_exhaustive()
    }
}

impl<'a> Garbler<'a> {
    /// A garbler for `circuit` under `delta`.
    pub fn new(circuit: &'a Circuit, hash: &'a Tccr, delta: &Delta) -> Self {
        Self {
            circuit,
            hash,
            delta: Zeroizing::new(delta.block()),
            wires: Zeroizing::new(vec![Block::ZERO; circuit.wires() * LANES]),
            hashed: Zeroizing::new(vec![Block::ZERO; 4 * LANES]),
            tweaks: vec![0; 4 * LANES],
        }
    }

    /// Garbles `n ≤ LANES` instances numbered from `first_instance`.
    ///
    /// `inputs` holds each instance's input zero labels (evaluator's, then garbler's);
    /// `tables` receives each instance's `2·ands` ciphertexts and `outputs` its output zero
    /// labels, all instance-major.
    ///
    /// # Panics
    /// If `n > LANES` or a slice has the wrong length (caller bugs).
    pub fn garble(
        &mut self,
        first_instance: u64,
        n: usize,
        inputs: &[Block],
        tables: &mut [Block],
        outputs: &mut [Block],
    ) {
        let c = self.circuit;
        let (ni, ands) = (c.inputs(), c.and_gates());
        assert!(n <= LANES, "at most {LANES} lanes");
        assert_eq!(inputs.len(), n * ni, "input labels");
        assert_eq!(tables.len(), n * 2 * ands, "table size");
        assert_eq!(outputs.len(), n * c.outputs().len(), "output labels");
        let delta = *self.delta;
        to_lanes(inputs, n, ni, &mut self.wires);
        let mut g_and = 0;
        for (g, gate) in c.gates().iter().enumerate() {
            let out = (ni + g) * n;
            match *gate {
                Gate::Xor(a, b) => {
                    for l in 0..n {
                        self.wires[out + l] = self.wires[a as usize * n + l] ^ self.wires[b as usize * n + l];
                    }
                }
                Gate::Not(a) => {
                    for l in 0..n {
                        self.wires[out + l] = self.wires[a as usize * n + l] ^ delta;
                    }
                }
                Gate::And(a, b) => {
                    for l in 0..n {
                        let (a0, b0) = (self.wires[a as usize * n + l], self.wires[b as usize * n + l]);
                        let j = and_tweak(first_instance + l as u64, g_and);
                        self.hashed[4 * l..4 * l + 4].copy_from_slice(&[a0, a0 ^ delta, b0, b0 ^ delta]);
                        self.tweaks[4 * l..4 * l + 4].copy_from_slice(&[j, j, j + 1, j + 1]);
                    }
                    self.hash.hash_many(&mut self.hashed[..4 * n], &self.tweaks[..4 * n]);
                    for l in 0..n {
                        let (a0, b0) = (self.wires[a as usize * n + l], self.wires[b as usize * n + l]);
                        let h = &self.hashed[4 * l..4 * l + 4];
                        let (pa, pb) = (a0.color(), b0.color());
                        let tg = h[0] ^ h[1] ^ delta.and_bit(pb);
                        let te = h[2] ^ h[3] ^ a0;
                        let wg = h[0] ^ tg.and_bit(pa);
                        let we = h[2] ^ (te ^ a0).and_bit(pb);
                        self.wires[out + l] = wg ^ we;
                        let t = (l * ands + g_and) * 2;
                        tables[t] = tg;
                        tables[t + 1] = te;
                    }
                    g_and += 1;
                }
            }
        }
        from_lanes(c, &self.wires, n, outputs);
    }
}
