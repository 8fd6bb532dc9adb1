//! User and server in this process over an in-memory channel (tests, in-process benchmarks).

use std::sync::Arc;
use std::time::Duration;

use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_net::{Channel, SessionId};

use super::{BayesServer, Outcome, Query, user};
use crate::error::{Result, SuiteError};

/// Runs one query of `samples` forward passes on `input` (`batch` encoded images).
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    server: Arc<BayesServer>,
    he: &HeParams,
    input: &[u64],
    batch: usize,
    samples: usize,
) -> Result<Outcome> {
    let (mut ours, mut theirs) = Channel::pair("user", "server", Duration::from_secs(120), 1 << 30);
    let task = tokio::spawn(async move { server.serve("server", &mut theirs).await });
    let outcome = user(
        "user",
        model.clone(),
        he,
        &mut ours,
        SessionId::random(),
        Query { input: input.to_vec(), batch, samples },
    )
    .await;
    drop(ours);
    let served = task.await.map_err(|e| SuiteError::stopped("the server", &e))?;
    let outcome = outcome?;
    served?;
    Ok(outcome)
}
