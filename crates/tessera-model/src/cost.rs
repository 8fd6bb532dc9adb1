//! What each layer costs: multiply-accumulates, parameters, ReLUs, comparisons.

use serde::Serialize;

use crate::ir::{Model, Node, Op};

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
            macs: l.geometry.macs() as u64,
            params: (l.weight.len() + l.bias.as_ref().map_or(0, Vec::len)) as u64,
            ..Default::default()
        },
        Op::BatchNorm { scale, .. } => NodeCost { macs: n, params: 2 * scale.len() as u64, ..Default::default() },
        Op::Relu => NodeCost { relus: n, ..Default::default() },
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
