//! Every party of a query in this process, over in-memory channels: what the tests and the
//! in-process benchmark run. The protocol code is the same as across processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, SessionId};

use super::{CENTRAL, HolderInput, Outcome, central, holder, holder_name, max_batch, read_join, user};
use crate::error::{Result, SuiteError};
use crate::parties::join_parties;

/// What `S0` saw of one layer: `z = π(k ⊙ x)` and `w = π(x + R)`.
#[derive(Debug, Clone)]
pub struct View {
    /// The layer.
    pub layer: NonlinearLayer,
    /// The masked, permuted values.
    pub z: Vec<u64>,
    /// The truncation-masked, permuted values.
    pub w: Vec<u64>,
}

/// Settings of an in-memory run.
#[derive(Debug, Clone)]
pub struct InMemoryRun {
    /// Number of share-holders.
    pub holders: usize,
    /// Receive deadline on every channel.
    pub timeout: Duration,
    /// Keep what `S0` saw (for inspection).
    pub record_views: bool,
}

/// Runs one query with every party on its own task; returns the outcome and, if asked, `S0`'s
/// views.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    input: &[u64],
    batch: usize,
    settings: &InMemoryRun,
) -> Result<(Outcome, Vec<View>)> {
    if !super::HOLDERS.contains(&settings.holders) {
        return Err(SuiteError::Local(format!("serpensN runs with 2 to 8 holders, not {}", settings.holders)));
    }
    let max = 1 << 30;
    let session = SessionId::random();
    let views = Arc::new(Mutex::new(Vec::new()));
    let mut user_links = Vec::new();
    let mut tasks = Vec::new();
    let mut central_links = Vec::new();
    for j in 1..=settings.holders {
        let name = holder_name(j);
        let (u, mut h) = Channel::pair("user", &name, settings.timeout, max);
        let (mut to_s0, at_s0) = Channel::pair(&name, CENTRAL, settings.timeout, max);
        user_links.push(u);
        central_links.push(at_s0);
        let model = model.clone();
        tasks.push(tokio::spawn(async move {
            let (header, payload) = h.recv_any().await?;
            let input = HolderInput::parse("user", &payload, model.input_shape().len(), max_batch(&model, max))?;
            let _ = &mut to_s0;
            holder(&name, model, &mut h, header.session, input, async { Ok(to_s0) }).await.map(drop)
        }));
    }
    let (params, layers) = (model.params(), model.nonlinear_layers());
    let batch_limit = max_batch(model, max);
    let record = settings.record_views;
    let seen = views.clone();
    tasks.push(tokio::spawn(async move {
        let mut joined = Vec::new();
        for mut c in central_links {
            let join = read_join(&mut c, batch_limit).await?;
            joined.push((c, join));
        }
        let mut observe = |layer: &NonlinearLayer, zw: &[u64]| {
            if record {
                let z = zw.iter().step_by(2).copied().collect();
                let w = zw.iter().skip(1).step_by(2).copied().collect();
                seen.lock().expect("views").push(View { layer: *layer, z, w });
            }
        };
        central(CENTRAL, params, &layers, joined, &mut observe).await.map(drop)
    }));
    let outcome = user("user", &mut user_links, session, input, batch, model.output_len()).await;
    drop(user_links);
    let outcome = join_parties(outcome, tasks).await?;
    let views = std::mem::take(&mut *views.lock().expect("views"));
    Ok((outcome, views))
}
