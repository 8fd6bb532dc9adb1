//! The order in which parties that XOR-share every wire evaluate a circuit: rounds of AND
//! gates, each one exchange, with the free gates between them.

use crate::circuit::{Circuit, Gate};

/// One round: the free gates that become computable, then the AND gates that do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// Indices (into [`Circuit::gates`]) of XOR and NOT gates, in circuit order.
    pub free: Vec<u32>,
    /// Indices of AND gates whose inputs are all known after [`Self::free`].
    pub ands: Vec<u32>,
}

/// A circuit's rounds and the position of every AND gate among the AND gates (its triple).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    rounds: Vec<Round>,
    triple: Vec<u32>,
}

impl Schedule {
    /// Levels every gate by its AND depth: a free gate sits at its inputs' deepest level, an
    /// AND gate one deeper. Round `r` evaluates the free gates of level `r`, then the AND
    /// gates of level `r + 1`, so the circuit takes its AND depth in exchanges.
    pub fn of(circuit: &Circuit) -> Self {
        let inputs = circuit.inputs();
        let mut level = vec![0u32; circuit.wires()];
        let mut rounds: Vec<Round> = vec![Round::default()];
        let mut triple = vec![u32::MAX; circuit.gates().len()];
        let mut ands = 0;
        for (g, gate) in circuit.gates().iter().enumerate() {
            let (l, is_and) = match *gate {
                Gate::Xor(a, b) => (level[a as usize].max(level[b as usize]), false),
                Gate::Not(a) => (level[a as usize], false),
                Gate::And(a, b) => (level[a as usize].max(level[b as usize]) + 1, true),
            };
            level[inputs + g] = l;
            let round = if is_and { l - 1 } else { l } as usize;
            if rounds.len() <= round {
                rounds.resize(round + 1, Round::default());
            }
            if is_and {
                rounds[round].ands.push(g as u32);
                triple[g] = ands;
                ands += 1;
            } else {
                rounds[round].free.push(g as u32);
            }
        }
        Self { rounds, triple }
    }

    /// The rounds, in order.
    pub fn rounds(&self) -> &[Round] {
        &self.rounds
    }

    /// Exchanges an evaluation takes: the rounds with AND gates.
    pub fn exchanges(&self) -> usize {
        self.rounds.iter().filter(|r| !r.ands.is_empty()).count()
    }

    /// The most AND gates of one round.
    pub fn widest(&self) -> usize {
        self.rounds.iter().map(|r| r.ands.len()).max().unwrap_or(0)
    }

    /// The triple of AND gate `gate` (its position among the AND gates).
    pub fn triple(&self, gate: u32) -> usize {
        self.triple[gate as usize] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::Builder;

    #[test]
    fn a_ripple_adder_takes_one_round_per_carry_and_every_gate_once() {
        let mut b = Builder::new(8, 8);
        let (x, y) = (b.evaluator_word(0, 8), b.garbler_word(0, 8));
        let (sum, carry) = b.add(&x, &y);
        let mut out = sum;
        out.push(carry);
        let c = b.finish(&out);
        let s = Schedule::of(&c);
        assert_eq!(s.exchanges(), 8, "one AND per bit, each waiting on the previous carry");
        assert_eq!(s.widest(), 1);
        let mut seen: Vec<u32> = s.rounds().iter().flat_map(|r| r.free.iter().chain(&r.ands).copied()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..c.gates().len() as u32).collect::<Vec<_>>());
        let triples: Vec<usize> = s.rounds().iter().flat_map(|r| r.ands.iter().map(|&g| s.triple(g))).collect();
        assert_eq!(triples, (0..c.and_gates()).collect::<Vec<_>>());
    }

    #[test]
    fn exchanges_of_the_shared_circuits() {
        use crate::modulus::Modulus;
        use crate::relu::{Nonlinear, ZtCircuit};
        let m = Modulus::tessera();
        let depth = |op| Schedule::of(ZtCircuit::shared(op, m).unwrap().circuit()).exchanges();
        let (trunc0, trunc8) = (depth(Nonlinear::ReluTrunc { shift: 0 }), depth(Nonlinear::ReluTrunc { shift: 8 }));
        let pool = depth(Nonlinear::MaxPool { window: 4, relu: true, shift: 8 });
        println!("exchanges: ReLU+trunc(0) {trunc0}, ReLU+trunc(8) {trunc8}, max pool 2x2 with ReLU(8) {pool}");
        assert_eq!((trunc0, trunc8, pool), (184, 184, 361));
    }
}
