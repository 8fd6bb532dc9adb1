//! Client and cloud in this process over an in-memory channel (tests, in-process benchmarks).

use std::sync::Arc;
use std::time::Duration;

use tessera_model::fixed::FixedModel;
use tessera_net::{Channel, SessionId, Wiretap};

use super::{ClientSettings, Cloud, Outcome, client, preprocess};
use crate::error::{Result, SuiteError};

/// Runs `queries` queries on `input` against one `cloud` (so a stale cloud has something to
/// replay); returns the last outcome. `cloud_view` records every frame the cloud receives, in
/// order: its exact view.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    cloud: Arc<Cloud>,
    input: &[u64],
    batch: usize,
    settings: ClientSettings,
    queries: usize,
    cloud_view: Option<Wiretap>,
) -> Result<Outcome> {
    let (mut ours, mut theirs) = Channel::pair("client", "cloud", Duration::from_secs(60), 1 << 30);
    if let Some(tap) = cloud_view {
        theirs.tap(tap);
    }
    let server = tokio::spawn(async move { cloud.serve("cloud", &mut theirs).await });
    let mut last = None;
    for _ in 0..queries.max(1) {
        let pre = preprocess(model, batch, settings);
        let outcome =
            client("client", model.clone(), &mut ours, SessionId::random(), input.to_vec(), pre, settings).await;
        match outcome {
            Ok(o) => last = Some(o),
            Err(e) => {
                drop(ours);
                let _ = server.await;
                return Err(e);
            }
        }
    }
    drop(ours);
    server.await.map_err(|e| SuiteError::stopped("the cloud", &e))??;
    Ok(last.expect("at least one query"))
}
