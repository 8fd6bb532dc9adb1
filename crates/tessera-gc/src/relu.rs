//! The nonlinear layers as circuits over `Z_t`: ReLU, ReLU with exact truncation, max pool.
//!
//! Every circuit takes the evaluator's share `c` and the garbler's *re-shared* share `b'`
//! (`x = c + b' mod t`, see [`crate::protocol`]) of each input value; the garbler enters
//! only values it derives from `b'`, so no circuit adds shares it could have pre-combined.
//! The outputs are bits `y_k` that [`crate::decode`] turns into additive shares of
//! `Σ w_k·y_k (+ y_pos·b') − offset`, so no circuit contains a mod-`t` adder for the mask.
//! With `n` the bit length of `t` (61 for Tessera's `t`):
//!
//! * [`Nonlinear::Relu`]: the garbler enters `lo` and a flag such that `x` is
//!   non-negative iff `[(c − lo) mod 2^n ≤ ⌊t/2⌋] ⊕ flag` (one subtractor, one comparison with
//!   a constant); the outputs are `pos ∧ c_i` with weights `2^i` and `pos` itself, whose
//!   weight is `b'`, entered by the garbler online: `pos·c + pos·b' ≡ pos·x = ReLU(x)`.
//!   AND gates: `(n − 1) + (n − 1) + n` = 181 for `n = 61`.
//! * [`Nonlinear::ReluTrunc`]: reconstructs `x` (subtract `t − b'`, add `t` back on a
//!   borrow), tests `x ≤ ⌊t/2⌋`, and outputs `pos ∧ x_i` for `i ≥ f` with weights `2^(i−f)`:
//!   exactly `⌊ReLU(x) / 2^f⌋`, the truncation of PROTOCOLS.md section 1 with no error at all.
//! * [`Nonlinear::MaxPool`]: reconstructs each `y_j = x_j + ⌊t/2⌋ mod t` (the garbler
//!   folds the offset in, which maps signed order to unsigned order), keeps the running
//!   maximum (one comparator and one multiplexer per further element), and outputs its bits;
//!   the decoding subtracts `⌊t/2⌋` again.
//!
//! The AND counts for Tessera's `t` are pinned by a test and listed in `docs/gc.md`.

use crate::circuit::{Bit, Builder, Circuit, Word, to_bits};
use crate::error::{GcError, Result};
use crate::modulus::Modulus;

/// The largest max-pool window the circuits are built for.
pub const MAX_WINDOW: usize = 16;

/// Which nonlinear function a layer computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Nonlinear {
    /// `ReLU(x)`.
    Relu,
    /// `⌊ReLU(x) / 2^shift⌋`, exact.
    ReluTrunc {
        /// The number of fractional bits dropped.
        shift: u32,
    },
    /// The maximum (by signed value) of `window` values.
    MaxPool {
        /// Values per window.
        window: usize,
    },
}

/// A nonlinear function's circuit over `Z_t` with its decoding: which outputs carry which
/// weight, whether the last output's weight comes online, and the offset subtracted.
#[derive(Clone, Debug)]
pub struct ZtCircuit {
    op: Nonlinear,
    modulus: Modulus,
    circuit: Circuit,
    weights: Vec<u64>,
    online: bool,
    offset: u64,
}

impl ZtCircuit {
    /// Builds the circuit of `op` over `modulus`.
    pub fn new(op: Nonlinear, modulus: Modulus) -> Result<Self> {
        let n = modulus.bits();
        let t = modulus.t();
        let half = modulus.half();
        let reconstruct = |bld: &mut Builder, c: &[Bit], u: &[Bit]| -> Word {
            // x = c − u (+ t if that borrows), with u = t − b' mod t: x = c + b' mod t.
            let (d, borrow) = bld.sub(c, u);
            let tb: Word = (0..n).map(|i| if (t >> i) & 1 == 1 { borrow } else { Bit::Const(false) }).collect();
            bld.add(&d, &tb).0
        };
        let (circuit, weights, online, offset) = match op {
            Nonlinear::Relu => {
                let mut bld = Builder::new(n, n + 1);
                let c = bld.evaluator_word(0, n);
                let lo = bld.garbler_word(0, n);
                let flag = bld.garbler_word(n, 1)[0];
                let (d, _) = bld.sub(&c, &lo);
                let above = bld.greater_than_const(&d, half);
                let inside = bld.not(above);
                let pos = bld.xor(inside, flag);
                let mut out: Word = c.iter().map(|&ci| bld.and(pos, ci)).collect();
                out.push(pos);
                (bld.finish(&out), (0..n).map(|i| 1u64 << i).collect(), true, 0)
            }
            Nonlinear::ReluTrunc { shift } => {
                let f = shift as usize;
                if f + 1 >= n {
                    return Err(GcError::InvalidShift { shift, bits: n });
                }
                let mut bld = Builder::new(n, n);
                let c = bld.evaluator_word(0, n);
                let u = bld.garbler_word(0, n);
                let x = reconstruct(&mut bld, &c, &u);
                let above = bld.greater_than_const(&x, half);
                let pos = bld.not(above);
                // x ≤ ⌊t/2⌋ < 2^(n−1) when pos, so bit n−1 never contributes.
                let out: Word = x[f..n - 1].iter().map(|&xi| bld.and(pos, xi)).collect();
                (bld.finish(&out), (0..n - 1 - f).map(|i| 1u64 << i).collect(), false, 0)
            }
            Nonlinear::MaxPool { window } => {
                if !(2..=MAX_WINDOW).contains(&window) {
                    return Err(GcError::InvalidWindow { window, maximum: MAX_WINDOW });
                }
                let mut bld = Builder::new(n * window, n * window);
                let mut best: Option<Word> = None;
                for j in 0..window {
                    let c = bld.evaluator_word(j * n, n);
                    let u = bld.garbler_word(j * n, n);
                    let y = reconstruct(&mut bld, &c, &u);
                    best = Some(match best {
                        None => y,
                        Some(b) => {
                            let larger = bld.less_than(&b, &y);
                            bld.mux_word(larger, &b, &y)
                        }
                    });
                }
                let out = best.expect("window ≥ 2");
                (bld.finish(&out), (0..n).map(|i| 1u64 << i).collect(), false, half)
            }
        };
        Ok(Self { op, modulus, circuit, weights, online, offset })
    }

    /// The function.
    pub fn op(&self) -> Nonlinear {
        self.op
    }

    /// The modulus.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }

    /// The boolean circuit of one instance.
    pub fn circuit(&self) -> &Circuit {
        &self.circuit
    }

    /// AND gates per instance.
    pub fn and_gates(&self) -> usize {
        self.circuit.and_gates()
    }

    /// Input values (shares) per instance: 1, or the window.
    pub fn values(&self) -> usize {
        match self.op {
            Nonlinear::MaxPool { window } => window,
            _ => 1,
        }
    }

    /// The weights of the outputs decoded offline (all but an online-weighted last output).
    pub fn offline_weights(&self) -> &[u64] {
        &self.weights
    }

    /// Whether the last output's weight is the garbler's `b'`, entered online.
    pub fn has_online_output(&self) -> bool {
        self.online
    }

    /// The constant subtracted when decoding.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The garbler's input bits for one instance from its re-shared shares `b'` (one per value).
    pub(crate) fn garbler_bits(&self, reshared: &[u64], out: &mut Vec<bool>) {
        let m = self.modulus;
        let n = m.bits();
        match self.op {
            Nonlinear::Relu => {
                let b = reshared[0];
                // b' > ⌊t/2⌋: x ≥ 0 iff c ∈ [t − b', t − b' + ⌊t/2⌋].
                // b' ≤ ⌊t/2⌋: x < 0 or x = 0 iff c ∈ [⌊t/2⌋ + 1 − b', t − b'].
                let (lo, flag) = if b > m.half() { (m.t() - b, false) } else { (m.half() + 1 - b, true) };
                to_bits(lo, n, out);
                out.push(flag);
            }
            Nonlinear::ReluTrunc { .. } => to_bits(m.neg(reshared[0]), n, out),
            Nonlinear::MaxPool { .. } => {
                for &b in reshared {
                    to_bits(m.neg(m.add(b, m.half())), n, out);
                }
            }
        }
    }

    /// The online weight (the garbler's `b'`) if the circuit has one.
    pub(crate) fn online_weight(&self, reshared: &[u64]) -> Option<u64> {
        self.online.then(|| reshared[0])
    }

    /// What the decoding of output bits yields: `Σ w_k·y_k (+ y_last·b') − offset mod t`.
    pub fn decode_plain(&self, outputs: &[bool], reshared: &[u64]) -> u64 {
        let m = self.modulus;
        let mut v = self.weights.iter().zip(outputs).fold(0, |acc, (&w, &y)| if y { m.add(acc, w) } else { acc });
        if let (Some(w), Some(true)) = (self.online_weight(reshared), outputs.get(self.weights.len())) {
            v = m.add(v, w);
        }
        m.sub(v, self.offset)
    }

    /// Runs the circuit in the clear on shares `c` (evaluator) and `b'` (garbler) and decodes.
    pub fn eval_plain(&self, c: &[u64], reshared: &[u64]) -> u64 {
        let n = self.modulus.bits();
        let mut e = Vec::new();
        for &v in c {
            to_bits(v, n, &mut e);
        }
        let mut g = Vec::new();
        self.garbler_bits(reshared, &mut g);
        self.decode_plain(&self.circuit.eval_plain(&e, &g), reshared)
    }

    /// The plaintext function on reconstructed values `x` (one per input value).
    pub fn reference(&self, x: &[u64]) -> u64 {
        let m = self.modulus;
        match self.op {
            Nonlinear::Relu => {
                if x[0] <= m.half() {
                    x[0]
                } else {
                    0
                }
            }
            Nonlinear::ReluTrunc { shift } => {
                if x[0] <= m.half() {
                    x[0] >> shift
                } else {
                    0
                }
            }
            Nonlinear::MaxPool { .. } => *x.iter().max_by_key(|&&v| m.to_signed(v)).expect("non-empty window"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SMALL: [u64; 8] = [3, 5, 7, 11, 13, 17, 31, 61];

    #[test]
    fn and_counts_for_tessera_t() {
        let m = Modulus::tessera();
        let count = |op| ZtCircuit::new(op, m).unwrap().and_gates();
        let relu = count(Nonlinear::Relu);
        let trunc = count(Nonlinear::ReluTrunc { shift: 16 });
        let pool4 = count(Nonlinear::MaxPool { window: 4 });
        println!("AND gates, t = 2^61 − 2031615: ReLU {relu}, ReLU+trunc(16) {trunc}, max pool 2x2 {pool4}");
        assert_eq!((relu, trunc, pool4), (181, 225, 850));
        assert_eq!(count(Nonlinear::ReluTrunc { shift: 0 }), 241);
        assert_eq!(count(Nonlinear::MaxPool { window: 9 }), 9 * 121 + 8 * 122);
    }

    #[test]
    fn relu_exhaustive_on_small_moduli() {
        for t in SMALL.into_iter().chain([97, 127]) {
            let m = Modulus::new(t).unwrap();
            for op in [Nonlinear::Relu, Nonlinear::ReluTrunc { shift: 0 }, Nonlinear::ReluTrunc { shift: 1 }] {
                let Ok(z) = ZtCircuit::new(op, m) else { continue };
                for c in 0..t {
                    for b in 0..t {
                        let x = m.add(c, b);
                        assert_eq!(z.eval_plain(&[c], &[b]), z.reference(&[x]), "{op:?} t={t} c={c} b={b}");
                    }
                }
            }
        }
    }

    #[test]
    fn max_pool_exhaustive_on_small_moduli() {
        for (t, window) in [(3, 4), (5, 3), (7, 2), (11, 2)] {
            let m = Modulus::new(t).unwrap();
            let z = ZtCircuit::new(Nonlinear::MaxPool { window }, m).unwrap();
            let total = (t as usize).pow(2 * window as u32);
            for idx in 0..total {
                let mut k = idx;
                let mut digits = Vec::new();
                for _ in 0..2 * window {
                    digits.push((k % t as usize) as u64);
                    k /= t as usize;
                }
                let (c, b) = digits.split_at(window);
                let x: Vec<u64> = c.iter().zip(b).map(|(&c, &b)| m.add(c, b)).collect();
                assert_eq!(z.eval_plain(c, b), z.reference(&x), "t={t} c={c:?} b={b:?}");
            }
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let m = Modulus::tessera();
        assert!(matches!(ZtCircuit::new(Nonlinear::MaxPool { window: 1 }, m), Err(GcError::InvalidWindow { .. })));
        assert!(matches!(ZtCircuit::new(Nonlinear::MaxPool { window: 17 }, m), Err(GcError::InvalidWindow { .. })));
        assert!(matches!(ZtCircuit::new(Nonlinear::ReluTrunc { shift: 60 }, m), Err(GcError::InvalidShift { .. })));
    }

    fn edge() -> impl Strategy<Value = u64> {
        let m = Modulus::tessera();
        prop_oneof![0..m.t(), Just(0), Just(m.half()), Just(m.half() + 1), Just(m.t() - 1)]
    }

    proptest! {
        #[test]
        fn relu_and_trunc_on_tessera_t(c in edge(), b in edge(), shift in 0u32..40) {
            let m = Modulus::tessera();
            let x = m.add(c, b);
            for op in [Nonlinear::Relu, Nonlinear::ReluTrunc { shift }] {
                let z = ZtCircuit::new(op, m).unwrap();
                prop_assert_eq!(z.eval_plain(&[c], &[b]), z.reference(&[x]));
            }
        }

        #[test]
        fn max_pool_on_tessera_t(c in proptest::collection::vec(edge(), 4), b in proptest::collection::vec(edge(), 4)) {
            let m = Modulus::tessera();
            let z = ZtCircuit::new(Nonlinear::MaxPool { window: 4 }, m).unwrap();
            let x: Vec<u64> = c.iter().zip(&b).map(|(&c, &b)| m.add(c, b)).collect();
            prop_assert_eq!(z.eval_plain(&c, &b), z.reference(&x));
        }
    }
}
