//! The client: owns the model and the input, offloads every linear layer under a one-time
//! pad, checks each product, and computes the rest itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use rand::seq::SliceRandom;
use tessera_field::kernels::conv::wipe_scratch;
use tessera_field::kernels::im2col::Im2col;
use tessera_field::kernels::{ConvKernel, conv2d_zt, conv2d_zt_within};
use tessera_field::vector::vectorized;
use tessera_field::{seed::os_rng, zt};
use tessera_model::cost::OpCount;
use tessera_model::fixed::{FixedModel, FixedOp};
use tessera_model::runner::{Runner, Step, fold_bias};
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use tracing::Instrument;
use zeroize::Zeroize;

use super::check::{Challenge, Probe, all_pass, draw_probes};
use super::cost::{Arithmetic, ClientCost, CpuSplit, timed};
use super::narrow;
use super::{DONE, OFFLOAD, PRODUCT, REPORT};
use crate::error::{Result, SuiteError};
use crate::wire::{Reader, put_elements, recv_reports};

/// How the client hides a layer's input from the cloud. [`Pad`](Disguise::Pad) is the only one
/// that hides anything; the discriminant is the disguise's tag on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disguise {
    /// `X + M` with `M` uniform and `K · M` prepared ahead: perfectly hiding, the cloud learns
    /// nothing about the input beyond its shape. The default.
    Pad = 0,
    /// Hides nothing from the cloud: the im2col columns of `X`, permuted and each scaled by a
    /// random nonzero factor. Fixed-point inputs are small integers, so rational reconstruction
    /// of each column's ratios gives the cloud the input windows exactly. For measurements only.
    MonomialInsecure = 1,
}

impl Disguise {
    /// The disguise a wire tag names, if any.
    pub fn from_tag(tag: u32) -> Option<Self> {
        [Disguise::Pad, Disguise::MonomialInsecure].into_iter().find(|&d| d as u32 == tag)
    }
}

impl std::str::FromStr for Disguise {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pad" => Ok(Disguise::Pad),
            "monomial-insecure" => Ok(Disguise::MonomialInsecure),
            "monomial" => Err("the monomial disguise hides nothing from the cloud (it recovers the input); \
                 to measure it anyway, name it `monomial-insecure`"
                .into()),
            other => Err(format!("unknown disguise `{other}` (pad, monomial-insecure)")),
        }
    }
}

/// How the client checks the cloud.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// How inputs are hidden.
    pub disguise: Disguise,
    /// The challenge set the check draws from.
    pub challenge: Challenge,
    /// Independent challenges per layer.
    pub repetitions: usize,
    /// On a failed check, compute the layer locally instead of giving up.
    pub recompute_on_failure: bool,
    /// Pad in `Z_p`, four bytes a value ([`narrow`](super::narrow)), every layer whose products
    /// fit; in `Z_t`, eight bytes a value, otherwise or when this is off.
    pub narrow_pad: bool,
}

/// Everything prepared for one query before its input is known: per offloaded input a one-time
/// pad, and per layer that reads it the pad's product and the challenges of the check. Wiped
/// when dropped.
pub struct Preprocessed {
    batch: usize,
    inputs: Vec<PreparedInput>,
    /// Operations spent preparing (the pad products and the challenges' weights).
    pub ops: OpCount,
    /// How long the preprocessing took.
    pub elapsed: Duration,
    /// The process's CPU time meanwhile (every thread of the pad products).
    pub cpu: Duration,
}

impl std::fmt::Debug for Preprocessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessed")
            .field("batch", &self.batch)
            .field("inputs", &self.inputs.len())
            .finish_non_exhaustive()
    }
}

/// One offloaded input's preparation: one message, answered with the products of every layer
/// that reads the input ([`FixedModel::linear_groups`]).
struct PreparedInput {
    /// The first layer that reads it: the one the OFFLOAD names.
    node: u32,
    /// The OFFLOAD payload: the batch and disguise tag, then the pad `M`, to which the input is
    /// added in place, so that its bytes are the message.
    message: PadMessage,
    /// Whether the input was added: the message is then `X + M` (what the cloud receives) and
    /// `M` is gone, so there is nothing left to wipe.
    padded: bool,
    /// The layers that read it, in node order (the order of their products in the reply).
    layers: Vec<PreparedProduct>,
}

/// One offloaded layer's preparation.
struct PreparedProduct {
    node: u32,
    /// `K·M − b` (`b` the layer's bias; mod `p` for a narrow pad), replaced in place by the true
    /// output `K·X + b` in `Z_t`.
    product: Vec<u64>,
    probes: Vec<Probe>,
}

/// A pad message in its wire layout, little-endian words: in `Z_p` ([`narrow`]) where the
/// layer's products fit, in `Z_t` otherwise.
enum PadMessage {
    /// Header words `batch`, tag [`narrow::TAG`], then one `u32` per value.
    Narrow(Vec<u32>),
    /// Header word `batch | tag << 32` (tag [`Disguise::Pad`]), then one `u64` per value.
    Wide(Vec<u64>),
}

impl PadMessage {
    /// A fresh uniform pad for `len` values of `batch` images.
    fn draw(narrow: bool, batch: usize, len: usize, rng: &mut impl rand_core::CryptoRng) -> Self {
        if narrow {
            let mut words = Vec::with_capacity(2 + len);
            words.extend([(batch as u32).to_le(), narrow::TAG.to_le()]);
            words.extend((0..len).map(|_| narrow::random(rng) as u32));
            Self::Narrow(words)
        } else {
            let mut words = Vec::with_capacity(1 + len);
            words.push((batch as u64 | (Disguise::Pad as u64) << 32).to_le());
            words.extend((0..len).map(|_| zt::random(rng)));
            Self::Wide(words)
        }
    }

    /// The pad's values as `Z_t` elements: a narrow pad's residues lifted to within
    /// `±(p − 1)/2` (the same values mod `p`), so that its product takes one limb a value.
    fn values(&self) -> Vec<u64> {
        match self {
            Self::Narrow(w) => w[2..].iter().map(|&v| narrow::lift(u64::from(v))).collect(),
            Self::Wide(w) => w[1..].to_vec(),
        }
    }

    /// Adds the input in place: the pad becomes `X + M` (`X` reduced mod `p` when narrow).
    /// Returns whether a narrow pad's inputs all lie within `±(p − 1)/2` of zero, the range its
    /// check reads them in as one limb (always true for a wide pad).
    fn add_input(&mut self, x: &[u64]) -> bool {
        match self {
            Self::Narrow(w) => vectorized(
                #[inline(always)]
                || {
                    let mut outside = 0;
                    for (word, &v) in w[2..].iter_mut().zip(x) {
                        let r = narrow::reduce(v);
                        outside |= narrow::lift(r) ^ v;
                        *word = (narrow::add(r, u64::from(*word)) as u32).to_le();
                    }
                    outside == 0
                },
            ),
            Self::Wide(w) => vectorized(
                #[inline(always)]
                || {
                    for (word, &v) in w[1..].iter_mut().zip(x) {
                        *word = zt::add(v, *word).to_le();
                    }
                    true
                },
            ),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Self::Narrow(w) => bytemuck::cast_slice(w),
            Self::Wide(w) => bytemuck::cast_slice(w),
        }
    }

    fn is_narrow(&self) -> bool {
        matches!(self, Self::Narrow(_))
    }
}

impl Zeroize for PadMessage {
    fn zeroize(&mut self) {
        match self {
            Self::Narrow(w) => w.zeroize(),
            Self::Wide(w) => w.zeroize(),
        }
    }
}

impl Drop for PreparedInput {
    fn drop(&mut self) {
        if !self.padded {
            self.message.zeroize();
        }
    }
}

impl Drop for PreparedProduct {
    fn drop(&mut self) {
        self.product.zeroize();
    }
}

/// Draws the pads `M` (uniform, fresh) and the check's challenges, and computes `K·M`, for
/// every linear layer; one pad per input that several layers read (nothing for
/// [`Disguise::MonomialInsecure`], whose disguise and challenges depend on the input's layout).
pub fn preprocess(model: &FixedModel, batch: usize, settings: ClientSettings) -> Preprocessed {
    let start = Instant::now();
    let cpu = ProcessTime::now();
    let mut ops = OpCount::default();
    if settings.disguise == Disguise::MonomialInsecure {
        return Preprocessed { batch, inputs: Vec::new(), ops, elapsed: start.elapsed(), cpu: cpu.elapsed() };
    }
    let mut rng = os_rng();
    let bound_bits = model.params().bound_bits();
    let kernel_of = |node: usize| model.linear_kernel(node).expect("grouped layers are linear");
    let inputs = model
        .linear_groups()
        .into_iter()
        .map(|group| {
            let len = batch * kernel_of(group[0]).geometry().input.len();
            let narrow = settings.narrow_pad && group.iter().all(|&n| narrow::fits(kernel_of(n), bound_bits));
            let message = PadMessage::draw(narrow, batch, len, &mut rng);
            let mut pad = message.values();
            let layers = group
                .iter()
                .map(|&node| {
                    let (product, spent) = prepare_product(model, node, &pad, batch, narrow, settings, &mut rng);
                    ops += spent;
                    product
                })
                .collect();
            pad.zeroize();
            PreparedInput { node: group[0] as u32, message, padded: false, layers }
        })
        .collect();
    // `K·M` ran on this thread: its scratch holds the pads' limbs and their products.
    wipe_scratch();
    Preprocessed { batch, inputs, ops, elapsed: start.elapsed(), cpu: cpu.elapsed() }
}

/// Layer `node`'s pad product `K·M − b` (mod `p` for a `narrow` pad) and challenges, with the
/// operations they took.
fn prepare_product(
    model: &FixedModel,
    node: usize,
    pad: &[u64],
    batch: usize,
    narrow: bool,
    settings: ClientSettings,
    rng: &mut impl rand_core::CryptoRng,
) -> (PreparedProduct, OpCount) {
    let kernel = model.linear_kernel(node).expect("a linear layer");
    // One thread: preprocessing runs in the background, beside other work. A narrow pad's
    // values lie within ±(p − 1)/2 (`PadMessage::values`): one limb each.
    let mut product =
        if narrow { conv2d_zt_within(kernel, pad, narrow::P / 2, batch, 1) } else { conv2d_zt(kernel, pad, batch, 1) };
    let macs = (batch * kernel.geometry().macs()) as u64;
    let mut ops = OpCount { mul: macs, add: macs, other: 0 };
    let mut probes = draw_probes(kernel, settings.challenge, settings.repetitions, rng);
    if narrow {
        // The exact integer `K·M` of the lifted pad (|K·M| < t/2 where the layer fits), mod p;
        // the bias is subtracted mod p below, where `K·M − b` cannot wrap.
        product.iter_mut().for_each(|v| *v = narrow::reduce(*v));
        // Unpadding lifts each output from Z_p to within ±(p − 1)/2 of zero; the inputs are
        // tested as they are padded (`PadMessage::add_input`).
        probes.iter_mut().for_each(|p| p.expect_values_within(narrow::P / 2));
    }
    // `K·M − b`, so that unpadding gives `K·X + b`: the bias costs nothing online.
    if let FixedOp::Linear { bias: Some(bias), .. } = &model.ops()[node] {
        let plane = kernel.geometry().output().expect("checked kernel").plane();
        if narrow {
            fold_bias(&mut product, bias, plane, narrow::minus_bias);
        } else {
            fold_bias(&mut product, bias, plane, zt::sub);
        }
        ops += OpCount { add: product.len() as u64, ..Default::default() };
        probes.iter_mut().for_each(|p| p.include_bias(bias));
    }
    ops += probes.iter().map(Probe::preparation).sum();
    (PreparedProduct { node: node as u32, product, probes }, ops)
}

/// What a query returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `batch × classes` logits in `Z_t`, at the model's output scale.
    pub logits: Vec<u64>,
    /// The client's cost report (with a `preprocess` stage), then the cloud's.
    pub reports: Vec<PartyReport>,
    /// Layers whose product failed the check and were recomputed locally.
    pub recomputed: Vec<u32>,
    /// The client's operations and CPU time.
    pub cost: ClientCost,
}

/// Runs one query as the client: `input` holds `batch` images encoded at activation scale.
pub async fn client(
    name: &str,
    model: Arc<FixedModel>,
    cloud: &mut Channel,
    session: SessionId,
    input: Vec<u64>,
    mut pre: Preprocessed,
    settings: ClientSettings,
) -> Result<Outcome> {
    let batch = pre.batch;
    let online = ProcessTime::now();
    let mut rec = Recorder::new(name);
    // With the pad, the biases were folded into `K·M` ahead of the query.
    let adds_biases = settings.disguise == Disguise::MonomialInsecure;
    let mut runner = Runner::new(model.clone(), input, batch, adds_biases).offloading_linear();
    let mut rng = os_rng();
    let mut recomputed = Vec::new();
    // Checked products of layers that read an input already offloaded, with whether they passed.
    let mut ready: Vec<(PreparedProduct, bool)> = Vec::new();
    let mut cost = ClientCost {
        local_model: model.total_op_count().times(batch as u64),
        arithmetic: Arithmetic { preprocess: pre.ops, ..Default::default() },
        cpu: CpuSplit::default(),
    };
    let mut first = 0usize;
    loop {
        let (arith, cpu) = (&mut cost.arithmetic, &mut cost.cpu);
        // The layers the runner computes itself on the way to the next step.
        let step = timed(&mut cpu.local, || runner.step());
        let Some(step) = step else { break };
        let node = step.node();
        for local in first..node as usize {
            arith.local += model.op_count(local).times(batch as u64);
        }
        if node as usize > first {
            rec.stage(node - 1, model.node_name(node as usize - 1), StageKind::Local, &[cloud]);
        }
        first = node as usize + 1;
        let (output, kind) = match step {
            Step::Nonlinear(layer) => {
                arith.local += model.op_count(node as usize).times(batch as u64);
                (timed(&mut cpu.local, || layer.eval_plain(runner.pending_input(), batch)), StageKind::Local)
            }
            Step::Linear(node) => {
                let span = tracing::debug_span!("layer", node, kind = ?StageKind::Offloaded);
                let x = runner.pending_input();
                let kernel = model.linear_kernel(node as usize).expect("a linear step");
                let out_len = batch * kernel.geometry().output().expect("checked kernel").len();
                let offload = async {
                    let product = match settings.disguise {
                        Disguise::Pad => {
                            // The layers after the first that read the same input were computed
                            // with it.
                            if !ready.iter().any(|(l, _)| l.node == node) {
                                let at = pre.inputs.iter().position(|l| l.node == node).expect("a pad per input");
                                let mut input = pre.inputs.swap_remove(at);
                                timed(&mut cpu.pads, || input.add_input(x));
                                // A narrow pad also reduces each input mod p and lifts each output back.
                                let narrow = input.message.is_narrow();
                                let lifts = |n: usize| if narrow { n as u64 } else { 0 };
                                arith.pad += OpCount { add: x.len() as u64, mul: 0, other: lifts(x.len()) };
                                cloud.send(OFFLOAD, session, node, input.message.bytes()).await?;
                                let reply = cloud.recv(PRODUCT, session, node).await?;
                                timed(&mut cpu.unpad, || input.unpad(&reply, cloud.peer()))?;
                                for mut layer in input.layers.drain(..) {
                                    let n = layer.product.len();
                                    arith.unpad += OpCount { add: n as u64, mul: 0, other: lifts(n) };
                                    let passed = timed(&mut cpu.checks, || {
                                        all_pass(&layer.probes, x, &layer.product, batch, &mut arith.check)
                                    });
                                    layer.probes.drain(..).for_each(Probe::discard_checked);
                                    ready.push((layer, passed));
                                }
                            }
                            let at = ready.iter().position(|(l, _)| l.node == node).expect("its product");
                            let (mut layer, passed) = ready.swap_remove(at);
                            passed.then(|| std::mem::take(&mut layer.product))
                        }
                        Disguise::MonomialInsecure => {
                            let mut disguised = timed(&mut cpu.pads, || Monomial::new(kernel, x, batch));
                            cloud.send(OFFLOAD, session, node, &disguised.message).await?;
                            let reply = cloud.recv(PRODUCT, session, node).await?;
                            let product = timed(&mut cpu.unpad, || {
                                let mut r = Reader::new(&reply, cloud.peer(), "product");
                                let product = r.elements(out_len)?;
                                r.end().map(|()| product)
                            })?;
                            let passed = timed(&mut cpu.checks, || {
                                disguised.check(kernel, &product, settings, &mut rng, &mut arith.check)
                            });
                            passed.then(|| timed(&mut cpu.unpad, || disguised.reveal(kernel, product, batch)))
                        }
                    };
                    match product {
                        Some(y) => Ok(y),
                        None if settings.recompute_on_failure => {
                            recomputed.push(node);
                            let mut y = conv2d_zt(kernel, x, batch, rayon::current_num_threads());
                            if let (FixedOp::Linear { bias: Some(bias), .. }, false) =
                                (&model.ops()[node as usize], adds_biases)
                            {
                                fold_bias(&mut y, bias, out_len / batch / kernel.geometry().out_channels, zt::add);
                            }
                            Ok(y)
                        }
                        None => Err(SuiteError::VerificationFailed { peer: cloud.peer().into(), layer: node }),
                    }
                };
                if let (FixedOp::Linear { bias: Some(_), .. }, true) = (&model.ops()[node as usize], adds_biases) {
                    arith.local += OpCount { add: out_len as u64, ..Default::default() };
                }
                (offload.instrument(span).await?, StageKind::Offloaded)
            }
        };
        timed(&mut cost.cpu.local, || runner.complete(output));
        rec.stage(node, model.node_name(node as usize), kind, &[cloud]);
    }
    for local in first..model.ops().len() {
        cost.arithmetic.local += model.op_count(local).times(batch as u64);
    }
    let logits = runner.output().to_vec();
    let cpu = &mut cost.cpu;
    cpu.total = online.elapsed();
    cpu.transport = cpu.total.saturating_sub(cpu.pads + cpu.checks + cpu.unpad + cpu.local);
    cloud.send(DONE, session, 0, &[]).await?;
    let cloud_reports = recv_reports(cloud, REPORT, session).await?;
    rec.stage(0, "output", StageKind::Output, &[cloud]);
    let mut own = rec.finish();
    // The pads were drawn before the query started; the totals include them like the stages.
    let (pre_us, pre_cpu_us) = (pre.elapsed.as_micros() as u64, pre.cpu.as_micros() as u64);
    own.wall_us += pre_us;
    own.cpu_us += pre_cpu_us;
    own.stages.insert(
        0,
        tessera_net::StageCost {
            layer: 0,
            name: "preprocess".into(),
            kind: StageKind::Preprocess,
            wall_us: pre_us,
            cpu_us: pre_cpu_us,
            links: Vec::new(),
        },
    );
    let mut reports = vec![own];
    reports.extend(cloud_reports);
    Ok(Outcome { logits, reports, recomputed, cost })
}

impl PreparedInput {
    /// Adds the input to the pad, in place: the message becomes `X + M`. Where an input value
    /// lies outside the range the narrow pad's checks read inputs in
    /// ([`PadMessage::add_input`]), they read this input in full width instead.
    fn add_input(&mut self, x: &[u64]) {
        self.padded = true;
        if !self.message.add_input(x) {
            self.layers.iter_mut().flat_map(|l| &mut l.probes).for_each(Probe::read_inputs_in_full);
        }
    }

    /// Decodes the cloud's products `Y'_j = K_j·(X + M)`, one per layer in order, and replaces
    /// each `K_j·M − b_j` by the true output `Y'_j − (K_j·M − b_j)` (lifted from `Z_p` for a
    /// narrow pad), in one pass.
    fn unpad(&mut self, reply: &[u8], peer: &str) -> Result<()> {
        let mut r = Reader::new(reply, peer, "product");
        let narrow = self.message.is_narrow();
        for layer in &mut self.layers {
            if narrow {
                r.residues_into::<4>(&mut layer.product, narrow::P, |km, y| narrow::lift(narrow::sub(y, km)))?;
            } else {
                r.elements_into(&mut layer.product, |km, y| zt::sub(y, km))?;
            }
        }
        r.end()
    }
}

/// The insecure disguise of one layer: the input's im2col columns, permuted and each scaled by
/// a random nonzero factor.
struct Monomial {
    /// The disguised columns `X̂'` (terms × columns).
    sent: Vec<u64>,
    /// Column `j` holds image position `perm[j]` scaled by `scales[j]`.
    perm: Vec<u32>,
    scales: Vec<u64>,
    message: Vec<u8>,
}

impl Monomial {
    fn new(kernel: &ConvKernel, x: &[u64], batch: usize) -> Self {
        let mut rng = os_rng();
        let g = kernel.geometry();
        let cols = Im2col::new(g.input, g.window);
        let (terms, positions) = (g.terms(), cols.positions());
        let columns = batch * positions;
        let mut plain = vec![0u64; terms * columns];
        for (b, image) in x.chunks(g.input.len()).enumerate() {
            cols.fill(image, 0, positions, &mut plain, columns, b * positions);
        }
        let mut perm: Vec<u32> = (0..columns as u32).collect();
        perm.shuffle(&mut rng);
        let scales: Vec<u64> = (0..columns)
            .map(|_| {
                loop {
                    let s = zt::random(&mut rng);
                    if s != 0 {
                        break s;
                    }
                }
            })
            .collect();
        let mut sent = vec![0u64; terms * columns];
        for t in 0..terms {
            let (src, dst) = (&plain[t * columns..(t + 1) * columns], &mut sent[t * columns..(t + 1) * columns]);
            for (j, d) in dst.iter_mut().enumerate() {
                *d = zt::mul(src[perm[j] as usize], scales[j]);
            }
        }
        plain.zeroize();
        let mut message = Vec::with_capacity(8 + 8 * sent.len());
        message.extend_from_slice(&(batch as u32).to_le_bytes());
        message.extend_from_slice(&(Disguise::MonomialInsecure as u32).to_le_bytes());
        put_elements(&mut message, &sent);
        Self { sent, perm, scales, message }
    }

    /// The check of the cloud's product against the disguised columns, as one matrix product.
    fn check<R: rand_core::RngCore + rand_core::CryptoRng>(
        &self,
        kernel: &ConvKernel,
        product: &[u64],
        settings: ClientSettings,
        rng: &mut R,
        ops: &mut OpCount,
    ) -> bool {
        let matrix = kernel.matrix_form(self.perm.len());
        let probes = draw_probes(&matrix, settings.challenge, settings.repetitions, rng);
        all_pass(&probes, &self.sent, product, 1, ops)
    }

    /// The true product `K · X` from the checked product.
    fn reveal(&mut self, kernel: &ConvKernel, product: Vec<u64>, batch: usize) -> Vec<u64> {
        let out = kernel.geometry().output().expect("checked kernel");
        let (channels, positions, columns) = (out.c, out.plane(), self.perm.len());
        let mut y = vec![0u64; batch * out.len()];
        for (j, (&p, &s)) in self.perm.iter().zip(&self.scales).enumerate() {
            let inv = zt::inv(s).expect("nonzero scale");
            let (b, pos) = (p as usize / positions, p as usize % positions);
            for o in 0..channels {
                y[(b * channels + o) * positions + pos] = zt::mul(product[o * columns + j], inv);
            }
        }
        y
    }
}

impl Drop for Monomial {
    fn drop(&mut self) {
        self.sent.zeroize();
        self.perm.zeroize();
        self.scales.zeroize();
        self.message.zeroize();
    }
}
