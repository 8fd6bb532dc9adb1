//! The client: owns the model and the input, offloads every linear layer under a one-time
//! pad, checks each product, and computes the rest itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cpu_time::ProcessTime;
use rand::seq::SliceRandom;
use tessera_field::kernels::im2col::Im2col;
use tessera_field::kernels::{ConvKernel, conv2d_zt};
use tessera_field::{seed::os_rng, zt};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::{Runner, Step};
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use tracing::Instrument;
use zeroize::Zeroize;

use super::check::{Challenge, check_product};
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
}

/// One-time pads for every offloaded layer of one query, with their products: computed before
/// the input is known. Wiped when dropped.
pub struct Preprocessed {
    batch: usize,
    pads: Vec<(u32, Vec<u64>, Vec<u64>)>,
    /// How long the preprocessing took.
    pub elapsed: Duration,
    /// The process's CPU time meanwhile (every thread of the pad products).
    pub cpu: Duration,
}

impl std::fmt::Debug for Preprocessed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preprocessed")
            .field("batch", &self.batch)
            .field("layers", &self.pads.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Preprocessed {
    fn drop(&mut self) {
        for (_, m, km) in &mut self.pads {
            m.zeroize();
            km.zeroize();
        }
    }
}

/// Draws the pads `M` (uniform, fresh) and computes `K · M` for every linear layer (nothing
/// for [`Disguise::MonomialInsecure`]).
pub fn preprocess(model: &FixedModel, batch: usize, disguise: Disguise) -> Preprocessed {
    let start = Instant::now();
    let cpu = ProcessTime::now();
    if disguise == Disguise::MonomialInsecure {
        return Preprocessed { batch, pads: Vec::new(), elapsed: start.elapsed(), cpu: cpu.elapsed() };
    }
    let mut rng = os_rng();
    let pads = (0..model.ops().len())
        .filter_map(|node| {
            let kernel = model.linear_kernel(node)?;
            let m = zt::random_vec(&mut rng, batch * kernel.geometry().input.len());
            let km = conv2d_zt(kernel, &m, batch, rayon::current_num_threads());
            Some((node as u32, m, km))
        })
        .collect();
    Preprocessed { batch, pads, elapsed: start.elapsed(), cpu: cpu.elapsed() }
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
}

/// Runs one query as the client: `input` holds `batch` images encoded at activation scale.
pub async fn client(
    name: &str,
    model: Arc<FixedModel>,
    cloud: &mut Channel,
    session: SessionId,
    input: Vec<u64>,
    pre: Preprocessed,
    settings: ClientSettings,
) -> Result<Outcome> {
    let batch = pre.batch;
    let mut rec = Recorder::new(name);
    let mut runner = Runner::new(model.clone(), input, batch, true).offloading_linear();
    let mut rng = os_rng();
    let mut recomputed = Vec::new();
    let mut first = 0usize;
    while let Some(step) = runner.step() {
        let node = step.node();
        if node as usize > first {
            rec.stage(node - 1, model.node_name(node as usize - 1), StageKind::Local, &[cloud]);
        }
        first = node as usize + 1;
        let output = match step {
            Step::Nonlinear(layer) => layer.eval_plain(runner.pending_input(), batch),
            Step::Linear(node) => {
                let span = tracing::debug_span!("layer", node, kind = ?StageKind::Offloaded);
                let x = runner.pending_input();
                async {
                    let kernel = model.linear_kernel(node as usize).expect("a linear step");
                    let mut offload = Offload::new(settings.disguise, kernel, x, batch, &pre, node);
                    cloud.send(OFFLOAD, session, node, &offload.message).await?;
                    let reply = cloud.recv(PRODUCT, session, node).await?;
                    let mut r = Reader::new(&reply, cloud.peer(), "product");
                    let out_len = batch * kernel.geometry().output().expect("checked kernel").len();
                    let product = r.elements(out_len)?;
                    r.end()?;
                    let sound = offload.check(kernel, &product, batch, settings, &mut rng);
                    if sound {
                        Ok(offload.reveal(kernel, product, batch, &pre))
                    } else if settings.recompute_on_failure {
                        recomputed.push(node);
                        Ok(conv2d_zt(kernel, x, batch, rayon::current_num_threads()))
                    } else {
                        Err(SuiteError::VerificationFailed { peer: cloud.peer().into(), layer: node })
                    }
                }
                .instrument(span)
                .await?
            }
        };
        let kind = match step {
            Step::Nonlinear(_) => StageKind::Local,
            Step::Linear(_) => StageKind::Offloaded,
        };
        runner.complete(output);
        rec.stage(node, model.node_name(node as usize), kind, &[cloud]);
    }
    let logits = runner.output().to_vec();
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
    Ok(Outcome { logits, reports, recomputed })
}

/// One offloaded layer: the disguised message and what the client keeps to check and undo it.
struct Offload {
    node: u32,
    disguise: Disguise,
    /// Pad: `X + M`. Monomial: the disguised columns `X̂'` (terms × columns).
    sent: Vec<u64>,
    /// Monomial: column `j` holds image position `perm[j]` scaled by `scales[j]`.
    perm: Vec<u32>,
    scales: Vec<u64>,
    message: Vec<u8>,
}

impl Offload {
    fn new(disguise: Disguise, kernel: &ConvKernel, x: &[u64], batch: usize, pre: &Preprocessed, node: u32) -> Self {
        let mut rng = os_rng();
        let (sent, perm, scales) = match disguise {
            Disguise::Pad => {
                let (_, m, _) = pre.pads.iter().find(|(n, _, _)| *n == node).expect("a pad per linear layer");
                (x.iter().zip(m).map(|(&v, &r)| zt::add(v, r)).collect(), Vec::new(), Vec::new())
            }
            Disguise::MonomialInsecure => {
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
                    let (src, dst) =
                        (&plain[t * columns..(t + 1) * columns], &mut sent[t * columns..(t + 1) * columns]);
                    for (j, d) in dst.iter_mut().enumerate() {
                        *d = zt::mul(src[perm[j] as usize], scales[j]);
                    }
                }
                plain.zeroize();
                (sent, perm, scales)
            }
        };
        let mut message = Vec::with_capacity(8 + 8 * sent.len());
        message.extend_from_slice(&(batch as u32).to_le_bytes());
        message.extend_from_slice(&(disguise as u32).to_le_bytes());
        put_elements(&mut message, &sent);
        Self { node, disguise, sent, perm, scales, message }
    }

    /// The linear-time check of the cloud's product against what was sent.
    fn check<R: rand_core::RngCore + rand_core::CryptoRng>(
        &self,
        kernel: &ConvKernel,
        product: &[u64],
        batch: usize,
        settings: ClientSettings,
        rng: &mut R,
    ) -> bool {
        match self.disguise {
            Disguise::Pad => {
                check_product(kernel, &self.sent, product, batch, settings.challenge, settings.repetitions, rng)
            }
            Disguise::MonomialInsecure => {
                let columns = self.perm.len();
                let matrix = kernel.matrix_form(columns);
                check_product(&matrix, &self.sent, product, 1, settings.challenge, settings.repetitions, rng)
            }
        }
    }

    /// The true product `K · X` from the checked product.
    fn reveal(&mut self, kernel: &ConvKernel, product: Vec<u64>, batch: usize, pre: &Preprocessed) -> Vec<u64> {
        match self.disguise {
            Disguise::Pad => {
                let (_, _, km) = pre.pads.iter().find(|(n, _, _)| *n == self.node).expect("a pad per linear layer");
                product.iter().zip(km).map(|(&y, &k)| zt::sub(y, k)).collect()
            }
            Disguise::MonomialInsecure => {
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
    }
}

impl Drop for Offload {
    fn drop(&mut self) {
        self.sent.zeroize();
        self.perm.zeroize();
        self.scales.zeroize();
        self.message.zeroize();
    }
}
