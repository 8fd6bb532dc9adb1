//! What each layer costs: multiply-accumulates, parameters, ReLUs, comparisons; and the
//! operations in `Z_t` the fixed-point runner performs per layer.

use serde::Serialize;

use crate::fixed::{FixedModel, FixedOp};
use crate::ir::{Model, Node, Op};

/// Counted operations in `Z_t`: multiplications, additions (subtractions included), and the
/// rest (sign tests, comparisons, rounding shifts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpCount {
    /// Multiplications.
    pub mul: u64,
    /// Additions and subtractions.
    pub add: u64,
    /// Sign tests, comparisons and rounding shifts.
    pub other: u64,
}

impl OpCount {
    /// All operations together.
    pub fn total(&self) -> u64 {
        self.mul + self.add + self.other
    }

    /// This count `n` times.
    pub fn times(self, n: u64) -> Self {
        Self { mul: self.mul * n, add: self.add * n, other: self.other * n }
    }
}

impl std::ops::AddAssign for OpCount {
    fn add_assign(&mut self, o: Self) {
        self.mul += o.mul;
        self.add += o.add;
        self.other += o.other;
    }
}

impl std::iter::Sum for OpCount {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |mut a, c| {
            a += c;
            a
        })
    }
}

impl FixedModel {
    /// What the plaintext runner computes for node `node` on one image: a multiply-accumulate
    /// is one multiplication and one addition, a bias one addition per output, a truncation
    /// one rounding shift per input, ReLU one sign test per element, max pooling
    /// `window − 1` comparisons per output.
    pub fn op_count(&self, node: usize) -> OpCount {
        let (n, input) = (self.shapes[node].len() as u64, self.value_shape(self.inputs[node][0]).len() as u64);
        let shifts = |truncate: bool| if truncate { input } else { 0 };
        match &self.ops[node] {
            FixedOp::Linear { kernel, bias } => {
                let macs = kernel.macs() as u64;
                OpCount { mul: macs, add: macs + if bias.is_some() { n } else { 0 }, other: 0 }
            }
            FixedOp::Relu { truncate } => OpCount { other: n + shifts(*truncate), ..Default::default() },
            FixedOp::LeakyRelu { truncate, .. } => {
                OpCount { mul: n, other: n + shifts(*truncate) + n, ..Default::default() }
            }
            FixedOp::MaxPool { window, relu, truncate } => OpCount {
                other: n * (window.size() as u64 - 1) + if *relu { n } else { 0 } + shifts(*truncate),
                ..Default::default()
            },
            FixedOp::SumPool { window } => OpCount { add: n * (window.size() as u64 - 1), ..Default::default() },
            FixedOp::Reshape | FixedOp::Pad { .. } => OpCount::default(),
            FixedOp::Add { lift } => OpCount { mul: if lift.is_some() { n } else { 0 }, add: n, other: 0 },
            FixedOp::Concat { lift } => {
                let lifted = lift.iter().zip(&self.inputs[node]).filter(|(l, _)| **l);
                OpCount { mul: lifted.map(|(_, &v)| self.value_shape(v).len() as u64).sum(), ..Default::default() }
            }
        }
    }

    /// What the plaintext runner computes for the whole model on one image.
    pub fn total_op_count(&self) -> OpCount {
        (0..self.ops.len()).map(|node| self.op_count(node)).sum()
    }
}

/// Per-image cost of one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeCost {
    /// Multiply-accumulates.
    pub macs: u64,
    /// Weights and biases.
    pub params: u64,
    /// ReLU evaluations (sign tests).
    pub relus: u64,
    /// Pairwise comparisons of max pooling.
    pub comparisons: u64,
}

/// The cost of one node.
pub fn node_cost(node: &Node) -> NodeCost {
    let n = node.shape.len() as u64;
    match &node.op {
        Op::Linear(l) => NodeCost {
            macs: l.macs() as u64,
            params: (l.weight.len() + l.bias.as_ref().map_or(0, Vec::len)) as u64,
            ..Default::default()
        },
        Op::BatchNorm { scale, .. } => NodeCost { macs: n, params: 2 * scale.len() as u64, ..Default::default() },
        Op::Relu | Op::LeakyRelu { .. } => NodeCost { relus: n, ..Default::default() },
        Op::MaxPool { window, relu } => NodeCost {
            relus: if *relu { n } else { 0 },
            comparisons: n * (window.size() as u64 - 1),
            ..Default::default()
        },
        _ => NodeCost::default(),
    }
}

/// ReLU evaluations per image.
pub fn relu_count(model: &Model) -> u64 {
    model.nodes().iter().map(|n| node_cost(n).relus).sum()
}

/// Total cost per image.
pub fn total(model: &Model) -> NodeCost {
    model.nodes().iter().map(node_cost).fold(NodeCost::default(), |a, c| NodeCost {
        macs: a.macs + c.macs,
        params: a.params + c.params,
        relus: a.relus + c.relus,
        comparisons: a.comparisons + c.comparisons,
    })
}
