//! Evaluating half-gates garbled circuits (the other side of [`crate::garble`]).
//!
//! For an AND gate with active labels `A`, `B` (colors `s_a`, `s_b`) and ciphertexts
//! `T_G`, `T_E`: `C = H(A, j) ⊕ s_a·T_G ⊕ H(B, j') ⊕ s_b·(T_E ⊕ A)`; two hashes.

use zeroize::Zeroizing;

use crate::block::Block;
use crate::circuit::{Circuit, Gate};
use crate::garble::{LANES, from_lanes, to_lanes};
use crate::hash::{Tccr, and_tweak};

/// Evaluates instances of one circuit, reusing its buffers (wiped on drop).
pub struct Evaluator<'a> {
    circuit: &'a Circuit,
    hash: &'a Tccr,
    wires: Zeroizing<Vec<Block>>,
    hashed: Zeroizing<Vec<Block>>,
    tweaks: Vec<u128>,
}

impl std::fmt::Debug for Evaluator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator").field("and_gates", &self.circuit.and_gates()).finish_non_exhaustive()
    }
}

impl<'a> Evaluator<'a> {
    /// An evaluator for `circuit`.
    pub fn new(circuit: &'a Circuit, hash: &'a Tccr) -> Self {
        Self {
            circuit,
            hash,
            wires: Zeroizing::new(vec![Block::ZERO; circuit.wires() * LANES]),
            hashed: Zeroizing::new(vec![Block::ZERO; 2 * LANES]),
            tweaks: vec![0; 2 * LANES],
        }
    }

    /// Evaluates `n ≤ LANES` instances numbered from `first_instance`, with the layouts of
    /// [`crate::garble::Garbler::garble`]: active input labels in, active output labels out.
    ///
    /// # Panics
    /// If `n > LANES` or a slice has the wrong length (caller bugs; message lengths are checked
    /// when they are decoded).
    pub fn evaluate(
        &mut self,
        first_instance: u64,
        n: usize,
        inputs: &[Block],
        tables: &[Block],
        outputs: &mut [Block],
    ) {
        let c = self.circuit;
        let (ni, ands) = (c.inputs(), c.and_gates());
        assert!(n <= LANES, "at most {LANES} lanes");
        assert_eq!(inputs.len(), n * ni, "input labels");
        assert_eq!(tables.len(), n * 2 * ands, "table size");
        assert_eq!(outputs.len(), n * c.outputs().len(), "output labels");
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
                        self.wires[out + l] = self.wires[a as usize * n + l];
                    }
                }
                Gate::And(a, b) => {
                    for l in 0..n {
                        let j = and_tweak(first_instance + l as u64, g_and);
                        self.hashed[2 * l] = self.wires[a as usize * n + l];
                        self.hashed[2 * l + 1] = self.wires[b as usize * n + l];
                        self.tweaks[2 * l] = j;
                        self.tweaks[2 * l + 1] = j + 1;
                    }
                    self.hash.hash_many(&mut self.hashed[..2 * n], &self.tweaks[..2 * n]);
                    for l in 0..n {
                        let (wa, wb) = (self.wires[a as usize * n + l], self.wires[b as usize * n + l]);
                        let t = (l * ands + g_and) * 2;
                        let (tg, te) = (tables[t], tables[t + 1]);
                        let wg = self.hashed[2 * l] ^ tg.and_bit(wa.color());
                        let we = self.hashed[2 * l + 1] ^ (te ^ wa).and_bit(wb.color());
                        self.wires[out + l] = wg ^ we;
                    }
                    g_and += 1;
                }
            }
        }
        from_lanes(c, &self.wires, n, outputs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Delta;
    use crate::circuit::{Builder, to_bits};
    use crate::garble::Garbler;
    use crate::modulus::Modulus;
    use crate::relu::{Nonlinear, ZtCircuit};
    use rand::{Rng, SeedableRng};

    /// Garbles `n` instances with random input labels, evaluates them on `bits`, and returns
    /// the decoded output bits of each (by comparing against the output zero labels).
    fn garble_and_evaluate(c: &Circuit, bits: &[Vec<bool>], seed: u64) -> Vec<Vec<bool>> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let hash = Tccr::random(&mut rng);
        let delta = Delta::random(&mut rng);
        let (n, ni, no) = (bits.len(), c.inputs(), c.outputs().len());
        let zero: Vec<Block> = (0..n * ni).map(|_| Block::random(&mut rng)).collect();
        let active: Vec<Block> =
            zero.iter().enumerate().map(|(k, &z)| z ^ delta.block().and_bit(bits[k / ni][k % ni])).collect();
        let mut g = Garbler::new(c, &hash, &delta);
        let mut e = Evaluator::new(c, &hash);
        let mut result = Vec::new();
        for start in (0..n).step_by(LANES) {
            let k = (n - start).min(LANES);
            let mut tables = vec![Block::ZERO; k * 2 * c.and_gates()];
            let (mut out0, mut out) = (vec![Block::ZERO; k * no], vec![Block::ZERO; k * no]);
            g.garble(start as u64, k, &zero[start * ni..(start + k) * ni], &mut tables, &mut out0);
            e.evaluate(start as u64, k, &active[start * ni..(start + k) * ni], &tables, &mut out);
            for l in 0..k {
                let decoded: Vec<bool> = (0..no)
                    .map(|o| {
                        let (z, a) = (out0[l * no + o], out[l * no + o]);
                        assert!(a == z || a == z ^ delta.block(), "an active label is one of the two");
                        a != z
                    })
                    .collect();
                result.push(decoded);
            }
        }
        result
    }

    #[test]
    fn every_gate_garbles_correctly() {
        let mut bld = Builder::new(1, 1);
        let a = bld.evaluator_word(0, 1)[0];
        let b = bld.garbler_word(0, 1)[0];
        let (x, y, z) = (bld.xor(a, b), bld.and(a, b), bld.not(a));
        let w = bld.and(z, x);
        let c = bld.finish(&[x, y, z, w]);
        let cases: Vec<Vec<bool>> = (0..4 * 40).map(|i| vec![i & 1 == 1, i & 2 == 2]).collect();
        let out = garble_and_evaluate(&c, &cases, 3);
        for (inp, o) in cases.iter().zip(&out) {
            assert_eq!(o, &c.eval_plain(&inp[..1], &inp[1..]));
        }
    }

    #[test]
    fn garbled_relu_and_max_pool_match_the_plain_circuit() {
        let m = Modulus::tessera();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        for op in [
            Nonlinear::Relu,
            Nonlinear::ReluTrunc { shift: 13 },
            Nonlinear::MaxPool { window: 4, relu: false, shift: 0 },
        ] {
            let z = ZtCircuit::new(op, m).unwrap();
            let c = z.circuit();
            let mut cases = Vec::new();
            let mut shares = Vec::new();
            for _ in 0..37 {
                let cs: Vec<u64> = (0..z.values()).map(|_| m.random(&mut rng)).collect();
                let bs: Vec<u64> = (0..z.values()).map(|_| m.random(&mut rng)).collect();
                let mut bits = Vec::new();
                for &v in &cs {
                    to_bits(v, m.bits(), &mut bits);
                }
                z.garbler_bits(&bs, &mut bits);
                cases.push(bits);
                shares.push((cs, bs));
            }
            let out = garble_and_evaluate(c, &cases, rng.random());
            for ((cs, bs), o) in shares.iter().zip(&out) {
                let x: Vec<u64> = cs.iter().zip(bs).map(|(&c, &b)| m.add(c, b)).collect();
                assert_eq!(z.decode_plain(o, bs), z.reference(&x), "{op:?}");
            }
        }
    }
}
