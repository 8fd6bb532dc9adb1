//! The user: deals the permutation correlations, splits the encoded images in two, collects
//! the logit shares and both reports.

use tessera_field::seed::os_rng;
use tessera_field::share::share;
use tessera_model::fixed::FixedModel;
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};

use super::msgs::{Correlations, ServerInput};
use super::{CORRELATIONS, INPUT, Layout, OUTPUT, REPORT};
use crate::error::{Result, SuiteError};
use crate::parties::{Outcome, collect_outputs};
use crate::wire::send_wiped;

/// What the user needs beyond the model to deal a query's correlations.
#[derive(Debug, Clone, Copy)]
pub struct Deal {
    /// Items per ciphertext: the servers' BFV slot count.
    pub slots: usize,
    /// Where items reach their key owner.
    pub layout: Layout,
}

/// Runs one query of `model` as the user: `input` holds `batch` images encoded at activation
/// scale; `servers` are the channels to `S1` and `S2`, in that order. The correlations go
/// first, as the `preprocess` stage: they do not depend on the input.
pub async fn user(
    name: &str,
    servers: &mut [Channel],
    session: SessionId,
    model: &FixedModel,
    input: &[u64],
    batch: usize,
    deal: Deal,
) -> Result<Outcome> {
    if servers.len() != 2 {
        return Err(SuiteError::ServerCount { servers: servers.len() });
    }
    let mut rec = Recorder::new(name);
    let dealt = Correlations::deal(&model.nonlinear_layers(), batch, deal.slots, deal.layout);
    for (channel, correlations) in servers.iter_mut().zip(&dealt) {
        send_wiped(channel, CORRELATIONS, session, 0, correlations.to_bytes()).await?;
    }
    drop(dealt);
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "preprocess", StageKind::Preprocess, &links);
    let shares = share(input, 2, &mut os_rng())?;
    for (i, (channel, share)) in servers.iter_mut().zip(shares).enumerate() {
        send_wiped(channel, INPUT, session, 0, ServerInput { index: i + 1, batch, share }.to_bytes()).await?;
    }
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "input", StageKind::Input, &links);
    let classes = model.output_len();
    let (logits, per_server) = collect_outputs(servers, session, batch * classes, OUTPUT, REPORT).await?;
    let mut reports: Vec<PartyReport> = per_server.into_iter().flatten().collect();
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "output", StageKind::Output, &links);
    reports.insert(0, rec.finish());
    Ok(Outcome { logits, reports })
}
