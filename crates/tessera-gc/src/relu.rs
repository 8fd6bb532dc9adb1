//! The nonlinear layers as circuits over `Z_t`: ReLU, ReLU with exact truncation, max pool.
//!
//! Every two-party circuit takes the evaluator's share `c` and the garbler's *re-shared* share `b'`
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
//! * [`Nonlinear::ReluTrunc`]: reconstructs `x' = x + h` with `h = ⌊2^f / 2⌋` (the garbler
//!   folds `h` into its share; subtract `t − b' − h`, add `t` back on a borrow), tests
//!   `x' ≤ ⌊t/2⌋`, and outputs `pos ∧ x'_i` for `i ≥ f` with weights `2^(i−f)`: exactly
//!   `max(0, ⌊(x + h) / 2^f⌋)`, the fixed-point reference's rounding to nearest (ties up)
//!   followed by ReLU, with no error at all.
//! * [`Nonlinear::MaxPool`]: reconstructs each `y_j = x_j + ⌊t/2⌋ mod t` (the garbler
//!   folds the offset in, which maps signed order to unsigned order), keeps the running
//!   maximum (one comparator and one multiplexer per further element), subtracts the public
//!   `⌊t/2⌋ − h` to get `max x + h` in two's complement, and outputs its bits from `f` on:
//!   with `relu`, `pos ∧ d_i` as above; without, every bit, the sign bit weighted
//!   `−2^(n−1−f)`, so the decoding yields `⌊(max x + h) / 2^f⌋` for negative maxima too.
//!
//! **On three shares** ([`ZtCircuit::shared`], evaluated by three parties in [`crate::gmw`]):
//! each input value is split into additive shares `x = s_0 + s_1 + s_2 mod t`. Party 2 enters
//! `s_2` as the evaluator's word `c`, party 0 enters `t − s_0`, party 1 the garbler's word (the
//! one the two-party circuit derives from `b'`, here from `s_1`). Each value is reconstructed
//! twice with the gadget above: `z = c − (t − s_0)`, `+ t` on a borrow, is `s_2 + s_0 mod t`
//! in `[0, t)`; then `z` with party 1's word gives `x + k mod t` exactly as `c` does in the
//! two-party circuit, so the rest of the circuit, and its exactness, are unchanged (121 more
//! AND gates per value). A three-term sum mod `t` has three possible wraps; every single-pass
//! layout we counted (sum then subtract 0, `t` or `2t`; subtract with sign tracking) needs two
//! comparisons or adders more and came to at least 4n + 2 AND gates, against 2·(2n − 1) here.
//! The outputs decode to `f(x)` with the offline weights ([`ZtCircuit::offline_weights`]), no
//! output weighted online: ReLU is built as the truncating ReLU by 0 bits (the same function).
//!
//! The rounding circuits are exact wherever `|x| + h < ⌊t/2⌋`, far beyond any activation bound
//! `2^ℓx` a model is calibrated to.
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
    /// `max(0, ⌊(x + h) / 2^shift⌋)` with `h = ⌊2^shift / 2⌋`: rounding to nearest (ties
    /// up), then ReLU, exact.
    ReluTrunc {
        /// The number of fractional bits dropped.
        shift: u32,
    },
    /// The maximum (by signed value) of `window` values, rounded like
    /// [`ReluTrunc`](Nonlinear::ReluTrunc) by `shift` bits, then ReLU when `relu` is set.
    MaxPool {
        /// Values per window.
        window: usize,
        /// Whether a ReLU follows the maximum.
        relu: bool,
        /// The number of fractional bits dropped (0: none).
        shift: u32,
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
    shared: bool,
}

impl ZtCircuit {
    /// Builds the two-party circuit of `op` over `modulus`.
    pub fn new(op: Nonlinear, modulus: Modulus) -> Result<Self> {
        Self::build(op, modulus, false)
    }

    /// Builds the circuit of `op` over `modulus` on three additive shares `x = s_0 + s_1 + s_2`,
    /// for parties that XOR-share every wire ([`crate::gmw`]): each value is reconstructed
    /// from the three shares with two of the two-party circuit's reconstructions, its inputs
    /// split by [`Self::shared_inputs`] and encoded by [`Self::shared_input_bits`]. ReLU is
    /// built as [`Nonlinear::ReluTrunc`] by 0 bits (the same function), so no output is
    /// weighted online: the outputs decode to `f(x)` with [`Self::offline_weights`].
    pub fn shared(op: Nonlinear, modulus: Modulus) -> Result<Self> {
        Self::build(op, modulus, true)
    }

    /// Builds the two-party circuit, or with `shared` the circuit on three shares.
    fn build(op: Nonlinear, modulus: Modulus, shared: bool) -> Result<Self> {
        let n = modulus.bits();
        let t = modulus.t();
        let half = modulus.half();
        let reconstruct = |bld: &mut Builder, c: &[Bit], u: &[Bit]| -> Word {
            // x = c − u (+ t if that borrows), with u = t − b' mod t: x = c + b' mod t.
            let (d, borrow) = bld.sub(c, u);
            let tb: Word = (0..n).map(|i| if (t >> i) & 1 == 1 { borrow } else { Bit::Const(false) }).collect();
            bld.add(&d, &tb).0
        };
        let values = match op {
            Nonlinear::MaxPool { window, .. } => window,
            _ => 1,
        };
        // Evaluator-side inputs: the words c_j (party 2's shares s_j when shared), then, shared,
        // party 0's words t − s_0j.
        let own = n * values;
        let extra = if shared { n * values } else { 0 };
        // The value x_j + k (k public) from c_j, the garbler's (party 1's) u_j = t − b'_j − k
        // and, shared, party 0's t − s_0j: two reconstructions when shared, one otherwise.
        let value = |bld: &mut Builder, j: usize| -> Word {
            let c = bld.evaluator_word(j * n, n);
            let u = bld.garbler_word(j * n, n);
            if shared {
                let s0 = bld.evaluator_word(own + j * n, n);
                let z = reconstruct(bld, &c, &s0);
                reconstruct(bld, &z, &u)
            } else {
                reconstruct(bld, &c, &u)
            }
        };
        let op_built = if shared && op == Nonlinear::Relu { Nonlinear::ReluTrunc { shift: 0 } } else { op };
        let (bld, out, weights, online, offset) = match op_built {
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
                (bld, out, (0..n).map(|i| 1u64 << i).collect(), true, 0)
            }
            Nonlinear::ReluTrunc { shift } => {
                let f = shift as usize;
                if f + 1 >= n {
                    return Err(GcError::InvalidShift { shift, bits: n });
                }
                let mut bld = Builder::new(own + extra, n);
                let x = value(&mut bld, 0);
                let above = bld.greater_than_const(&x, half);
                let pos = bld.not(above);
                // x ≤ ⌊t/2⌋ < 2^(n−1) when pos, so bit n−1 never contributes.
                let out: Word = x[f..n - 1].iter().map(|&xi| bld.and(pos, xi)).collect();
                (bld, out, (0..n - 1 - f).map(|i| 1u64 << i).collect(), false, 0)
            }
            Nonlinear::MaxPool { window, relu, shift } => {
                if !(2..=MAX_WINDOW).contains(&window) {
                    return Err(GcError::InvalidWindow { window, maximum: MAX_WINDOW });
                }
                let f = shift as usize;
                if f + 1 >= n {
                    return Err(GcError::InvalidShift { shift, bits: n });
                }
                let mut bld = Builder::new(own + extra, n * window);
                let mut best: Option<Word> = None;
                for j in 0..window {
                    let y = value(&mut bld, j);
                    best = Some(match best {
                        None => y,
                        Some(b) => {
                            let larger = bld.less_than(&b, &y);
                            bld.mux_word(larger, &b, &y)
                        }
                    });
                }
                let best = best.expect("window ≥ 2");
                // d = max x + h in n-bit two's complement.
                let (d, _) = bld.sub(&best, &Builder::constant(half - rounding(shift), n));
                let (out, weights): (Word, Vec<u64>) = if relu {
                    let pos = bld.not(d[n - 1]);
                    let out = d[f..n - 1].iter().map(|&di| bld.and(pos, di)).collect();
                    (out, (0..n - 1 - f).map(|i| 1u64 << i).collect())
                } else {
                    let mut weights: Vec<u64> = (0..n - 1 - f).map(|i| 1u64 << i).collect();
                    weights.push(modulus.neg(1u64 << (n - 1 - f)));
                    (d[f..].to_vec(), weights)
                };
                (bld, out, weights, false, 0)
            }
        };
        let circuit = bld.finish(&out);
        Ok(Self { op, modulus, circuit, weights, online, offset, shared })
    }

    /// The input bits per instance of the evaluator's words `c` (one OT each in the two-party
    /// protocol; party 2's shares in a [`Self::shared`] circuit).
    pub fn evaluator_bits(&self) -> usize {
        self.modulus.bits() * self.values()
    }

    /// The input wires party `party` (0, 1 or 2) supplies to a [`Self::shared`] circuit:
    /// party 0 the words `t − s_0` (evaluator-side, after party 2's), party 1 the garbler's,
    /// party 2 the evaluator's words `c`.
    ///
    /// # Panics
    /// If the circuit is not a shared one or `party > 2` (a caller bug).
    pub fn shared_inputs(&self, party: usize) -> std::ops::Range<usize> {
        assert!(self.shared, "not a shared circuit");
        let own = self.evaluator_bits();
        match party {
            0 => own..2 * own,
            1 => 2 * own..self.circuit.inputs(),
            2 => 0..own,
            _ => panic!("three parties"),
        }
    }

    /// Party `party`'s input bits of one instance of a [`Self::shared`] circuit from its
    /// additive shares (one per value): party 0 enters `t − s_0`, party 1 what the garbler
    /// enters for `s_1`, party 2 `s_2` itself.
    pub fn shared_input_bits(&self, party: usize, shares: &[u64], out: &mut Vec<bool>) {
        let (m, n) = (self.modulus, self.modulus.bits());
        match party {
            0 => shares.iter().for_each(|&h| to_bits(m.neg(h), n, out)),
            1 => self.garbler_bits(shares, out),
            _ => shares.iter().for_each(|&c| to_bits(c, n, out)),
        }
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
            Nonlinear::MaxPool { window, .. } => window,
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
            Nonlinear::Relu if self.shared => to_bits(m.neg(reshared[0]), n, out),
            Nonlinear::Relu => {
                let b = reshared[0];
                // b' > ⌊t/2⌋: x ≥ 0 iff c ∈ [t − b', t − b' + ⌊t/2⌋].
                // b' ≤ ⌊t/2⌋: x < 0 or x = 0 iff c ∈ [⌊t/2⌋ + 1 − b', t − b'].
                let (lo, flag) = if b > m.half() { (m.t() - b, false) } else { (m.half() + 1 - b, true) };
                to_bits(lo, n, out);
                out.push(flag);
            }
            Nonlinear::ReluTrunc { shift } => to_bits(m.neg(m.add(reshared[0], rounding(shift))), n, out),
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
    ///
    /// # Panics
    /// If the circuit is a shared one ([`Self::eval_plain_shared`] runs those).
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

    /// Runs a [`Self::shared`] circuit in the clear on the three parties' shares (one slice
    /// each, one value per input value) and decodes: `f(s_0 + s_1 + s_2)` in the domain where
    /// the circuit is exact.
    pub fn eval_plain_shared(&self, shares: [&[u64]; 3]) -> u64 {
        let mut wires = vec![false; self.circuit.inputs()];
        for (party, s) in shares.into_iter().enumerate() {
            let mut bits = Vec::new();
            self.shared_input_bits(party, s, &mut bits);
            wires[self.shared_inputs(party)].copy_from_slice(&bits);
        }
        let e = self.circuit.evaluator_inputs();
        self.decode_plain(&self.circuit.eval_plain(&wires[..e], &wires[e..]), &[])
    }

    /// The plaintext function on reconstructed values `x` (one per input value), in the
    /// domain where the circuits are exact: `|x| + h < ⌊t/2⌋` ([`Self::in_domain`]).
    pub fn reference(&self, x: &[u64]) -> u64 {
        let m = self.modulus;
        let round = |v: i64, shift: u32| (v + rounding(shift) as i64) >> shift;
        let signed = match self.op {
            Nonlinear::Relu => m.to_signed(x[0]).max(0),
            Nonlinear::ReluTrunc { shift } => round(m.to_signed(x[0]), shift).max(0),
            Nonlinear::MaxPool { relu, shift, .. } => {
                let v = round(x.iter().map(|&v| m.to_signed(v)).max().expect("non-empty window"), shift);
                if relu { v.max(0) } else { v }
            }
        };
        if signed < 0 { m.t() - signed.unsigned_abs() } else { signed as u64 }
    }

    /// Whether every value of `x` is in the domain where the circuit is exact.
    pub fn in_domain(&self, x: &[u64]) -> bool {
        let h = match self.op {
            Nonlinear::Relu => 0,
            Nonlinear::ReluTrunc { shift } | Nonlinear::MaxPool { shift, .. } => rounding(shift),
        };
        x.iter().all(|&v| self.modulus.to_signed(v).unsigned_abs() + h < self.modulus.half())
    }
}

/// `h = ⌊2^shift / 2⌋`, added before dropping `shift` bits to round to nearest.
fn rounding(shift: u32) -> u64 {
    (1u64 << shift) >> 1
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
        let pool4 = count(Nonlinear::MaxPool { window: 4, relu: false, shift: 0 });
        println!("AND gates, t = 2^61 − 2031615: ReLU {relu}, ReLU+trunc(16) {trunc}, max pool 2x2 {pool4}");
        assert_eq!((relu, trunc, pool4), (181, 225, 894));
        assert_eq!(count(Nonlinear::ReluTrunc { shift: 0 }), 241);
        assert_eq!(count(Nonlinear::MaxPool { window: 9, relu: false, shift: 0 }), 9 * 121 + 8 * 122 + 44);
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
                        if z.in_domain(&[x]) {
                            assert_eq!(z.eval_plain(&[c], &[b]), z.reference(&[x]), "{op:?} t={t} c={c} b={b}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn max_pool_exhaustive_on_small_moduli() {
        let ops = |window| {
            [(false, 0), (true, 0), (false, 1), (true, 1)].map(|(relu, shift)| Nonlinear::MaxPool {
                window,
                relu,
                shift,
            })
        };
        for (t, op) in
            [(3, 4), (5, 3), (7, 2), (11, 2), (13, 2)].into_iter().flat_map(|(t, w)| ops(w).map(|op| (t, op)))
        {
            let m = Modulus::new(t).unwrap();
            let Ok(z) = ZtCircuit::new(op, m) else { continue };
            let window = z.values();
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
                if z.in_domain(&x) {
                    assert_eq!(z.eval_plain(c, b), z.reference(&x), "{op:?} t={t} c={c:?} b={b:?}");
                }
            }
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        let m = Modulus::tessera();
        let pool = |window, shift| ZtCircuit::new(Nonlinear::MaxPool { window, relu: true, shift }, m);
        assert!(matches!(pool(1, 0), Err(GcError::InvalidWindow { .. })));
        assert!(matches!(pool(17, 0), Err(GcError::InvalidWindow { .. })));
        assert!(matches!(pool(4, 60), Err(GcError::InvalidShift { .. })));
        assert!(matches!(ZtCircuit::new(Nonlinear::ReluTrunc { shift: 60 }, m), Err(GcError::InvalidShift { .. })));
    }

    /// A value in the circuits' domain for `shift ≤ 40`, its edges included, and a uniform share.
    fn value_and_share() -> impl Strategy<Value = (u64, u64)> {
        let m = Modulus::tessera();
        let limit = (m.half() - (1 << 40)) as i64;
        let x = prop_oneof![-limit..limit, Just(0i64), Just(limit - 1), Just(1 - limit), -70_000i64..70_000];
        (x, 0..m.t()).prop_map(move |(x, c)| {
            let x = if x < 0 { m.t() - x.unsigned_abs() } else { x as u64 };
            (x, c)
        })
    }

    proptest! {
        #[test]
        fn relu_and_trunc_on_tessera_t((x, c) in value_and_share(), shift in 0u32..40) {
            let m = Modulus::tessera();
            let b = m.sub(x, c);
            for op in [Nonlinear::Relu, Nonlinear::ReluTrunc { shift }] {
                let z = ZtCircuit::new(op, m).unwrap();
                prop_assert_eq!(z.eval_plain(&[c], &[b]), z.reference(&[x]));
            }
        }

        #[test]
        fn max_pool_on_tessera_t(
            xc in proptest::collection::vec(value_and_share(), 4),
            relu: bool,
            shift in 0u32..40,
        ) {
            let m = Modulus::tessera();
            let z = ZtCircuit::new(Nonlinear::MaxPool { window: 4, relu, shift }, m).unwrap();
            let x: Vec<u64> = xc.iter().map(|&(x, _)| x).collect();
            let c: Vec<u64> = xc.iter().map(|&(_, c)| c).collect();
            let b: Vec<u64> = xc.iter().map(|&(x, c)| m.sub(x, c)).collect();
            prop_assert_eq!(z.eval_plain(&c, &b), z.reference(&x));
        }
    }

    #[test]
    fn shared_circuits_compute_f_of_the_sum_of_three_shares() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(83);
        let ops = [
            Nonlinear::Relu,
            Nonlinear::ReluTrunc { shift: 1 },
            Nonlinear::MaxPool { window: 2, relu: true, shift: 1 },
            Nonlinear::MaxPool { window: 3, relu: false, shift: 0 },
        ];
        for t in [5u64, 7, 13, 31, Modulus::tessera().t()] {
            let m = Modulus::new(t).unwrap();
            for op in ops {
                let Ok(z) = ZtCircuit::shared(op, m) else { continue };
                let total: usize = (0..3).map(|p| z.shared_inputs(p).len()).sum();
                assert_eq!(total, z.circuit().inputs());
                let mut checked = 0;
                for _ in 0..400 {
                    let s: Vec<Vec<u64>> =
                        (0..3).map(|_| (0..z.values()).map(|_| rng.random_range(0..t)).collect()).collect();
                    let x: Vec<u64> = (0..z.values()).map(|j| m.add(m.add(s[0][j], s[1][j]), s[2][j])).collect();
                    if z.in_domain(&x) {
                        assert_eq!(z.eval_plain_shared([&s[0], &s[1], &s[2]]), z.reference(&x), "{op:?} t={t}");
                        checked += 1;
                    }
                }
                assert!(checked > 0, "{op:?} t={t}: nothing in the domain");
            }
        }
    }

    #[test]
    fn shared_and_counts_for_tessera_t() {
        let m = Modulus::tessera();
        let count = |op| ZtCircuit::shared(op, m).unwrap().and_gates();
        let trunc = |shift| count(Nonlinear::ReluTrunc { shift });
        let pool = |window, relu, shift| count(Nonlinear::MaxPool { window, relu, shift });
        println!(
            "AND gates on three shares, t = 2^61 − 2031615: ReLU+trunc(16) {}, max pool 2x2 {}, with ReLU(16) {}",
            trunc(16),
            pool(4, false, 0),
            pool(4, true, 16)
        );
        // Two reconstructions (121 each) where the two-party circuit has one.
        assert_eq!((trunc(0), trunc(8), trunc(16)), (362, 354, 346));
        assert_eq!(count(Nonlinear::Relu), trunc(0));
        assert_eq!((pool(4, false, 0), pool(4, true, 0), pool(4, true, 16)), (1378, 1438, 1401));
        assert_eq!(pool(9, false, 0), 9 * 242 + 8 * 122 + 44);
        for op in [
            Nonlinear::Relu,
            Nonlinear::ReluTrunc { shift: 16 },
            Nonlinear::MaxPool { window: 4, relu: true, shift: 16 },
        ] {
            let (two, three) = (ZtCircuit::new(op, m).unwrap(), ZtCircuit::shared(op, m).unwrap());
            let own = 61 * two.values();
            if op != Nonlinear::Relu {
                assert_eq!(three.and_gates() - two.and_gates(), 121 * two.values(), "{op:?}");
                assert_eq!(three.circuit().garbler_inputs(), two.circuit().garbler_inputs());
            }
            assert_eq!((two.evaluator_bits(), three.evaluator_bits()), (own, own));
            assert_eq!(two.circuit().evaluator_inputs(), own);
            assert_eq!(three.circuit().evaluator_inputs(), 2 * own);
            let inputs = three.circuit().inputs();
            assert_eq!(inputs, 3 * own, "{op:?}");
            assert_eq!([0, 1, 2].map(|p| three.shared_inputs(p)), [own..2 * own, 2 * own..inputs, 0..own]);
            assert!(!three.has_online_output(), "{op:?}");
        }
    }

    /// `f(s_0 + s_1 + s_2)` by brute force over small moduli: every `s_0`, `s_1`, `s_2` (and
    /// for pools every value).
    #[test]
    fn shared_circuits_exhaustive_on_small_moduli() {
        for t in [3, 5, 7, 11, 13, 17, 31] {
            let m = Modulus::new(t).unwrap();
            for op in [Nonlinear::Relu, Nonlinear::ReluTrunc { shift: 0 }, Nonlinear::ReluTrunc { shift: 1 }] {
                let Ok(z) = ZtCircuit::shared(op, m) else { continue };
                let mut checked = 0;
                for s0 in 0..t {
                    for s1 in 0..t {
                        for s2 in 0..t {
                            let x = m.add(m.add(s0, s1), s2);
                            if z.in_domain(&[x]) {
                                assert_eq!(
                                    z.eval_plain_shared([&[s0], &[s1], &[s2]]),
                                    z.reference(&[x]),
                                    "{op:?} t={t}"
                                );
                                checked += 1;
                            }
                        }
                    }
                }
                assert!(checked >= t * t, "{op:?} t={t}: {checked} cases in the domain");
            }
        }
        for (t, window) in [(3, 3), (5, 2), (7, 2)] {
            let m = Modulus::new(t).unwrap();
            for (relu, shift) in [(false, 0), (true, 0), (false, 1), (true, 1)] {
                let Ok(z) = ZtCircuit::shared(Nonlinear::MaxPool { window, relu, shift }, m) else { continue };
                let total = (t as usize).pow(3 * window as u32);
                for idx in 0..total {
                    let mut k = idx;
                    let digits: Vec<u64> = (0..3 * window)
                        .map(|_| {
                            let d = (k % t as usize) as u64;
                            k /= t as usize;
                            d
                        })
                        .collect();
                    let (s0, rest) = digits.split_at(window);
                    let (s1, s2) = rest.split_at(window);
                    let x: Vec<u64> = (0..window).map(|j| m.add(m.add(s0[j], s1[j]), s2[j])).collect();
                    if z.in_domain(&x) {
                        let got = z.eval_plain_shared([s0, s1, s2]);
                        assert_eq!(got, z.reference(&x), "t={t} s0={s0:?} s1={s1:?} s2={s2:?}");
                    }
                }
            }
        }
    }

    /// Values at the edges of the domain on Tessera's `t`, split into three uniform shares
    /// `x = s_0 + s_1 + s_2`: `(x, [s_0, s_1, s_2])`.
    fn three_shares(x: &[i64], rng: &mut rand_chacha::ChaCha20Rng) -> (Vec<u64>, [Vec<u64>; 3]) {
        let m = Modulus::tessera();
        let x: Vec<u64> = x.iter().map(|&v| if v < 0 { m.t() - v.unsigned_abs() } else { v as u64 }).collect();
        let s0: Vec<u64> = x.iter().map(|_| m.random(rng)).collect();
        let s2: Vec<u64> = x.iter().map(|_| m.random(rng)).collect();
        let s1 = x.iter().zip(s0.iter().zip(&s2)).map(|(&x, (&a, &c))| m.sub(m.sub(x, a), c)).collect();
        (x, [s0, s1, s2])
    }

    #[test]
    fn shared_circuits_on_tessera_t_at_the_domain_edges() {
        use rand::{Rng, SeedableRng};
        let m = Modulus::tessera();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(41);
        for shift in [0u32, 8, 16] {
            let limit = (m.half() - (1 << shift)) as i64;
            let edges = [0, 1, -1, limit - 1, 1 - limit, limit / 2, -limit / 2, 70_000, -70_000, 127, -128];
            let trunc = ZtCircuit::shared(Nonlinear::ReluTrunc { shift }, m).unwrap();
            for round in 0..400 {
                let v = if round < edges.len() { edges[round] } else { rng.random_range(1 - limit..limit) };
                let (x, [s0, s1, s2]) = three_shares(&[v], &mut rng);
                assert!(trunc.in_domain(&x));
                assert_eq!(trunc.eval_plain_shared([&s0, &s1, &s2]), trunc.reference(&x), "shift {shift} x = {v}");
            }
            for relu in [false, true] {
                let pool = ZtCircuit::shared(Nonlinear::MaxPool { window: 4, relu, shift }, m).unwrap();
                for round in 0..200 {
                    let xs: Vec<i64> = (0..4)
                        .map(|j| {
                            if round < 20 {
                                edges[(round + j) % edges.len()]
                            } else {
                                rng.random_range(1 - limit..limit)
                            }
                        })
                        .collect();
                    let (x, [s0, s1, s2]) = three_shares(&xs, &mut rng);
                    assert_eq!(
                        pool.eval_plain_shared([&s0, &s1, &s2]),
                        pool.reference(&x),
                        "shift {shift} relu {relu} x = {xs:?}"
                    );
                }
            }
        }
    }

    /// Every bit of party 0's share reaches the output.
    #[test]
    fn flipping_a_bit_of_the_first_share_changes_the_output() {
        use rand::SeedableRng;
        let m = Modulus::tessera();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(43);
        let trunc = ZtCircuit::shared(Nonlinear::ReluTrunc { shift: 0 }, m).unwrap();
        let pool = ZtCircuit::shared(Nonlinear::MaxPool { window: 4, relu: true, shift: 0 }, m).unwrap();
        // x = 2^55: x ± 2^k stays positive and in the domain for k < 55.
        let mut flipped = 0;
        while flipped < 200 {
            let (_, [s0, s1, s2]) = three_shares(&[1 << 55, -5, 7, -(1 << 40)], &mut rng);
            let base = trunc.eval_plain_shared([&s0[..1], &s1[..1], &s2[..1]]);
            let pooled = pool.eval_plain_shared([&s0, &s1, &s2]);
            for k in 0..55 {
                let mut f0 = s0.clone();
                f0[0] ^= 1 << k;
                if f0[0] >= m.t() {
                    continue;
                }
                assert_ne!(trunc.eval_plain_shared([&f0[..1], &s1[..1], &s2[..1]]), base, "bit {k} of s_0");
                assert_ne!(pool.eval_plain_shared([&f0, &s1, &s2]), pooled, "bit {k} of s_0 of value 0");
                flipped += 1;
            }
        }
    }

    /// The rounding matches the fixed-point reference's rule on both sides of every tie.
    #[test]
    fn rounding_is_to_nearest_ties_up() {
        let m = Modulus::tessera();
        let z = ZtCircuit::new(Nonlinear::MaxPool { window: 2, relu: false, shift: 2 }, m).unwrap();
        let signed = |v: i64| if v < 0 { m.t() - v.unsigned_abs() } else { v as u64 };
        for (x, expected) in [(5, 1), (6, 2), (-6, -1), (-7, -2), (-2, 0), (-3, -1)] {
            let out = z.eval_plain(&[signed(x), signed(-100)], &[0, 0]);
            assert_eq!(m.to_signed(out), expected, "x = {x}");
        }
    }
}
