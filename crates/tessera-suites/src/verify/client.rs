//! The client: owns the model and the input, offloads every linear layer under a one-time
//! pad, checks each product, and computes the rest itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_field::kernels::conv2d_zt;
use tessera_field::{seed::os_rng, zt};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::{Runner, Step};
use tessera_net::{Channel, PartyReport, Recorder, SessionId};
use zeroize::Zeroize;

use super::check::{Challenge, freivalds};
use super::{DONE, OFFLOAD, PRODUCT, REPORT};
use crate::error::{Result, SuiteError};
use crate::wire::{Reader, put_elements};

/// How the client checks the cloud.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// The challenge set of Freivalds' test.
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

/// Draws the pads `M` (uniform, fresh) and computes `K · M` for every linear layer.
pub fn preprocess(model: &FixedModel, batch: usize) -> Preprocessed {
    let start = Instant::now();
    let mut rng = os_rng();
    let pads = (0..model.ops().len())
        .filter_map(|node| {
            let kernel = model.linear_kernel(node)?;
            let m = zt::random_vec(&mut rng, batch * kernel.geometry().input.len());
            let km = conv2d_zt(kernel, &m, batch, rayon::current_num_threads());
            Some((node as u32, m, km))
        })
        .collect();
    Preprocessed { batch, pads, elapsed: start.elapsed() }
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
            rec.stage(node - 1, model.node_name(node as usize - 1), "local", &[cloud]);
        }
        first = node as usize + 1;
        let output = match step {
            Step::Nonlinear(layer) => layer.eval_plain(runner.pending_input(), batch),
            Step::Linear(node) => {
                let kernel = model.linear_kernel(node as usize).expect("a linear step");
                let (_, m, km) = pre.pads.iter().find(|(n, _, _)| *n == node).expect("a pad per linear layer");
                let mut disguised: Vec<u64> =
                    runner.pending_input().iter().zip(m).map(|(&x, &r)| zt::add(x, r)).collect();
                let mut msg = Vec::with_capacity(4 + 8 * disguised.len());
                msg.extend_from_slice(&(batch as u32).to_le_bytes());
                put_elements(&mut msg, &disguised);
                cloud.send(OFFLOAD, session, node, &msg).await?;
                let reply = cloud.recv(PRODUCT, session, node).await?;
                let mut r = Reader::new(&reply, cloud.peer(), "product");
                let out_len = batch * kernel.geometry().output().expect("checked kernel").len();
                let product = r.elements(out_len)?;
                r.end()?;
                let sound =
                    freivalds(kernel, &disguised, &product, batch, settings.challenge, settings.repetitions, &mut rng);
                disguised.zeroize();
                if sound {
                    product.iter().zip(km).map(|(&y, &k)| zt::sub(y, k)).collect()
                } else if settings.recompute_on_failure {
                    recomputed.push(node);
                    conv2d_zt(kernel, runner.pending_input(), batch, rayon::current_num_threads())
                } else {
                    return Err(SuiteError::VerificationFailed { peer: cloud.peer().into(), layer: node });
                }
            }
        };
        let kind = match step {
            Step::Nonlinear(_) => "local",
            Step::Linear(_) => "offloaded",
        };
        runner.complete(output);
        rec.stage(node, model.node_name(node as usize), kind, &[cloud]);
    }
    let logits = runner.output().to_vec();
    cloud.send(DONE, session, 0, &[]).await?;
    let report = cloud.recv(REPORT, session, 0).await?;
    let cloud_reports = PartyReport::list_from_bytes(&report).map_err(|e| SuiteError::Protocol {
        peer: cloud.peer().into(),
        message: "report",
        reason: e,
    })?;
    rec.stage(0, "output", "output", &[cloud]);
    let mut own = rec.finish();
    own.stages.insert(
        0,
        tessera_net::StageCost {
            layer: 0,
            name: "preprocess".into(),
            kind: "preprocess".into(),
            wall_us: pre.elapsed.as_micros() as u64,
            cpu_us: pre.elapsed.as_micros() as u64,
            links: Vec::new(),
        },
    );
    let mut reports = vec![own];
    reports.extend(cloud_reports);
    Ok(Outcome { logits, reports, recomputed })
}
