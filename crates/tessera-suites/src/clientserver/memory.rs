//! User and model owner in this process over an in-memory channel (tests, in-process
//! benchmarks). The protocol code is the same as across processes.

use std::sync::Arc;
use std::time::Duration;

use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::{Channel, SessionId, TappedFrame, Wiretap};

use super::user::prepare_traced;
use super::{ClientServerServer, MAX_BATCH, run};
use crate::error::Result;
use crate::parties::{Outcome, join_parties};

/// Settings of an in-memory run.
#[derive(Debug, Clone)]
pub struct InMemoryRun {
    /// Receive deadline on the channel.
    pub timeout: Duration,
    /// Keep each party's exact view ([`View`]), for the tests that attack it.
    pub views: bool,
    /// One trace per party (the user's first): every nonlinear layer's input and output shares.
    pub layer_shares: Option<[LayerTrace; 2]>,
}

impl Default for InMemoryRun {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(300), views: false, layer_shares: None }
    }
}

/// One party's view of a query: every frame it received, in order, from every peer,
/// preprocessing included.
#[derive(Debug, Clone)]
pub struct View {
    /// The frames, as received.
    pub frames: Vec<TappedFrame>,
}

/// What an in-memory run returns.
#[derive(Debug)]
pub struct InMemoryOutcome {
    /// The logits and reports.
    pub outcome: Outcome,
    /// The parties' views, the user's first, then the servers' in the suite's order (empty unless
    /// asked for).
    pub views: Vec<View>,
    /// Bytes the user stored between preprocessing and the online phase.
    pub user_storage: usize,
}

/// Preprocesses and runs one query on `input` (`batch` encoded images) with both parties on
/// their own tasks.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    he: &Arc<HeParams>,
    input: &[u64],
    batch: usize,
    settings: &InMemoryRun,
) -> Result<InMemoryOutcome> {
    let (mut user, mut server_end) = Channel::pair("user", "server", settings.timeout, 1 << 30);
    let taps = settings.views.then(|| {
        let taps = [Wiretap::new(), Wiretap::new()];
        user.tap(taps[0].clone());
        server_end.tap(taps[1].clone());
        taps
    });
    let [user_trace, server_trace] = settings.layer_shares.clone().map_or([None, None], |t| t.map(Some));
    let server = ClientServerServer::new(model.clone(), he.clone(), MAX_BATCH, 1, usize::MAX).traced(server_trace);
    let task = tokio::spawn(async move { server.serve("server", &mut server_end).await });
    let outcome = async {
        let material =
            prepare_traced("user", model.clone(), he, &mut user, SessionId::random(), batch, user_trace).await?;
        let user_storage = material.stored_bytes();
        Ok((run("user", model, &mut user, material, input).await?, user_storage))
    }
    .await;
    drop(user);
    let (outcome, user_storage) = join_parties(outcome, vec![task]).await?;
    let views = taps.map_or_else(Vec::new, |t| t.iter().map(|tap| View { frames: tap.frames() }).collect());
    Ok(InMemoryOutcome { outcome, views, user_storage })
}
