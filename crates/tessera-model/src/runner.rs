//! Stepwise evaluation of a fixed-point model: the linear layers run here, and each nonlinear
//! layer is handed to the caller, who evaluates it (in the clear for the reference, by a secure
//! protocol in the suites) and hands the result back.
//!
//! Run on an additive share, the linear layers are the *factor functions* of PROTOCOLS.md
//! section 2: exactly one party adds the constants (biases), everything else is linear.

use std::sync::{Arc, Mutex};

use tessera_field::kernels::conv::conv2d_zt;
use tessera_field::kernels::pool::sum_pool_zt;
use tessera_field::vector::vectorized;
use tessera_field::zt;
use zeroize::Zeroize;

use crate::fixed::{FixedModel, FixedOp};
use crate::nonlinear::NonlinearLayer;
use crate::plain::{concat_into, pad_into};

/// A layer the runner hands to its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A ReLU or max pool.
    Nonlinear(NonlinearLayer),
    /// A convolution or FC layer (when linear layers are offloaded): the caller returns the
    /// product without bias; the runner adds the bias.
    Linear(u32),
}

impl Step {
    /// The model node.
    pub fn node(&self) -> u32 {
        match self {
            Step::Nonlinear(l) => l.node,
            Step::Linear(n) => *n,
        }
    }
}

/// What a runner completed at every nonlinear layer: the layer, its input and its output (one
/// party's shares in a secure run). In-memory test runs attach one to every party and add the
/// shares up, to check each layer of a secure run against the reference on that same input.
/// Values are wiped when the last clone is dropped; `Debug` shows the count only.
#[derive(Clone, Default)]
pub struct LayerTrace(Arc<Mutex<Vec<TracedLayer>>>);

/// One nonlinear layer as a [`LayerTrace`] recorded it.
#[derive(Clone)]
pub struct TracedLayer {
    /// The layer.
    pub layer: NonlinearLayer,
    /// Its input (`batch × input` values).
    pub input: Vec<u64>,
    /// Its output (`batch × output` values).
    pub output: Vec<u64>,
}

impl LayerTrace {
    /// The layers recorded so far, in order.
    pub fn layers(&self) -> Vec<TracedLayer> {
        self.0.lock().expect("trace").clone()
    }
}

impl std::fmt::Debug for LayerTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayerTrace({} layers)", self.0.lock().map_or(0, |l| l.len()))
    }
}

impl Drop for TracedLayer {
    fn drop(&mut self) {
        self.input.zeroize();
        self.output.zeroize();
    }
}

/// One evaluation of a fixed-point model on a batch (plaintext values or one party's share).
/// Its values are wiped when it is dropped.
pub struct Runner {
    model: Arc<FixedModel>,
    batch: usize,
    adds_constants: bool,
    offload_linear: bool,
    values: Vec<Vec<u64>>,
    pending: Option<Step>,
    trace: Option<LayerTrace>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").field("batch", &self.batch).field("next", &self.values.len()).finish_non_exhaustive()
    }
}

impl Runner {
    /// Starts on `input` (encoded at activation scale, `batch` images). `adds_constants` is set
    /// for the plaintext reference and for exactly one share-holder.
    pub fn new(model: Arc<FixedModel>, input: Vec<u64>, batch: usize, adds_constants: bool) -> Self {
        Self { model, batch, adds_constants, offload_linear: false, values: vec![input], pending: None, trace: None }
    }

    /// Records every nonlinear layer's input and output into `trace` (in-memory test runs).
    #[doc(hidden)]
    pub fn traced(mut self, trace: Option<LayerTrace>) -> Self {
        self.trace = trace;
        self
    }

    /// Hands convolutions and FC layers to the caller too (see [`step`](Self::step)).
    pub fn offloading_linear(mut self) -> Self {
        self.offload_linear = true;
        self
    }

    /// Runs linear layers up to the next nonlinear layer, which it returns; `None` once the
    /// logits are computed.
    pub fn advance(&mut self) -> Option<NonlinearLayer> {
        assert!(!self.offload_linear, "an offloading runner is driven by step()");
        self.step().map(|s| match s {
            Step::Nonlinear(l) => l,
            Step::Linear(_) => unreachable!("linear layers run here"),
        })
    }

    /// Runs the layers this runner computes itself up to the next one it hands out, which it
    /// returns; `None` once the logits are computed.
    pub fn step(&mut self) -> Option<Step> {
        assert!(self.pending.is_none(), "the pending layer must be completed first");
        let model = self.model.clone();
        while self.values.len() <= model.ops.len() {
            let i = self.values.len() - 1;
            let step = match (&model.ops[i], model.nonlinear_layer(i)) {
                (_, Some(layer)) => Some(Step::Nonlinear(layer)),
                (FixedOp::Linear { .. }, None) if self.offload_linear => Some(Step::Linear(i as u32)),
                _ => None,
            };
            if step.is_some() {
                self.pending = step;
                return step;
            }
            let out = self.linear(&model, i);
            self.values.push(out);
        }
        None
    }

    /// The input of the pending layer.
    pub fn pending_input(&self) -> &[u64] {
        let node = self.pending.expect("a layer is pending").node();
        &self.values[self.model.inputs[node as usize][0]]
    }

    /// Hands back the output of the pending layer (for a linear layer: the product without
    /// bias).
    pub fn complete(&mut self, mut output: Vec<u64>) {
        let step = self.pending.take().expect("a layer is pending");
        let node = step.node() as usize;
        assert_eq!(output.len(), self.batch * self.model.shapes[node].len(), "layer output length");
        if let (Step::Linear(_), FixedOp::Linear { bias: Some(b), .. }) = (step, &self.model.ops[node])
            && self.adds_constants
        {
            fold_bias(&mut output, b, self.model.shapes[node].plane(), zt::add);
        }
        if let (Step::Nonlinear(layer), Some(trace)) = (step, &self.trace) {
            let input = self.values[self.model.inputs[node][0]].clone();
            trace.0.lock().expect("trace").push(TracedLayer { layer, input, output: output.clone() });
        }
        self.values.push(output);
    }

    /// The logits (after [`advance`](Self::advance) returned `None`).
    pub fn output(&self) -> &[u64] {
        &self.values[self.model.output]
    }

    fn linear(&self, model: &FixedModel, i: usize) -> Vec<u64> {
        let x = &self.values[model.inputs[i][0]];
        let in_shape = model.value_shape(model.inputs[i][0]);
        let shape = model.shapes[i];
        let batch = self.batch;
        match &model.ops[i] {
            FixedOp::Linear { kernel, bias } => {
                let mut y = conv2d_zt(kernel, x, batch, rayon::current_num_threads());
                if let (Some(b), true) = (bias, self.adds_constants) {
                    fold_bias(&mut y, b, shape.plane(), zt::add);
                }
                y
            }
            FixedOp::SumPool { window } => {
                let mut y = vec![0; batch * shape.len()];
                sum_pool_zt(x, in_shape, window, batch, &mut y);
                y
            }
            FixedOp::Reshape => x.clone(),
            FixedOp::Pad { pads } => {
                let mut y = vec![0; batch * shape.len()];
                pad_into(x, in_shape, *pads, &mut y, 0);
                y
            }
            FixedOp::Add { lift } => {
                let f_w = model.params.f_w();
                let (a, b) = (&self.values[model.inputs[i][0]], &self.values[model.inputs[i][1]]);
                // Addition commutes: the branch to lift to product scale (if any) goes first.
                let (lifted, other) = if *lift == Some(1) { (b, a) } else { (a, b) };
                zt::mul_pow2_add(lifted, if lift.is_some() { f_w } else { 0 }, other)
            }
            FixedOp::Concat { lift } => {
                let f_w = model.params.f_w();
                let parts: Vec<&[u64]> = model.inputs[i].iter().map(|&v| &self.values[v][..]).collect();
                let mut y = vec![0; batch * shape.len()];
                concat_into(&parts, batch, &mut y, |k, v| if lift[k] { zt::mul_pow2(v, f_w) } else { v });
                y
            }
            FixedOp::Relu { .. } | FixedOp::LeakyRelu { .. } | FixedOp::MaxPool { .. } => {
                unreachable!("nonlinear layers are handed out")
            }
        }
    }
}

/// Folds each output channel's bias into its plane of `y` (any number of images) with `op`
/// (`zt::add` to add it, `zt::sub` to take it away).
pub fn fold_bias(y: &mut [u64], bias: &[u64], plane: usize, op: impl Fn(u64, u64) -> u64) {
    vectorized(
        #[inline(always)]
        || {
            for (chunk, &bv) in y.chunks_mut(plane).zip(bias.iter().cycle()) {
                for v in chunk {
                    *v = op(*v, bv);
                }
            }
        },
    )
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.values.iter_mut().for_each(|v| v.zeroize());
    }
}
