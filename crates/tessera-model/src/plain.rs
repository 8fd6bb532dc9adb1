//! The `f32` engine: the plaintext baseline every secure suite is timed against.
//!
//! Convolutions run as im2col + GEMM through the same kernels as the `Z_t` engine; buffers are
//! kept between runs so a query allocates nothing large. A batch is cut into runs of a few images
//! that the threads claim one at a time, each run through the whole network on its thread's
//! buffers: the threads meet once per run instead of once per layer.

use std::sync::{Mutex, PoisonError};

use tessera_field::kernels::pool::{max_pool_f32, sum_pool_f32};
use tessera_field::kernels::{ConvF32, Epilogue, team};

use crate::error::{ModelError, Result};
use crate::ir::{Model, Op};

/// Runs a model in `f32`. Holds per-value buffers and im2col scratch between runs.
#[derive(Debug)]
pub struct PlainEngine<'m> {
    plan: Plan<'m>,
    /// One per thread of a batch's split.
    lanes: Vec<Mutex<Lane>>,
    threads: usize,
}

/// Runs of images per thread a batch is cut into.
const RUNS_PER_THREAD: usize = 2;

/// The model and what the engine prepared for it once.
#[derive(Debug)]
struct Plan<'m> {
    model: &'m Model,
    /// Each linear node's convolution, its weights laid out once for its kernel.
    convs: Vec<Option<ConvF32>>,
    /// Each node's: whether it is a linear node whose output only a ReLU reads. Outside observed
    /// runs such a node's convolution applies the ReLU as it writes its outputs, and the ReLU
    /// takes over its buffer.
    relu_fused: Vec<bool>,
}

/// The buffers of one thread's runs of a batch: every value's, and the im2col scratch.
#[derive(Debug, Default)]
struct Lane {
    values: Vec<Vec<f32>>,
    cols: Vec<f32>,
}

impl<'m> PlainEngine<'m> {
    /// An engine for `model`, with as many threads as the current rayon pool.
    pub fn new(model: &'m Model) -> Self {
        let nodes = model.nodes();
        let convs = nodes
            .iter()
            .map(|node| match &node.op {
                Op::Linear(l) => Some(ConvF32::new(l.geometry, l.groups, &l.weight)),
                _ => None,
            })
            .collect();
        // Readers of each value (node `i` writes value `i + 1`); the model's output counts as one.
        let mut readers = vec![0usize; nodes.len() + 1];
        nodes.iter().flat_map(|node| &node.inputs).for_each(|&v| readers[v] += 1);
        readers[model.output()] += 1;
        let relu_reads = |v: usize| nodes.iter().any(|node| matches!(node.op, Op::Relu) && node.inputs[0] == v);
        let relu_fused = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| matches!(node.op, Op::Linear(_)) && readers[i + 1] == 1 && relu_reads(i + 1))
            .collect();
        let plan = Plan { model, convs, relu_fused };
        Self { plan, lanes: vec![Mutex::default()], threads: rayon::current_num_threads() }
    }

    /// Logits for `batch` images (NCHW, normalized). A batch of several images is cut into runs
    /// of a few images, which the threads claim one at a time (the kernels' helpers, see
    /// [`team`]), each run through the whole network on its thread's buffers: a thread the OS
    /// deschedules leaves the rest of the batch to the others.
    pub fn run(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>> {
        let (plan, model) = (&self.plan, self.plan.model);
        let threads = self.threads.min(batch);
        if threads <= 1 {
            check_input(model, input, batch)?;
            let lane = self.lanes[0].get_mut().unwrap_or_else(PoisonError::into_inner);
            return lane.run(plan, input, batch, self.threads, true, &mut |_, _| {});
        }
        check_input(model, input, batch)?;
        let (per_image, per_output) = (model.input_shape().len(), model.output_len());
        let chunk = batch.div_ceil(threads * RUNS_PER_THREAD);
        self.lanes.resize_with(threads.max(self.lanes.len()), Default::default);
        let lanes = &self.lanes;
        let mut logits = vec![0.0; batch * per_output];
        let runs: Vec<Mutex<&mut [f32]>> = logits.chunks_mut(chunk * per_output).map(Mutex::new).collect();
        let failure = Mutex::new(None);
        let task = |thread: usize, run: usize| {
            let (from, to) = (run * chunk, ((run + 1) * chunk).min(batch));
            let mut lane = lanes[thread].lock().unwrap_or_else(PoisonError::into_inner);
            let images = &input[from * per_image..to * per_image];
            match lane.run(plan, images, to - from, 1, true, &mut |_, _| {}) {
                Ok(out) => runs[run].lock().unwrap_or_else(PoisonError::into_inner).copy_from_slice(&out),
                Err(e) => *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(e),
            }
        };
        if !team::run(threads, runs.len(), &task) {
            (0..runs.len()).for_each(|run| task(0, run));
        }
        match failure.into_inner().unwrap_or_else(PoisonError::into_inner) {
            Some(e) => Err(e),
            None => Ok(logits),
        }
    }

    /// Like [`run`](Self::run), calling `observe(node index, output)` after every node (the
    /// whole batch at once, every kernel on the engine's threads; no node fused into another).
    pub fn run_observed(
        &mut self,
        input: &[f32],
        batch: usize,
        observe: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<Vec<f32>> {
        check_input(self.plan.model, input, batch)?;
        let lane = self.lanes[0].get_mut().unwrap_or_else(PoisonError::into_inner);
        lane.run(&self.plan, input, batch, self.threads, false, observe)
    }
}

fn check_input(model: &Model, input: &[f32], batch: usize) -> Result<()> {
    let expected = model.input_shape().len();
    if input.len() != expected * batch || batch == 0 {
        return Err(ModelError::InputLength { expected, batch, actual: input.len() });
    }
    Ok(())
}

impl Lane {
    /// Runs `batch` images (checked) through the plan's model with `threads` threads per
    /// kernel, each ReLU the plan marks applied by the linear node before it where `fuse`.
    fn run(
        &mut self,
        plan: &Plan<'_>,
        input: &[f32],
        batch: usize,
        threads: usize,
        fuse: bool,
        observe: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<Vec<f32>> {
        let model = plan.model;
        self.values.resize_with(model.nodes().len() + 1, Vec::new);
        self.values[0].clear();
        self.values[0].extend_from_slice(input);
        for (i, node) in model.nodes().iter().enumerate() {
            let (done, rest) = self.values.split_at_mut(i + 1);
            if fuse && matches!(node.op, Op::Relu) && node.inputs[0] > 0 && plan.relu_fused[node.inputs[0] - 1] {
                // The linear node that wrote the input applied this ReLU: its buffer is the output.
                std::mem::swap(&mut rest[0], &mut done[node.inputs[0]]);
                observe(i, &rest[0]);
                continue;
            }
            let out = &mut rest[0];
            let x = &done[node.inputs[0]];
            let in_shape = model.value_shape(node.inputs[0]);
            // Every op writes all of its output: keep the buffer, don't re-zero it.
            out.resize(batch * node.shape.len(), 0.0);
            match &node.op {
                Op::Linear(l) => {
                    let conv = plan.convs[i].as_ref().expect("a convolution per linear node");
                    let epilogue = Epilogue { bias: l.bias.as_deref(), relu: fuse && plan.relu_fused[i] };
                    conv.run(x, batch, threads, &mut self.cols, out, epilogue);
                }
                Op::BatchNorm { scale, shift } => {
                    let plane = node.shape.plane();
                    for (k, (o, xs)) in out.chunks_mut(plane).zip(x.chunks(plane)).enumerate() {
                        let c = k % node.shape.c;
                        o.iter_mut().zip(xs).for_each(|(o, &v)| *o = v * scale[c] + shift[c]);
                    }
                }
                Op::Relu => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v.max(0.0)),
                Op::MaxPool { window, relu } => {
                    max_pool_f32(x, in_shape, window, batch, out);
                    if *relu {
                        out.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                }
                Op::AvgPool { window, exclude_pad: false } => {
                    sum_pool_f32(x, in_shape, window, batch, out);
                    let k = 1.0 / window.size() as f32;
                    out.iter_mut().for_each(|v| *v *= k);
                }
                Op::AvgPool { window, exclude_pad: true } => {
                    sum_pool_f32(x, in_shape, window, batch, out);
                    let counts = window.inside_counts(in_shape.h, in_shape.w).expect("window checked at import");
                    for plane in out.chunks_mut(counts.len()) {
                        plane.iter_mut().zip(&counts).for_each(|(v, &k)| *v /= k as f32);
                    }
                }
                Op::SumPool { window } => sum_pool_f32(x, in_shape, window, batch, out),
                Op::Reshape { .. } => out.copy_from_slice(x),
                Op::Add => {
                    let y = &done[node.inputs[1]];
                    out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&a, &b))| *o = a + b);
                }
                Op::Concat => {
                    let parts: Vec<&[f32]> = node.inputs.iter().map(|&v| &done[v][..]).collect();
                    concat_into(&parts, batch, out, |_, v| v);
                }
                Op::LeakyRelu { alpha } => {
                    out.iter_mut().zip(x).for_each(|(o, &v)| *o = if v < 0.0 { alpha * v } else { v });
                }
                Op::Pad { pads } => pad_into(x, in_shape, *pads, out, 0.0),
            }
            observe(i, out);
        }
        Ok(self.values[model.output()].clone())
    }
}

/// Concatenates `batch` images of each of `parts` along channels into `out` (already sized),
/// passing each value through `map(part index, value)`.
pub fn concat_into<T: Copy>(parts: &[&[T]], batch: usize, out: &mut [T], map: impl Fn(usize, T) -> T) {
    let mut dst = out.iter_mut();
    for b in 0..batch {
        for (k, part) in parts.iter().enumerate() {
            let len = part.len() / batch;
            // The part first: `zip` stops on it without taking a slot from `dst`.
            part[b * len..(b + 1) * len].iter().zip(dst.by_ref()).for_each(|(&v, o)| *o = map(k, v));
        }
    }
}

/// Zero-pads every channel of every image of `x` into `out` (already sized).
pub fn pad_into<T: Copy>(x: &[T], s: tessera_field::kernels::ImageShape, pads: [usize; 4], out: &mut [T], zero: T) {
    let (oh, ow) = (s.h + pads[0] + pads[2], s.w + pads[1] + pads[3]);
    out.fill(zero);
    for (o, i) in out.chunks_mut(oh * ow).zip(x.chunks(s.plane())) {
        for y in 0..s.h {
            o[(y + pads[0]) * ow + pads[1]..][..s.w].copy_from_slice(&i[y * s.w..][..s.w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenation_interleaves_the_parts_image_by_image() {
        let (a, b) = ([1, 2, 3, 4], [10, 20, 30, 40, 50, 60]);
        let mut out = [0; 10];
        concat_into(&[&a, &b], 2, &mut out, |k, v| if k == 1 { v + 1 } else { v });
        assert_eq!(out, [1, 2, 11, 21, 31, 3, 4, 41, 51, 61]);
    }
}
