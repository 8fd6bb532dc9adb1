//! A share-holder `S_j`: the linear layers on its share, its half of every nonlinear round
//! ([`super::nonlinear`]), with the channels.

use std::future::Future;
use std::sync::Arc;

use tessera_field::{FixedPointParams, Seed, seed::os_rng};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::{LayerTrace, Runner};
use tessera_net::{Channel, Recorder, SessionId, StageKind};
use tracing::Instrument;

use super::masks::HolderSecrets;
use super::msgs::{HolderInput, Join, Reshare};
use super::nonlinear::{HolderRound, derived_reshare};
use super::{JOIN, MASKED, OUTPUT, REPORT, RESHARE};
use crate::error::Result;
use crate::parties::{advance_linear, stage_kind};
use crate::wire::{elements_to_bytes, parse_wiped, recv_reports, send_reports, send_wiped};

/// Serves one query as holder `input.index`: runs the model on its share, with `S0` reached
/// through `central` (awaited while the first layers run), and returns the logit share and cost
/// reports to `user`. Gives back the link to `S0`, which may serve the next query. In-memory
/// test runs pass a `trace` to record every nonlinear layer's input and output share.
pub(crate) async fn holder(
    name: &str,
    model: Arc<FixedModel>,
    user: &mut Channel,
    session: SessionId,
    input: HolderInput,
    central: impl Future<Output = Result<Channel>>,
    trace: Option<LayerTrace>,
) -> Result<Option<Channel>> {
    let result = serve(name, model, user, session, input, central, trace).await;
    // A failure is told to the user at once instead of leaving it to its timeout.
    if let Err(e) = &result {
        user.abort(session, &e.to_string()).await;
    }
    result
}

/// What a holder keeps for the whole query.
struct Query {
    /// The query seed (the layers' masks).
    seed: Seed,
    /// What it tells `S0`, with the seed of its re-shares.
    join: Join,
    /// The model's fixed-point parameters.
    params: FixedPointParams,
}

/// Every step of the query.
async fn serve(
    name: &str,
    model: Arc<FixedModel>,
    user: &mut Channel,
    session: SessionId,
    input: HolderInput,
    central: impl Future<Output = Result<Channel>>,
    trace: Option<LayerTrace>,
) -> Result<Option<Channel>> {
    let mut rec = Recorder::new(name);
    rec.stage(0, "input", StageKind::Input, &[user]);
    let HolderInput { index, holders, batch, seed, share } = input;
    let pair_seed = Seed::random(&mut os_rng());
    let query = Query { seed, join: Join { session, index, holders, batch, pair_seed }, params: model.params() };
    let mut runner = Runner::new(model.clone(), share.as_slice().to_vec(), batch, index == 1).traced(trace);
    drop(share);
    let mut central_link: Option<Channel> = None;
    let mut central = std::pin::pin!(central);
    let mut first = 0usize;
    loop {
        let links: Vec<&Channel> = central_link.iter().collect();
        let (back, layer) = advance_linear(runner, &model, &mut rec, &mut first, &links).await?;
        runner = back;
        let Some(layer) = layer else { break };
        let s0 = match central_link {
            Some(ref mut c) => c,
            None => central_link.insert(join(central.as_mut().await?, &query.join).await?),
        };
        let span = tracing::debug_span!("layer", node = layer.node, kind = ?layer.kind);
        nonlinear_layer(s0, &query, &layer, &mut runner).instrument(span).await?;
        rec.stage(layer.node, model.node_name(layer.node as usize), stage_kind(&layer), &[s0]);
    }
    user.send(OUTPUT, session, 0, &elements_to_bytes(runner.output())).await?;
    drop(runner);
    finish(user, central_link, rec, &query.join).await
}

/// Opens the query at `S0` with the holder's `JOIN`.
async fn join(mut s0: Channel, join: &Join) -> Result<Channel> {
    send_wiped(&mut s0, JOIN, join.session, 0, join.to_bytes()).await?;
    Ok(s0)
}

/// One nonlinear round: the masked message to `S0`, the re-shares back (from `S0` for holder
/// 1, from the pair seed for the others), the output share into the runner.
async fn nonlinear_layer(s0: &mut Channel, query: &Query, layer: &NonlinearLayer, runner: &mut Runner) -> Result<()> {
    let Join { session, index, holders, batch, .. } = query.join;
    let secrets = HolderSecrets::derive(&query.seed, layer, batch, &query.params, index, holders);
    let (round, masked) = HolderRound::start(layer, secrets, runner.pending_input(), index == 1);
    send_wiped(s0, MASKED, session, layer.node, masked.into_payload()).await?;
    let reshare = if index == 1 {
        let payload = s0.recv(RESHARE, session, layer.node).await?;
        parse_wiped(payload, |p| Reshare::parse(s0.peer(), p, layer, batch))?
    } else {
        derived_reshare(&query.join.pair_seed, layer, batch)
    };
    runner.complete(round.finish(reshare));
    Ok(())
}

/// Sends the user the cost reports: this holder's, and `S0`'s through holder 1. Gives back the
/// link to `S0`, if the model has a nonlinear layer.
async fn finish(
    user: &mut Channel,
    central: Option<Channel>,
    mut rec: Recorder,
    join: &Join,
) -> Result<Option<Channel>> {
    let mut reports = Vec::new();
    let Some(mut s0) = central else {
        rec.stage(0, "output", StageKind::Output, &[user]);
        reports.insert(0, rec.finish());
        send_reports(user, REPORT, join.session, &reports).await?;
        return Ok(None);
    };
    if join.index == 1 {
        reports = recv_reports(&mut s0, REPORT, join.session).await?;
    }
    rec.stage(0, "output", StageKind::Output, &[user, &s0]);
    reports.insert(0, rec.finish());
    send_reports(user, REPORT, join.session, &reports).await?;
    Ok(Some(s0))
}
