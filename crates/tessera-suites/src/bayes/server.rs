//! The server: holds the posterior, samples weights per query, evaluates linear layers on the
//! user's ciphertexts and returns them sealed.

use std::sync::Arc;

use rand::SeedableRng;
use tessera_field::FixedPointParams;
use tessera_field::seed::{SecretRng, os_rng};
use tessera_he::{Addend, ConvPacking, Form, HeParams, PublicKey};
use tessera_model::fixed::{FixedModel, FixedOp};
use tessera_model::{Model, Posterior};
use tessera_net::{Channel, NetError, Recorder, SessionId, StageKind};
use tracing::Instrument;

use super::{DONE, JOIN, LAYER, MAX_SAMPLES, PRODUCT, REPORT};
use crate::error::{Result, SuiteError, Violation};
use crate::wire::{Reader, read_ciphertexts, seal_all, send_reports};

/// Where a server's weight samples come from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// A fresh CSPRNG seeded by the OS for every query: what a deployment uses.
    Fresh,
    /// The same seed for every query, so that a test can draw the same samples and check the
    /// secure result against them. Never for deployment: every query then sees the same weights.
    #[doc(hidden)]
    Replay([u8; 32]),
}

impl std::fmt::Debug for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sampling::Fresh => "Fresh",
            Sampling::Replay(_) => "Replay(redacted)",
        })
    }
}

/// A bayes server for one Bayesian model.
pub struct BayesServer {
    mean: Model,
    posterior: Posterior,
    params: FixedPointParams,
    he: Arc<HeParams>,
    sampling: Sampling,
    max_batch: usize,
}

impl std::fmt::Debug for BayesServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BayesServer").field("sampling", &self.sampling).finish_non_exhaustive()
    }
}

/// One query being served.
struct Query {
    session: SessionId,
    batch: usize,
    key: PublicKey,
    samples: Vec<Arc<FixedModel>>,
    /// The linear nodes still to come, in order.
    pending: std::vec::IntoIter<usize>,
}

impl BayesServer {
    /// A server for the model whose original (unmerged) graph is `mean`, with its posterior and
    /// calibrated fixed-point parameters; at most `max_batch` images per query.
    pub fn new(
        mean: Model,
        posterior: Posterior,
        params: FixedPointParams,
        he: Arc<HeParams>,
        sampling: Sampling,
        max_batch: usize,
    ) -> Self {
        Self { mean, posterior, params, he, sampling, max_batch }
    }

    /// Serves the queries a user sends on one connection, until it closes it.
    pub async fn serve(&self, name: &str, user: &mut Channel) -> Result<()> {
        loop {
            let (header, payload) = match user.recv_any().await {
                Ok(frame) => frame,
                Err(NetError::PeerClosed { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if header.kind != JOIN {
                return Err(
                    NetError::UnexpectedKind { peer: user.peer().into(), expected: JOIN, got: header.kind }.into()
                );
            }
            let mut rec = Recorder::new(name);
            let query = self.join(user.peer(), header.session, &payload)?;
            rec.stage(0, "sample", StageKind::Preprocess, &[user]);
            self.run(rec, user, query).await?;
        }
    }

    fn join(&self, peer: &str, session: SessionId, payload: &[u8]) -> Result<Query> {
        let mut r = Reader::new(payload, peer, "join");
        let batch = r.u32()? as usize;
        let samples = r.u32()? as usize;
        r.check_range("batch", batch, 1..=self.max_batch)?;
        r.check_range("samples", samples, 1..=MAX_SAMPLES)?;
        let key = PublicKey::read(&self.he, &payload[8..]).map_err(|e| SuiteError::Protocol {
            peer: peer.into(),
            message: "join",
            violation: Violation::Key(e),
        })?;
        let mut rng = match self.sampling {
            Sampling::Fresh => os_rng(),
            Sampling::Replay(seed) => SecretRng::from_seed(seed),
        };
        let samples = (0..samples)
            .map(|_| self.posterior.sample_fixed(&self.mean, self.params, &mut rng))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let linear: Vec<usize> =
            (0..samples[0].ops().len()).filter(|&i| samples[0].linear_kernel(i).is_some()).collect();
        Ok(Query { session, batch, key, samples, pending: linear.into_iter() })
    }

    async fn run(&self, mut rec: Recorder, user: &mut Channel, mut query: Query) -> Result<()> {
        let session = query.session;
        loop {
            let (header, payload) = user.recv_any().await?;
            let peer = user.peer().to_string();
            if header.session != session {
                return Err(SuiteError::Protocol { peer, message: "layer", violation: Violation::OtherQuery });
            }
            if header.kind == DONE {
                if let Some(node) = query.pending.next() {
                    return Err(SuiteError::Protocol {
                        peer,
                        message: "done",
                        violation: Violation::Missing { what: "linear layer", value: node as u64 },
                    });
                }
                rec.stage(0, "output", StageKind::Output, &[user]);
                let report = vec![rec.finish()];
                return send_reports(user, REPORT, session, &report).await;
            }
            if header.kind != LAYER {
                return Err(NetError::UnexpectedKind { peer, expected: LAYER, got: header.kind }.into());
            }
            let node = header.layer as usize;
            if query.pending.next() != Some(node) {
                return Err(SuiteError::Protocol {
                    peer,
                    message: "layer",
                    violation: Violation::WrongNode { node: node as u32, expected: "the next linear layer" },
                });
            }
            let he = self.he.clone();
            let (samples, key, batch) = (query.samples.clone(), query.key.clone(), query.batch);
            let span = tracing::debug_span!("layer", node, kind = ?StageKind::HeLinear);
            async {
                let reply =
                    tokio::task::spawn_blocking(move || evaluate(&he, &peer, &samples, &key, node, batch, &payload))
                        .await
                        .map_err(|e| SuiteError::stopped("the layer", &e))??;
                user.send(PRODUCT, session, node as u32, &reply).await?;
                Ok::<_, SuiteError>(())
            }
            .instrument(span)
            .await?;
            rec.stage(node as u32, query.samples[0].node_name(node), StageKind::HeLinear, &[user]);
        }
    }
}

/// Evaluates linear node `node` of every sample on the user's ciphertexts; the sealed results.
fn evaluate(
    he: &HeParams,
    peer: &str,
    samples: &[Arc<FixedModel>],
    key: &PublicKey,
    node: usize,
    batch: usize,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let mut r = Reader::new(payload, peer, "layer");
    let sets = match r.u32()? {
        0 => samples.len(),
        1 => 1,
        other => return Err(r.error(Violation::UnknownTag { field: "shared flag", value: other })),
    };
    let kernel = samples[0].linear_kernel(node).expect("a linear node");
    let packing = ConvPacking::plan(he, *kernel.geometry())?;
    let per_image = packing.input_ciphertexts();
    let inputs = read_ciphertexts(he, peer, Form::Seeded, &payload[4..], sets * batch * per_image, "layer")?;
    let mut rng = os_rng();
    let mut results = Vec::with_capacity(samples.len() * batch * packing.output_ciphertexts());
    for (s, sample) in samples.iter().enumerate() {
        let FixedOp::Linear { kernel, bias } = &sample.ops()[node] else { unreachable!("a linear node") };
        let weights = kernel.integer_weights();
        let set = if sets == 1 { 0 } else { s };
        for image in 0..batch {
            let at = (set * batch + image) * per_image;
            results.extend(packing.evaluate(
                he,
                &inputs[at..at + per_image],
                &weights,
                bias.as_deref().map_or(Addend::Zero, Addend::PerChannel),
                &mut rng,
            )?);
        }
    }
    seal_all(key, &results)
}
