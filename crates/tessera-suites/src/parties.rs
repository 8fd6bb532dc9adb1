//! What every multi-party suite's parties do alike: run the local linear layers up to the next
//! nonlinear one, collect output shares, and join in-process party tasks.

use futures::future::try_join_all;
use tessera_field::zt;
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::{NonlinearKind, NonlinearLayer};
use tessera_model::runner::Runner;
use tessera_net::{Channel, MessageKind, PartyReport, Recorder, SessionId, StageKind};

use crate::error::{Result, SuiteError};

/// What a multi-party query returns to its user.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `batch × classes` logits in `Z_t`, at the model's output scale.
    pub logits: Vec<u64>,
    /// Every party's cost report, the user's first (then the servers', in the suite's order).
    pub reports: Vec<PartyReport>,
}
use crate::wire::{Reader, recv_reports};

/// The stage kind reports give a nonlinear layer.
pub(crate) fn stage_kind(layer: &NonlinearLayer) -> StageKind {
    match layer.kind {
        NonlinearKind::Relu | NonlinearKind::LeakyRelu { .. } => StageKind::Relu,
        NonlinearKind::MaxPool { .. } => StageKind::MaxPool,
    }
}

/// Runs the linear layers after node `*first` on the blocking pool up to the next nonlinear
/// layer (returned, `None` at the end of the model), records them as one `linear` stage with
/// `links`, and moves `*first` past that layer.
pub(crate) async fn advance_linear(
    runner: Runner,
    model: &FixedModel,
    rec: &mut Recorder,
    first: &mut usize,
    links: &[&Channel],
) -> Result<(Runner, Option<NonlinearLayer>)> {
    let mut runner = runner;
    let (back, layer) = tokio::task::spawn_blocking(move || {
        let layer = runner.advance();
        (runner, layer)
    })
    .await
    .map_err(|e| SuiteError::stopped("the linear layers", &e))?;
    let end = layer.map_or(model.ops().len(), |l| l.node as usize);
    if end > *first {
        rec.stage(end as u32 - 1, model.node_name(end - 1), StageKind::Linear, links);
    }
    if let Some(l) = layer {
        *first = l.node as usize + 1;
    }
    Ok((back, layer))
}

/// The user's end of a query: from every server, its share of the `n` logits (frame `output`)
/// and its cost reports (frame `report`); returns the logits and each server's reports.
pub(crate) async fn collect_outputs(
    servers: &mut [Channel],
    session: SessionId,
    n: usize,
    output: MessageKind,
    report: MessageKind,
) -> Result<(Vec<u64>, Vec<Vec<PartyReport>>)> {
    let outputs = try_join_all(servers.iter_mut().map(|c| async move {
        let bytes = c.recv(output, session, 0).await?;
        let mut r = Reader::new(&bytes, c.peer(), "output");
        let share = r.elements(n)?;
        r.end()?;
        let reports = recv_reports(c, report, session).await?;
        Ok::<_, SuiteError>((share, reports))
    }))
    .await?;
    let mut logits = vec![0u64; n];
    let mut reports = Vec::with_capacity(outputs.len());
    for (share, r) in outputs {
        zt::add_assign(&mut logits, &share);
        reports.push(r);
    }
    Ok((logits, reports))
}

/// Waits for an in-process run's party tasks after the user's `outcome`. A failure cascades as
/// closed channels, so the error reported is the one where it started: the first that is not a
/// network error, if any.
pub(crate) async fn join_parties<T>(outcome: Result<T>, tasks: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<T> {
    let mut cause = None;
    for t in tasks.into_iter().rev() {
        let result = t.await.map_err(|e| SuiteError::stopped("a party", &e))?;
        if let Err(e) = result
            && cause.as_ref().is_none_or(|c: &SuiteError| matches!(c, SuiteError::Net(_)))
        {
            cause = Some(e);
        }
    }
    match (outcome, cause) {
        (Ok(outcome), None) => Ok(outcome),
        (Err(e), None) | (Ok(_), Some(e)) => Err(e),
        (Err(e), Some(c)) => Err(if matches!(c, SuiteError::Net(_)) { e } else { c }),
    }
}
