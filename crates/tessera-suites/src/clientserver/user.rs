//! The user: preprocesses a query ahead of its image (its shares of every value, the masked
//! products under its key, every nonlinear layer garbled), then runs it online.

use std::sync::Arc;

use tessera_field::{seed::os_rng, zt};
use tessera_gc::protocol::GarblerOffline;
use tessera_he::{ConvPacking, HeParams, SecretKey};
use tessera_model::ModelError;
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::{LayerTrace, Runner, Step};
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use zeroize::{Zeroize, Zeroizing};

use super::{ENCRYPTED, LOGITS, PREPARE, PREPARED, PRODUCT, QUERY, REPORT, gather, gc_error, gc_layer};
use crate::error::{Result, SuiteError};
use crate::he_layer::{decrypt_images, encrypt_images};
use crate::parties::{Outcome, stage_kind};
use crate::wire::{Reader, elements_to_bytes, recv_reports, send_wiped};

/// One nonlinear layer as the user (its garbler) keeps it for the online phase.
struct GarbledLayer {
    layer: NonlinearLayer,
    garbler: GarblerOffline,
    /// The user's shares of the layer's input, gathered in instance order.
    shares: Zeroizing<Vec<u64>>,
}

/// What the user keeps of one preprocessed query until it runs it: its input mask, its
/// shares of every nonlinear layer's input and of the logits, and each layer's garbling
/// secrets. Serves one query only ([`run`] consumes it). `Debug` shows sizes only; wiped on
/// drop.
pub struct UserMaterial {
    session: SessionId,
    batch: usize,
    input_mask: Zeroizing<Vec<u64>>,
    layers: Vec<GarbledLayer>,
    logits: Zeroizing<Vec<u64>>,
    /// The user's and the server's cost reports of the preprocessing.
    reports: [PartyReport; 2],
}

impl std::fmt::Debug for UserMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserMaterial")
            .field("batch", &self.batch)
            .field("layers", &self.layers.len())
            .field("stored_bytes", &self.stored_bytes())
            .finish_non_exhaustive()
    }
}

impl UserMaterial {
    /// Images the material serves.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The query the material was prepared for (tests that replay it).
    #[doc(hidden)]
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// The user's share of the model's output, known since preprocessing.
    pub(crate) fn output_share(&self) -> &[u64] {
        &self.logits
    }

    /// Bytes the user stores until the query runs: masks, shares and garbling secrets (the
    /// garbled tables are at the server).
    pub fn stored_bytes(&self) -> usize {
        let shares: usize = self.layers.iter().map(|l| 8 * l.shares.len() + l.garbler.stored_bytes()).sum();
        shares + 8 * (self.input_mask.len() + self.logits.len())
    }
}

/// Preprocesses one query of `batch` images with the server on `server`. `model` gives the
/// architecture and fixed-point parameters only: its weights are never read.
pub async fn prepare(
    name: &str,
    model: Arc<FixedModel>,
    he: &HeParams,
    server: &mut Channel,
    batch: usize,
) -> Result<UserMaterial> {
    prepare_traced(name, model, he, server, SessionId::random(), batch, None).await
}

/// [`prepare`] for query `session`, recording the user's share of every nonlinear layer's
/// input and output into `trace` (in-memory test runs).
pub(crate) async fn prepare_traced(
    name: &str,
    model: Arc<FixedModel>,
    he: &HeParams,
    server: &mut Channel,
    session: SessionId,
    batch: usize,
    trace: Option<LayerTrace>,
) -> Result<UserMaterial> {
    let mut rec = Recorder::new(name).counting_from(&[server]);
    let mut rng = os_rng();
    let key = SecretKey::generate(he, &mut rng)?;
    let mut prepare = (batch as u32).to_le_bytes().to_vec();
    key.public_key(&mut rng)?.write(he, &mut prepare)?;
    server.send(PREPARE, session, 0, &prepare).await?;
    rec.stage(0, "keys", StageKind::Keys, &[server]);
    let input_mask = Zeroizing::new(zt::random_vec(&mut rng, batch * model.input_shape().len()));
    let mut runner = Runner::new(model.clone(), input_mask.to_vec(), batch, false).offloading_linear().traced(trace);
    let mut layers = Vec::new();
    while let Some(step) = runner.step() {
        let output = match step {
            Step::Linear(node) => {
                let kernel = model.linear_kernel(node as usize).expect("a linear step");
                let packing = ConvPacking::plan(he, *kernel.geometry())?;
                let images = runner.pending_input().chunks(kernel.geometry().input.len());
                server.send(ENCRYPTED, session, node, &encrypt_images(he, &key, &packing, images)?).await?;
                let reply = server.recv(PRODUCT, session, node).await?;
                let mut images = decrypt_images(he, &key, &packing, server.peer(), &reply, batch)?;
                let product = images.concat();
                images.iter_mut().for_each(|image| image.zeroize());
                product
            }
            Step::Nonlinear(layer) => {
                let shares = Zeroizing::new(gather(&layer, runner.pending_input(), batch));
                let garbler =
                    tessera_gc::garbler_offline(server, session, layer.node, gc_layer(&layer, batch)?, &mut rng)
                        .await
                        .map_err(|e| gc_error(server.peer(), layer.node, e))?;
                let masks = garbler.output_shares().to_vec();
                layers.push(GarbledLayer { layer, garbler, shares });
                masks
            }
        };
        runner.complete(output);
        rec.stage(step.node(), model.node_name(step.node() as usize), StageKind::Preprocess, &[server]);
    }
    let logits = Zeroizing::new(runner.output().to_vec());
    let mut server_report = recv_reports(server, PREPARED, session).await?;
    rec.stage(0, "preprocess", StageKind::Preprocess, &[server]);
    let server_report = server_report.pop().ok_or_else(|| missing_report(server.peer()))?;
    Ok(UserMaterial { session, batch, input_mask, layers, logits, reports: [rec.finish(), server_report] })
}

/// Runs the query `material` was prepared for on `input` (its `batch` images, encoded at
/// activation scale), with the same server: the logits and both parties' reports, the
/// preprocessing's included.
pub async fn run(
    name: &str,
    model: &FixedModel,
    server: &mut Channel,
    material: UserMaterial,
    input: &[u64],
) -> Result<Outcome> {
    let mut rec = Recorder::new(name).counting_from(&[server]);
    let (session, own, reports) = run_layers(&mut rec, model, server, material, input).await?;
    let bytes = Zeroizing::new(server.recv(LOGITS, session, 0).await?);
    let mut r = Reader::new(&bytes, server.peer(), "logits");
    let mut logits = r.elements(own.len())?;
    r.end()?;
    zt::add_assign(&mut logits, &own);
    let mut server_online = recv_reports(server, REPORT, session).await?;
    rec.stage(0, "output", StageKind::Output, &[server]);
    let server_online = server_online.pop().ok_or_else(|| missing_report(server.peer()))?;
    let [mut user_report, mut server_report] = reports;
    user_report.append(rec.finish());
    server_report.append(server_online);
    Ok(Outcome { logits, reports: vec![user_report, server_report] })
}

/// The online phase up to the output: sends S's share of the input and runs every garbled
/// layer. Returns the query, the user's share of the output and the preprocessing's reports.
pub(crate) async fn run_layers(
    rec: &mut Recorder,
    model: &FixedModel,
    server: &mut Channel,
    material: UserMaterial,
    input: &[u64],
) -> Result<(SessionId, Zeroizing<Vec<u64>>, [PartyReport; 2])> {
    let UserMaterial { session, batch, input_mask, layers, logits: own, reports } = material;
    if input.len() != input_mask.len() {
        let expected = model.input_shape().len();
        return Err(ModelError::InputLength { expected, batch, actual: input.len() }.into());
    }
    let masked: Vec<u64> = input.iter().zip(input_mask.iter()).map(|(&x, &r)| zt::sub(x, r)).collect();
    send_wiped(server, QUERY, session, 0, elements_to_bytes(&masked)).await?;
    rec.stage(0, "input", StageKind::Input, &[server]);
    for GarbledLayer { layer, garbler, shares } in layers {
        tessera_gc::garbler_online(server, session, layer.node, garbler, shares.to_vec())
            .await
            .map_err(|e| gc_error(server.peer(), layer.node, e))?;
        rec.stage(layer.node, model.node_name(layer.node as usize), stage_kind(&layer), &[server]);
    }
    Ok((session, own, reports))
}

pub(crate) fn missing_report(peer: &str) -> SuiteError {
    SuiteError::Protocol {
        peer: peer.into(),
        message: "report",
        violation: crate::error::Violation::Report { reason: "no report".into() },
    }
}
