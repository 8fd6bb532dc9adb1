//! Every party of a query in this process, over in-memory channels: what the tests and the
//! in-process benchmark run. The protocol code is the same as across processes.

use std::sync::Arc;
use std::time::Duration;

use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::{Channel, SessionId, Wiretap};

use super::holder::holder;
use super::{CENTRAL, HolderInput, Outcome, central, holder_name, max_batch, read_join, user};
use crate::error::{Result, SuiteError};
use crate::parties::join_parties;
use crate::wire::parse_wiped;

/// Settings of an in-memory run.
#[derive(Debug, Clone)]
pub struct InMemoryRun {
    /// Number of share-holders.
    pub holders: usize,
    /// Receive deadline on every channel.
    pub timeout: Duration,
    /// Records every frame `S0` receives, from every holder, in order: its exact view.
    pub central_view: Option<Wiretap>,
    /// One trace per holder, in holder order: every nonlinear layer's input and output shares.
    pub layer_shares: Option<Vec<LayerTrace>>,
}

/// Runs one query with every party on its own task.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    input: &[u64],
    batch: usize,
    settings: &InMemoryRun,
) -> Result<Outcome> {
    if !super::HOLDERS.contains(&settings.holders) {
        return Err(SuiteError::HolderCount { suite: "serpens-n", holders: settings.holders, allowed: super::HOLDERS });
    }
    let max = 1 << 30;
    let session = SessionId::random();
    let mut user_links = Vec::new();
    let mut tasks = Vec::new();
    let mut central_links = Vec::new();
    for j in 1..=settings.holders {
        let name = holder_name(j);
        let (u, mut h) = Channel::pair("user", &name, settings.timeout, max);
        let (to_s0, mut at_s0) = Channel::pair(&name, CENTRAL, settings.timeout, max);
        if let Some(tap) = &settings.central_view {
            at_s0.tap(tap.clone());
        }
        user_links.push(u);
        central_links.push(at_s0);
        let model = model.clone();
        let trace = settings.layer_shares.as_ref().and_then(|t| t.get(j - 1)).cloned();
        tasks.push(tokio::spawn(async move {
            let (header, payload) = h.recv_any().await?;
            let input = parse_wiped(payload, |p| {
                HolderInput::parse("user", p, model.input_shape().len(), max_batch(&model, max))
            })?;
            holder(&name, model, &mut h, header.session, input, async { Ok(to_s0) }, trace).await.map(drop)
        }));
    }
    let (params, layers) = (model.params(), model.nonlinear_layers());
    let batch_limit = max_batch(model, max);
    tasks.push(tokio::spawn(async move {
        let mut joined = Vec::new();
        for mut c in central_links {
            let join = read_join(&mut c, batch_limit).await?;
            joined.push((c, join));
        }
        central(CENTRAL, params, &layers, joined).await.map(drop)
    }));
    let outcome = user("user", &mut user_links, session, input, batch, model.output_len()).await;
    drop(user_links);
    join_parties(outcome, tasks).await
}
