//! The user: agrees a seed with each remote server through the gateway, preprocesses the layers
//! before the cut with the gateway as in clientserver, hands its share of the cut value to the
//! remote servers, and online sends one message and receives the logits.

use std::sync::Arc;

use tessera_field::seed::{Purpose, os_rng};
use tessera_field::{Seed, zt};
use tessera_he::HeParams;
use tessera_model::ModelError;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use zeroize::Zeroizing;

use super::keys::{Ephemeral, PUBLIC_BYTES};
use super::{KEYS, LOGITS, PREPARE, PREPARED, QUERY, REPORT, TRANSITION, recv_after_progress};
use crate::clientserver::{self, missing_report, prepare_traced, run_layers};
use crate::error::{Result, SuiteError, Violation};
use crate::parties::Outcome;
use crate::wire::{Reader, elements_to_bytes, parse_reports, recv_reports, send_wiped};

/// What the user knows of a split model: the architecture before the cut (no weight is read)
/// and the number of logits; nothing of the layers after the cut.
#[derive(Debug, Clone)]
pub struct UserModel {
    /// The layers before the cut (empty when the cut is before the first layer).
    pub prefix: Arc<FixedModel>,
    /// Logits per image.
    pub logits: usize,
    /// Whether layers run after the cut (on the remote servers).
    pub remote: bool,
}

/// What the user keeps of one preprocessed query. Serves one query only; `Debug` shows sizes
/// only; wiped on drop.
pub struct UserMaterial {
    session: SessionId,
    batch: usize,
    /// The seeds shared with B and C (none without remote layers).
    seeds: Option<[Seed; 2]>,
    /// The clientserver material of the layers before the cut.
    prefix: Option<clientserver::UserMaterial>,
    /// Every party's preprocessing report (the user's first).
    reports: Vec<PartyReport>,
}

impl std::fmt::Debug for UserMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserMaterial").field("batch", &self.batch).finish_non_exhaustive()
    }
}

impl UserMaterial {
    /// Bytes the user stores until the query runs: the two seeds and the layers before the
    /// cut's masks, shares and garbling secrets.
    pub fn stored_bytes(&self) -> usize {
        self.seeds.as_ref().map_or(0, |_| 64) + self.prefix.as_ref().map_or(0, |p| p.stored_bytes())
    }
}

/// Preprocesses one query of `batch` images with the gateway on `gateway`.
pub async fn prepare(
    name: &str,
    model: &UserModel,
    he: &HeParams,
    gateway: &mut Channel,
    batch: usize,
) -> Result<UserMaterial> {
    prepare_traced_seco(name, model, he, gateway, batch, None).await
}

/// [`prepare`], recording the user's shares before the cut into `trace` (in-memory test runs).
pub(crate) async fn prepare_traced_seco(
    name: &str,
    model: &UserModel,
    he: &HeParams,
    gateway: &mut Channel,
    batch: usize,
    trace: Option<LayerTrace>,
) -> Result<UserMaterial> {
    let session = SessionId::random();
    let mut rec = Recorder::new(name).counting_from(&[gateway]);
    let ephemeral = Ephemeral::new(&mut os_rng());
    let mut prepare = (batch as u32).to_le_bytes().to_vec();
    prepare.extend_from_slice(&ephemeral.public());
    gateway.send(PREPARE, session, 0, &prepare).await?;
    let keys = gateway.recv(KEYS, session, 0).await?;
    let seeds = if model.remote {
        let mut r = Reader::new(&keys, gateway.peer(), "keys");
        let (b, c) = (*r.seed()?.expose_bytes(), *r.seed()?.expose_bytes());
        r.end()?;
        let agree = |remote: [u8; PUBLIC_BYTES]| {
            ephemeral.agree(remote, session, ephemeral.public(), remote).ok_or_else(|| SuiteError::Protocol {
                peer: gateway.peer().into(),
                message: "keys",
                violation: Violation::SmallOrderKey,
            })
        };
        Some([agree(b)?, agree(c)?])
    } else {
        Reader::new(&keys, gateway.peer(), "keys").end()?;
        None
    };
    rec.stage(0, "keys", StageKind::Keys, &[gateway]);
    let mut own = rec.finish();
    // The layers before the cut record their own costs, as in clientserver.
    let prefix = if model.prefix.ops().is_empty() {
        None
    } else {
        Some(prepare_traced(name, model.prefix.clone(), he, gateway, session, batch, trace).await?)
    };
    let mut rec = Recorder::new(name).counting_from(&[gateway]);
    if let (Some(material), Some(seeds)) = (&prefix, &seeds) {
        let mut delta = material.output_share().to_vec();
        subtract_streams(&mut delta, seeds);
        send_wiped(gateway, TRANSITION, session, 0, elements_to_bytes(&delta)).await?;
    }
    let prepared = recv_after_progress(gateway, PREPARED, session).await?;
    let servers = parse_reports(gateway.peer(), &prepared)?;
    rec.stage(0, "preprocess", StageKind::Preprocess, &[gateway]);
    own.append(rec.finish());
    let mut reports = vec![own];
    reports.extend(servers);
    Ok(UserMaterial { session, batch, seeds, prefix, reports })
}

/// `v −= G(σ_B) + G(σ_C)`: the remote servers' shares of the cut value.
fn subtract_streams(v: &mut [u64], seeds: &[Seed; 2]) {
    for seed in seeds {
        let stream = Zeroizing::new(zt::random_vec(&mut seed.derive(Purpose::InputShare, 0), v.len()));
        v.iter_mut().zip(stream.iter()).for_each(|(x, &g)| *x = zt::sub(*x, g));
    }
}

/// Runs the query `material` was prepared for on `input` (its `batch` images, encoded at
/// activation scale): the logits and every party's reports, the preprocessing's included.
pub async fn run(
    name: &str,
    model: &UserModel,
    gateway: &mut Channel,
    material: UserMaterial,
    input: &[u64],
) -> Result<Outcome> {
    let UserMaterial { session, batch, seeds, prefix, mut reports } = material;
    let expected = model.prefix.input_shape().len();
    if input.len() != batch * expected {
        return Err(ModelError::InputLength { expected, batch, actual: input.len() }.into());
    }
    let mut rec = Recorder::new(name).counting_from(&[gateway]);
    let own = match prefix {
        Some(material) => {
            let (_, own, [user, server]) = run_layers(&mut rec, &model.prefix, gateway, material, input).await?;
            reports[0].append(user);
            reports[1].append(server);
            own
        }
        None => {
            let mut delta = input.to_vec();
            subtract_streams(&mut delta, seeds.as_ref().expect("seeds without layers before the cut"));
            send_wiped(gateway, QUERY, session, 0, elements_to_bytes(&delta)).await?;
            rec.stage(0, "input", StageKind::Input, &[gateway]);
            Zeroizing::new(Vec::new())
        }
    };
    let bytes = Zeroizing::new(recv_after_progress(gateway, LOGITS, session).await?);
    let mut r = Reader::new(&bytes, gateway.peer(), "logits");
    let mut logits = r.elements(batch * model.logits)?;
    r.end()?;
    match &seeds {
        Some(seeds) => {
            for seed in seeds {
                let pad = zt::random_vec(&mut seed.derive(Purpose::OutputPad, 0), logits.len());
                logits.iter_mut().zip(&pad).for_each(|(x, &p)| *x = zt::sub(*x, p));
            }
        }
        None => zt::add_assign(&mut logits, &own),
    }
    let online = recv_reports(gateway, REPORT, session).await?;
    rec.stage(0, "output", StageKind::Output, &[gateway]);
    let mut online = online.into_iter();
    reports[0].append(rec.finish());
    for report in reports.iter_mut().skip(1) {
        report.append(online.next().ok_or_else(|| missing_report(gateway.peer()))?);
    }
    Ok(Outcome { logits, reports })
}
