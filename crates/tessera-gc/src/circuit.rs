//! Boolean circuits and the builders for the arithmetic the Z_t circuits need.
//!
//! A [`Circuit`] has the evaluator's input wires first, then the garbler's, then one wire per
//! gate in topological order. Gates are XOR and NOT (free under free-XOR) and AND (two
//! ciphertexts under half-gates). The [`Builder`] folds constants, so operations on public
//! constants cost no AND gates, and [`Builder::finish`] drops gates no output depends on.
//! Words are little-endian (`word[0]` is the least significant bit).

/// A wire index.
pub type WireId = u32;

/// One gate; its output is the next wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// `a ⊕ b` (free).
    Xor(WireId, WireId),
    /// `a ∧ b` (two ciphertexts).
    And(WireId, WireId),
    /// `¬a` (free).
    Not(WireId),
}

/// A boolean circuit with two parties' inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Circuit {
    evaluator_inputs: usize,
    garbler_inputs: usize,
    gates: Vec<Gate>,
    outputs: Vec<WireId>,
    and_gates: usize,
}

impl Circuit {
    /// Number of input wires the evaluator supplies (wires `0..evaluator_inputs`).
    pub fn evaluator_inputs(&self) -> usize {
        self.evaluator_inputs
    }

    /// Number of input wires the garbler supplies (the next ones).
    pub fn garbler_inputs(&self) -> usize {
        self.garbler_inputs
    }

    /// All input wires.
    pub fn inputs(&self) -> usize {
        self.evaluator_inputs + self.garbler_inputs
    }

    /// All wires: inputs, then one per gate.
    pub fn wires(&self) -> usize {
        self.inputs() + self.gates.len()
    }

    /// The gates, in evaluation order.
    pub fn gates(&self) -> &[Gate] {
        &self.gates
    }

    /// The output wires.
    pub fn outputs(&self) -> &[WireId] {
        &self.outputs
    }

    /// Number of AND gates: the only ones that cost ciphertexts.
    pub fn and_gates(&self) -> usize {
        self.and_gates
    }

    /// Evaluates the circuit in the clear (the reference for the garbled evaluation).
    ///
    /// # Panics
    /// If the input counts do not match the circuit.
    pub fn eval_plain(&self, evaluator: &[bool], garbler: &[bool]) -> Vec<bool> {
        assert_eq!(evaluator.len(), self.evaluator_inputs, "evaluator input count");
        assert_eq!(garbler.len(), self.garbler_inputs, "garbler input count");
        let mut w: Vec<bool> = Vec::with_capacity(self.wires());
        w.extend_from_slice(evaluator);
        w.extend_from_slice(garbler);
        for g in &self.gates {
            let v = match *g {
                Gate::Xor(a, b) => w[a as usize] ^ w[b as usize],
                Gate::And(a, b) => w[a as usize] & w[b as usize],
                Gate::Not(a) => !w[a as usize],
            };
            w.push(v);
        }
        self.outputs.iter().map(|&o| w[o as usize]).collect()
    }
}

/// A bit while building: a public constant or a wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bit {
    /// A constant known to both parties.
    Const(bool),
    /// A wire.
    Wire(WireId),
}

/// A little-endian word of bits.
pub type Word = Vec<Bit>;

/// Builds a [`Circuit`] gate by gate, folding constants.
#[derive(Debug)]
pub struct Builder {
    evaluator_inputs: usize,
    garbler_inputs: usize,
    gates: Vec<Gate>,
}

impl Builder {
    /// A circuit with these input counts.
    pub fn new(evaluator_inputs: usize, garbler_inputs: usize) -> Self {
        Self { evaluator_inputs, garbler_inputs, gates: Vec::new() }
    }

    /// The evaluator's input bits `start..start + len`.
    pub fn evaluator_word(&self, start: usize, len: usize) -> Word {
        assert!(start + len <= self.evaluator_inputs, "evaluator input out of range");
        (start..start + len).map(|i| Bit::Wire(i as WireId)).collect()
    }

    /// The garbler's input bits `start..start + len`.
    pub fn garbler_word(&self, start: usize, len: usize) -> Word {
        assert!(start + len <= self.garbler_inputs, "garbler input out of range");
        (start..start + len).map(|i| Bit::Wire((self.evaluator_inputs + i) as WireId)).collect()
    }

    /// The `len`-bit constant `value`.
    pub fn constant(value: u64, len: usize) -> Word {
        (0..len).map(|i| Bit::Const(i < 64 && (value >> i) & 1 == 1)).collect()
    }

    fn push(&mut self, g: Gate) -> Bit {
        self.gates.push(g);
        Bit::Wire((self.evaluator_inputs + self.garbler_inputs + self.gates.len() - 1) as WireId)
    }

    /// `a ⊕ b` (free).
    pub fn xor(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(x), Bit::Const(y)) => Bit::Const(x ^ y),
            (Bit::Const(false), w) | (w, Bit::Const(false)) => w,
            (Bit::Const(true), w) | (w, Bit::Const(true)) => self.not(w),
            (Bit::Wire(x), Bit::Wire(y)) if x == y => Bit::Const(false),
            (Bit::Wire(x), Bit::Wire(y)) => self.push(Gate::Xor(x, y)),
        }
    }

    /// `¬a` (free).
    pub fn not(&mut self, a: Bit) -> Bit {
        match a {
            Bit::Const(x) => Bit::Const(!x),
            Bit::Wire(x) => self.push(Gate::Not(x)),
        }
    }

    /// `a ∧ b` (one AND gate unless a constant folds it away).
    pub fn and(&mut self, a: Bit, b: Bit) -> Bit {
        match (a, b) {
            (Bit::Const(false), _) | (_, Bit::Const(false)) => Bit::Const(false),
            (Bit::Const(true), w) | (w, Bit::Const(true)) => w,
            (Bit::Wire(x), Bit::Wire(y)) if x == y => a,
            (Bit::Wire(x), Bit::Wire(y)) => self.push(Gate::And(x, y)),
        }
    }

    /// `a ∨ b = a ⊕ b ⊕ (a ∧ b)` (one AND gate).
    pub fn or(&mut self, a: Bit, b: Bit) -> Bit {
        let ab = self.and(a, b);
        let x = self.xor(a, b);
        self.xor(x, ab)
    }

    /// `s ? x1 : x0 = x0 ⊕ s ∧ (x0 ⊕ x1)` (one AND gate).
    pub fn mux(&mut self, s: Bit, x0: Bit, x1: Bit) -> Bit {
        let d = self.xor(x0, x1);
        let sd = self.and(s, d);
        self.xor(x0, sd)
    }

    /// `majority(a, b, c) = c ⊕ ((a ⊕ c) ∧ (b ⊕ c))` (one AND gate): a carry or a borrow.
    fn majority(&mut self, a: Bit, b: Bit, c: Bit) -> Bit {
        let ac = self.xor(a, c);
        let bc = self.xor(b, c);
        let t = self.and(ac, bc);
        self.xor(c, t)
    }

    /// `a + b` over equal-length words: the sum modulo `2^len` and the carry out (ripple
    /// carry, one AND per bit).
    pub fn add(&mut self, a: &[Bit], b: &[Bit]) -> (Word, Bit) {
        assert_eq!(a.len(), b.len(), "adder operands differ in length");
        let mut carry = Bit::Const(false);
        let mut sum = Vec::with_capacity(a.len());
        for (&x, &y) in a.iter().zip(b) {
            let xy = self.xor(x, y);
            sum.push(self.xor(xy, carry));
            carry = self.majority(x, y, carry);
        }
        (sum, carry)
    }

    /// `a − b` over equal-length words: the difference modulo `2^len` and the borrow out
    /// (set when `a < b`; one AND per bit).
    pub fn sub(&mut self, a: &[Bit], b: &[Bit]) -> (Word, Bit) {
        assert_eq!(a.len(), b.len(), "subtractor operands differ in length");
        let mut borrow = Bit::Const(false);
        let mut diff = Vec::with_capacity(a.len());
        for (&x, &y) in a.iter().zip(b) {
            let xy = self.xor(x, y);
            diff.push(self.xor(xy, borrow));
            let nx = self.not(x);
            borrow = self.majority(nx, y, borrow);
        }
        (diff, borrow)
    }

    /// `[a < b]` for unsigned words (the borrow of `a − b`; one AND per bit).
    pub fn less_than(&mut self, a: &[Bit], b: &[Bit]) -> Bit {
        self.sub(a, b).1
    }

    /// `[a > k]` for an unsigned word and a public constant (at most one AND per bit; none
    /// for the constant's trailing zeros).
    pub fn greater_than_const(&mut self, a: &[Bit], k: u64) -> Bit {
        assert!(a.len() >= 64 || k >> a.len() == 0, "constant wider than the word");
        // g = [a[..i] > k[..i]], scanning from the least significant bit.
        let mut g = Bit::Const(false);
        for (i, &x) in a.iter().enumerate() {
            g = if i < 64 && (k >> i) & 1 == 1 { self.and(x, g) } else { self.or(x, g) };
        }
        g
    }

    /// `s ? x1 : x0`, bitwise (one AND per bit that differs).
    pub fn mux_word(&mut self, s: Bit, x0: &[Bit], x1: &[Bit]) -> Word {
        assert_eq!(x0.len(), x1.len(), "multiplexer operands differ in length");
        x0.iter().zip(x1).map(|(&a, &b)| self.mux(s, a, b)).collect()
    }

    /// Finishes the circuit with these outputs, dropping every gate no output depends on.
    /// A constant output is materialized from input wire 0 (`w ⊕ w`, free).
    ///
    /// # Panics
    /// If an output is a constant and the circuit has no inputs.
    pub fn finish(mut self, outputs: &[Bit]) -> Circuit {
        let inputs = self.evaluator_inputs + self.garbler_inputs;
        let mut out_wires = Vec::with_capacity(outputs.len());
        for &o in outputs {
            let w = match o {
                Bit::Wire(w) => Bit::Wire(w),
                Bit::Const(v) => {
                    assert!(inputs > 0, "a constant output needs an input wire");
                    let zero = self.push(Gate::Xor(0, 0));
                    if v { self.push(Gate::Not(wire(zero))) } else { zero }
                }
            };
            out_wires.push(wire(w));
        }
        // Liveness, backwards.
        let mut live = vec![false; inputs + self.gates.len()];
        for &o in &out_wires {
            live[o as usize] = true;
        }
        for g in (0..self.gates.len()).rev() {
            if live[inputs + g] {
                match self.gates[g] {
                    Gate::Xor(a, b) | Gate::And(a, b) => {
                        live[a as usize] = true;
                        live[b as usize] = true;
                    }
                    Gate::Not(a) => live[a as usize] = true,
                }
            }
        }
        // Renumber the live gates.
        let mut map: Vec<WireId> = (0..inputs as WireId).collect();
        map.resize(inputs + self.gates.len(), WireId::MAX);
        let mut gates = Vec::new();
        for (g, gate) in self.gates.iter().enumerate() {
            if !live[inputs + g] {
                continue;
            }
            let m = |w: WireId| map[w as usize];
            gates.push(match *gate {
                Gate::Xor(a, b) => Gate::Xor(m(a), m(b)),
                Gate::And(a, b) => Gate::And(m(a), m(b)),
                Gate::Not(a) => Gate::Not(m(a)),
            });
            map[inputs + g] = (inputs + gates.len() - 1) as WireId;
        }
        let and_gates = gates.iter().filter(|g| matches!(g, Gate::And(..))).count();
        Circuit {
            evaluator_inputs: self.evaluator_inputs,
            garbler_inputs: self.garbler_inputs,
            gates,
            outputs: out_wires.iter().map(|&o| map[o as usize]).collect(),
            and_gates,
        }
    }
}

fn wire(b: Bit) -> WireId {
    match b {
        Bit::Wire(w) => w,
        Bit::Const(_) => unreachable!("materialized above"),
    }
}

/// The `len` low bits of `v`, little-endian.
pub fn to_bits(v: u64, len: usize, out: &mut Vec<bool>) {
    out.extend((0..len).map(|i| (v >> i) & 1 == 1));
}

/// The value of little-endian bits.
pub fn from_bits(bits: &[bool]) -> u64 {
    bits.iter().enumerate().fold(0, |acc, (i, &b)| acc | (u64::from(b) << i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A circuit of two `n`-bit evaluator words `a`, `b` and one garbler bit `s`, computing
    /// `f(builder, a, b, s)`.
    fn two_words(n: usize, f: impl Fn(&mut Builder, &[Bit], &[Bit], Bit) -> Vec<Bit>) -> Circuit {
        let mut bld = Builder::new(2 * n, 1);
        let a = bld.evaluator_word(0, n);
        let b = bld.evaluator_word(n, n);
        let s = bld.garbler_word(0, 1)[0];
        let out = f(&mut bld, &a, &b, s);
        bld.finish(&out)
    }

    fn run(c: &Circuit, n: usize, a: u64, b: u64, s: bool) -> u64 {
        let mut e = Vec::new();
        to_bits(a, n, &mut e);
        to_bits(b, n, &mut e);
        from_bits(&c.eval_plain(&e, &[s]))
    }

    #[test]
    fn gates_fold_constants() {
        let mut bld = Builder::new(1, 0);
        let w = bld.evaluator_word(0, 1)[0];
        assert_eq!(bld.and(w, Bit::Const(false)), Bit::Const(false));
        assert_eq!(bld.and(w, Bit::Const(true)), w);
        assert_eq!(bld.xor(w, w), Bit::Const(false));
        assert_eq!(bld.xor(Bit::Const(true), Bit::Const(true)), Bit::Const(false));
        let c = bld.finish(&[Bit::Const(true), Bit::Const(false), w]);
        assert_eq!(c.and_gates(), 0);
        for v in [false, true] {
            assert_eq!(c.eval_plain(&[v], &[]), vec![true, false, v]);
        }
    }

    #[test]
    fn gate_truth_tables() {
        let mut bld = Builder::new(1, 1);
        let a = bld.evaluator_word(0, 1)[0];
        let b = bld.garbler_word(0, 1)[0];
        let x = bld.xor(a, b);
        let y = bld.and(a, b);
        let z = bld.not(a);
        let o = bld.or(a, b);
        let m = bld.mux(a, Bit::Const(false), b);
        let c = bld.finish(&[x, y, z, o, m]);
        assert_eq!(c.and_gates(), 3);
        for (va, vb) in [(false, false), (false, true), (true, false), (true, true)] {
            assert_eq!(c.eval_plain(&[va], &[vb]), vec![va ^ vb, va & vb, !va, va | vb, va & vb]);
        }
    }

    #[test]
    fn arithmetic_is_exhaustively_right_on_five_bits() {
        let n = 5;
        let add = two_words(n, |bld, a, b, _| {
            let (mut s, c) = bld.add(a, b);
            s.push(c);
            s
        });
        let sub = two_words(n, |bld, a, b, _| {
            let (mut d, br) = bld.sub(a, b);
            d.push(br);
            d
        });
        let lt = two_words(n, |bld, a, b, _| vec![bld.less_than(a, b)]);
        let mux = two_words(n, |bld, a, b, s| bld.mux_word(s, a, b));
        assert_eq!((add.and_gates(), sub.and_gates(), lt.and_gates(), mux.and_gates()), (5, 5, 5, 5));
        for a in 0..32u64 {
            for b in 0..32u64 {
                assert_eq!(run(&add, n, a, b, false), a + b);
                assert_eq!(run(&sub, n, a, b, false), (a.wrapping_sub(b) & 31) | (u64::from(a < b) << 5));
                assert_eq!(run(&lt, n, a, b, false), u64::from(a < b));
                assert_eq!(run(&mux, n, a, b, false), a);
                assert_eq!(run(&mux, n, a, b, true), b);
            }
        }
        for k in 0..32u64 {
            let gt = two_words(n, |bld, a, _, _| vec![bld.greater_than_const(a, k)]);
            assert!(gt.and_gates() <= n);
            for a in 0..32u64 {
                assert_eq!(run(&gt, n, a, 0, false), u64::from(a > k), "{a} > {k}");
            }
        }
    }

    #[test]
    fn unused_gates_are_dropped() {
        // Only the sum is output, so the final carry's AND goes.
        let c = two_words(8, |bld, a, b, _| bld.add(a, b).0);
        assert_eq!(c.and_gates(), 7);
    }

    proptest! {
        #[test]
        fn arithmetic_on_61_bits(a in 0u64..1 << 61, b in 0u64..1 << 61, k in 0u64..1 << 61) {
            let n = 61;
            let c = two_words(n, |bld, x, y, _| {
                let (mut s, carry) = bld.add(x, y);
                let (d, borrow) = bld.sub(x, y);
                s.push(carry);
                s.extend(d);
                s.push(borrow);
                s.push(bld.greater_than_const(x, k));
                s
            });
            let mut e = Vec::new();
            to_bits(a, n, &mut e);
            to_bits(b, n, &mut e);
            let out = c.eval_plain(&e, &[false]);
            prop_assert_eq!(from_bits(&out[..62]), a + b);
            prop_assert_eq!(from_bits(&out[62..123]), a.wrapping_sub(b) & ((1 << 61) - 1));
            prop_assert_eq!(out[123], a < b);
            prop_assert_eq!(out[124], a > k);
        }
    }
}
