//! The user: encrypts each linear layer's input, decrypts the sampled pre-activations and
//! computes everything else in the clear, for every sample.

use std::sync::Arc;

use tessera_field::{fixed, seed::os_rng};
use tessera_he::{ConvPacking, HeParams, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::{Runner, Step};
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use tracing::Instrument;

use super::{DONE, JOIN, LAYER, MAX_SAMPLES, PRODUCT, REPORT};
use crate::error::{Result, SuiteError};
use crate::he_layer::{decrypt_images, encrypt_images};
use crate::wire::recv_reports;

/// What a query returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Per sample, `batch × classes` logits in `Z_t` at the model's output scale.
    pub samples: Vec<Vec<u64>>,
    /// The meta-prediction: per image and class, the mean softmax over the samples.
    pub probabilities: Vec<f64>,
    /// The user's cost report, then the server's.
    pub reports: Vec<PartyReport>,
}

/// What the user asks the server: `samples` forward passes on `batch` encoded images. `Debug`
/// leaves the images out.
#[derive(Clone)]
pub struct Query {
    /// `batch` images encoded at activation scale.
    pub input: Vec<u64>,
    /// Images in the batch.
    pub batch: usize,
    /// Forward passes, each with its own sampled weights.
    pub samples: usize,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query").field("batch", &self.batch).field("samples", &self.samples).finish_non_exhaustive()
    }
}

/// The user's HE keys of a query.
struct Keys<'a> {
    he: &'a HeParams,
    secret: &'a SecretKey,
}

/// Runs one query as the user. `model` gives the architecture and fixed-point parameters only:
/// its weights are never used (the server's sampled weights are).
pub async fn user(
    name: &str,
    model: Arc<FixedModel>,
    he: &HeParams,
    server: &mut Channel,
    session: SessionId,
    query: Query,
) -> Result<Outcome> {
    let Query { input, batch, samples } = query;
    if !(1..=MAX_SAMPLES).contains(&samples) {
        return Err(SuiteError::Samples { samples, max: MAX_SAMPLES });
    }
    let mut rec = Recorder::new(name);
    let mut rng = os_rng();
    let key = SecretKey::generate(he, &mut rng)?;
    let mut join = Vec::new();
    join.extend_from_slice(&(batch as u32).to_le_bytes());
    join.extend_from_slice(&(samples as u32).to_le_bytes());
    key.public_key(&mut rng)?.write(he, &mut join)?;
    server.send(JOIN, session, 0, &join).await?;
    rec.stage(0, "keys", StageKind::Keys, &[server]);
    let mut runners: Vec<Runner> =
        (0..samples).map(|_| Runner::new(model.clone(), input.clone(), batch, false).offloading_linear()).collect();
    let mut first = 0usize;
    while let Some(step) = runners[0].step() {
        for r in &mut runners[1..] {
            assert_eq!(r.step(), Some(step), "every sample runs the same architecture");
        }
        let node = step.node();
        if node as usize > first {
            rec.stage(node - 1, model.node_name(node as usize - 1), StageKind::Local, &[server]);
        }
        first = node as usize + 1;
        let outputs = match step {
            Step::Nonlinear(layer) => runners
                .iter()
                .map(|r| {
                    model.check_bound(node as usize, r.pending_input())?;
                    Ok(layer.eval_plain(r.pending_input(), batch))
                })
                .collect::<Result<Vec<_>>>()?,
            Step::Linear(node) => {
                let span = tracing::debug_span!("layer", node, kind = ?StageKind::HeLinear);
                offload(&model, &Keys { he, secret: &key }, server, session, node, &runners, batch)
                    .instrument(span)
                    .await?
            }
        };
        for (r, out) in runners.iter_mut().zip(outputs) {
            r.complete(out);
        }
        let kind = if matches!(step, Step::Linear(_)) { StageKind::HeLinear } else { StageKind::Local };
        rec.stage(node, model.node_name(node as usize), kind, &[server]);
    }
    let logits: Vec<Vec<u64>> = runners.iter().map(|r| r.output().to_vec()).collect();
    for l in &logits {
        model.check_output(l)?;
    }
    server.send(DONE, session, 0, &[]).await?;
    let server_reports = recv_reports(server, REPORT, session).await?;
    rec.stage(0, "output", StageKind::Output, &[server]);
    let probabilities = meta_prediction(&logits, model.output_len(), model.output_bits());
    let mut reports = vec![rec.finish()];
    reports.extend(server_reports);
    Ok(Outcome { samples: logits, probabilities, reports })
}

/// Sends linear node `node`'s inputs of every sample encrypted (once when they are all equal,
/// as at the first layer) and returns its decrypted outputs, per sample.
async fn offload(
    model: &FixedModel,
    keys: &Keys<'_>,
    server: &mut Channel,
    session: SessionId,
    node: u32,
    runners: &[Runner],
    batch: usize,
) -> Result<Vec<Vec<u64>>> {
    let Keys { he, secret: key } = *keys;
    let kernel = model.linear_kernel(node as usize).expect("a linear step");
    let packing = ConvPacking::plan(he, *kernel.geometry())?;
    let shared = runners.iter().all(|r| r.pending_input() == runners[0].pending_input());
    let sets = if shared { &runners[..1] } else { runners };
    let image_len = kernel.geometry().input.len();
    let images = sets.iter().flat_map(|r| r.pending_input().chunks(image_len));
    let mut message = (shared as u32).to_le_bytes().to_vec();
    message.extend(encrypt_images(he, key, &packing, images)?);
    server.send(LAYER, session, node, &message).await?;
    let reply = server.recv(PRODUCT, session, node).await?;
    let outputs = decrypt_images(he, key, &packing, server.peer(), &reply, runners.len() * batch)?;
    Ok(outputs.chunks(batch).map(|images| images.concat()).collect())
}

/// The mean over samples of each image's softmax.
fn meta_prediction(logits: &[Vec<u64>], classes: usize, bits: u32) -> Vec<f64> {
    let mut mean = vec![0f64; logits[0].len()];
    for sample in logits {
        for (image, acc) in sample.chunks(classes).zip(mean.chunks_mut(classes)) {
            let z: Vec<f64> = image.iter().map(|&v| fixed::decode(v, bits)).collect();
            let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = z.iter().map(|v| (v - max).exp()).sum();
            for (a, v) in acc.iter_mut().zip(&z) {
                *a += (v - max).exp() / total / logits.len() as f64;
            }
        }
    }
    mean
}
