//! The merging pass (PROTOCOLS.md section 2): fewer layers, multiplications and ReLUs, same
//! function.
//!
//! * BatchNorm after a convolution or FC layer folds into its weights and bias.
//! * Zero padding before a convolution folds into the convolution's padding.
//! * `ReLU → max pool` becomes one fused max pool + ReLU (`max(window, 0)`: identical output,
//!   one nonlinear step over `1/k` of the elements), and so does `max pool → ReLU`.
//! * An average pool becomes a sum pool; its `1/k` moves into the next linear layer's weights
//!   (positive scalings commute with ReLU and max pool), or into the previous linear layer when no
//!   next one is reachable. The sum pool is exact in `Z_t`, the `1/k` would not be.
//! * An average pool whose divisor varies by position (`count_include_pad = 0` over padding)
//!   becomes a sum pool too when a fully connected layer follows it through ReLUs and reshapes
//!   only: each position's `1/k` moves into the column of the weights that reads it. A
//!   convolution, a pool or a concatenation on the way shares one weight among positions with
//!   different divisors, so no such fold exists and the average pool stays (the fixed-point
//!   model refuses it by name).

use tessera_field::kernels::Window2d;

use crate::error::Result;
use crate::ir::{Model, Op, ValueId};

/// What the merging pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MergeReport {
    /// Nodes before.
    pub layers_before: usize,
    /// Nodes after.
    pub layers_after: usize,
    /// BatchNorm nodes folded into a linear layer.
    pub batchnorms_folded: usize,
    /// Pad nodes folded into a convolution.
    pub pads_folded: usize,
    /// ReLUs fused with a max pool.
    pub relus_fused: usize,
    /// Average pools turned into sum pools.
    pub avgpools_folded: usize,
    /// Multiplications per image removed.
    pub multiplications_saved: u64,
    /// ReLU evaluations per image before.
    pub relus_before: u64,
    /// ReLU evaluations per image after.
    pub relus_after: u64,
}

/// Which merging steps run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Merging {
    /// Every step: what every suite runs.
    #[default]
    Full,
    /// Only the steps the fixed-point model cannot do without (BatchNorm and average-pool
    /// folds); pads stay layers and ReLUs stay apart from max pools. The same function: the
    /// ablation that measures what the other steps save.
    Required,
}

/// Runs every merging step and reports what changed.
pub fn merge(model: &Model) -> Result<(Model, MergeReport)> {
    merge_with(model, Merging::Full)
}

/// Runs the merging steps `merging` names and reports what changed.
pub fn merge_with(model: &Model, merging: Merging) -> Result<(Model, MergeReport)> {
    let mut report = MergeReport {
        layers_before: model.nodes().len(),
        relus_before: crate::cost::relu_count(model),
        ..Default::default()
    };
    let mut m = fold_batchnorm(model, &mut report)?;
    if merging == Merging::Full {
        m = fold_pad(&m, &mut report)?;
        m = fuse_relu_maxpool(&m, &mut report)?;
    }
    let m = fold_avgpool(&m, &mut report)?;
    report.layers_after = m.nodes().len();
    report.relus_after = crate::cost::relu_count(&m);
    Ok((m, report))
}

/// A model being edited: nodes may be removed, their output aliased to another value.
struct Draft<'a> {
    model: &'a Model,
    nodes: Vec<Option<(String, Op, Vec<ValueId>)>>,
    alias: Vec<ValueId>,
    readers: Vec<Vec<usize>>,
}

impl<'a> Draft<'a> {
    fn new(model: &'a Model) -> Self {
        let mut readers = vec![Vec::new(); model.nodes().len() + 1];
        for (i, n) in model.nodes().iter().enumerate() {
            for &v in &n.inputs {
                readers[v].push(i);
            }
        }
        Self {
            model,
            nodes: model.nodes().iter().map(|n| Some((n.name.clone(), n.op.clone(), n.inputs.clone()))).collect(),
            alias: (0..=model.nodes().len()).collect(),
            readers,
        }
    }

    /// The only node reading value `v`, if `v` has exactly one reader and is not the output.
    fn sole_reader(&self, v: ValueId) -> Option<usize> {
        (self.readers[v].len() == 1 && v != self.model.output()).then(|| self.readers[v][0])
    }

    /// The node producing value `v`, if any.
    fn producer(&self, v: ValueId) -> Option<usize> {
        v.checked_sub(1)
    }

    fn remove(&mut self, node: usize, alias_to: ValueId) {
        self.nodes[node] = None;
        self.alias[node + 1] = alias_to;
    }

    /// The value `v` stands for after removals.
    fn resolve(&self, mut v: ValueId) -> ValueId {
        while self.alias[v] != v {
            v = self.alias[v];
        }
        v
    }

    fn op_mut(&mut self, node: usize) -> &mut Op {
        &mut self.nodes[node].as_mut().expect("live node").1
    }

    fn finish(mut self) -> Result<Model> {
        let mut new_id = vec![0; self.alias.len()];
        let mut nodes = Vec::new();
        for (i, n) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            if let Some((name, op, inputs)) = n {
                let inputs = inputs.into_iter().map(|v| new_id[self.resolve(v)]).collect();
                nodes.push((name, op, inputs));
                new_id[i + 1] = nodes.len();
            }
        }
        let output = new_id[self.resolve(self.model.output())];
        Model::new(self.model.input_shape(), nodes, output, self.model.meta.clone())
    }
}

fn fold_batchnorm(model: &Model, report: &mut MergeReport) -> Result<Model> {
    let mut d = Draft::new(model);
    for (i, node) in model.nodes().iter().enumerate() {
        let Op::BatchNorm { scale, shift } = &node.op else {
            continue;
        };
        // A chain of them folds one after another into the same layer.
        let v = d.resolve(node.inputs[0]);
        let Some(j) = d.producer(v).filter(|_| d.sole_reader(node.inputs[0]) == Some(i)) else {
            continue;
        };
        let Op::Linear(l) = d.op_mut(j) else { continue };
        let per_out = l.terms_per_output();
        for (o, w) in l.weight.chunks_mut(per_out).enumerate() {
            w.iter_mut().for_each(|w| *w *= scale[o]);
        }
        let bias = l.bias.get_or_insert_with(|| vec![0.0; scale.len()]);
        for (o, b) in bias.iter_mut().enumerate() {
            *b = *b * scale[o] + shift[o];
        }
        report.batchnorms_folded += 1;
        report.multiplications_saved += node.shape.len() as u64;
        d.remove(i, v);
    }
    d.finish()
}

fn fold_pad(model: &Model, report: &mut MergeReport) -> Result<Model> {
    let mut d = Draft::new(model);
    for (i, node) in model.nodes().iter().enumerate() {
        let Op::Linear(l) = &node.op else { continue };
        let v = node.inputs[0];
        if l.dense {
            continue;
        }
        let Some(j) = d.producer(v).filter(|_| d.sole_reader(v) == Some(i)) else {
            continue;
        };
        let Op::Pad { pads } = model.nodes()[j].op else {
            continue;
        };
        let source = model.nodes()[j].inputs[0];
        let source_shape = model.value_shape(source);
        let (_, op, inputs) = d.nodes[i].as_mut().expect("live node");
        if let Op::Linear(l) = op {
            l.geometry.input = source_shape;
            for (p, extra) in l.geometry.window.pads.iter_mut().zip(pads) {
                *p += extra;
            }
        }
        *inputs = vec![source];
        d.nodes[j] = None;
        report.pads_folded += 1;
    }
    d.finish()
}

fn fuse_relu_maxpool(model: &Model, report: &mut MergeReport) -> Result<Model> {
    let mut d = Draft::new(model);
    for (i, node) in model.nodes().iter().enumerate() {
        let v = node.inputs[0];
        let Some(j) = d.producer(v).filter(|_| d.sole_reader(v) == Some(i)) else {
            continue;
        };
        if d.nodes[j].is_none() {
            continue;
        }
        match (&model.nodes()[j].op, &node.op) {
            // ReLU → max pool  ⇒  max pool + ReLU on the ReLU's input.
            (Op::Relu, Op::MaxPool { relu: false, .. }) => {
                let source = model.nodes()[j].inputs[0];
                let (_, op, inputs) = d.nodes[i].as_mut().expect("live node");
                if let Op::MaxPool { relu, .. } = op {
                    *relu = true;
                }
                *inputs = vec![source];
                d.nodes[j] = None;
            }
            // max pool → ReLU  ⇒  one fused step.
            (Op::MaxPool { relu: false, .. }, Op::Relu) => {
                if let Op::MaxPool { relu, .. } = d.op_mut(j) {
                    *relu = true;
                }
                d.remove(i, v);
            }
            _ => continue,
        }
        report.relus_fused += 1;
    }
    d.finish()
}

fn fold_avgpool(model: &Model, report: &mut MergeReport) -> Result<Model> {
    let mut d = Draft::new(model);
    for (i, node) in model.nodes().iter().enumerate() {
        let Op::AvgPool { window, exclude_pad } = node.op else {
            continue;
        };
        let folded = if exclude_pad {
            fold_position_divisors(&mut d, i, window)
        } else {
            fold_uniform_divisor(&mut d, i, window)
        };
        if folded {
            *d.op_mut(i) = Op::SumPool { window };
            report.avgpools_folded += 1;
            report.multiplications_saved += node.shape.len() as u64;
        }
    }
    d.finish()
}

/// The linear layer that node `i`'s output reaches through sole readers `passes` lets through.
fn next_linear(d: &Draft, i: usize, passes: impl Fn(&Op) -> bool) -> Option<usize> {
    let mut cur = i + 1;
    while let Some(r) = d.sole_reader(cur) {
        match &d.model.nodes()[r].op {
            Op::Linear(_) => return Some(r),
            op if passes(op) => cur = r + 1,
            _ => return None,
        }
    }
    None
}

/// Moves average pool `i`'s `1/k` into the next linear layer (through ops that commute with a
/// positive scaling), else into the linear layer that produces its input, bias included.
fn fold_uniform_divisor(d: &mut Draft, i: usize, window: Window2d) -> bool {
    let model = d.model;
    let forward = next_linear(d, i, |op| {
        matches!(op, Op::Relu | Op::MaxPool { .. } | Op::SumPool { .. } | Op::Reshape { .. } | Op::Pad { .. })
    });
    let v = model.nodes()[i].inputs[0];
    let target = forward.map(|t| (t, false)).or_else(|| {
        d.producer(v)
            .filter(|&j| d.sole_reader(v) == Some(i) && matches!(model.nodes()[j].op, Op::Linear(_)))
            .map(|j| (j, true))
    });
    let Some((t, with_bias)) = target else {
        return false;
    };
    let factor = 1.0 / window.size() as f32;
    if let Op::Linear(l) = d.op_mut(t) {
        l.weight.iter_mut().for_each(|w| *w *= factor);
        if with_bias && let Some(b) = &mut l.bias {
            b.iter_mut().for_each(|b| *b *= factor);
        }
    }
    true
}

/// Moves average pool `i`'s per-position divisors into the columns of the fully connected layer
/// its output reaches through ReLUs and reshapes (which keep every element's flat index).
fn fold_position_divisors(d: &mut Draft, i: usize, window: Window2d) -> bool {
    let input = d.model.value_shape(d.model.nodes()[i].inputs[0]);
    let Some(t) = next_linear(d, i, |op| matches!(op, Op::Relu | Op::Reshape { .. })) else {
        return false;
    };
    let Op::Linear(l) = d.op_mut(t) else { return false };
    if !l.dense {
        return false;
    }
    let counts = window.inside_counts(input.h, input.w).expect("window checked when the model was built");
    let features = l.terms_per_output();
    for row in l.weight.chunks_mut(features) {
        for (j, w) in row.iter_mut().enumerate() {
            *w /= counts[j % counts.len()] as f32;
        }
    }
    true
}
