//! The four parties in this process over in-memory channels (tests, in-process benchmarks).
//! The protocol code is the same as across processes.

use std::sync::Arc;
use std::time::Duration;

use tessera_field::seed::os_rng;
use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_model::shares::WeightShares;
use tessera_net::{Channel, Wiretap};

use super::user::{UserModel, prepare_traced_seco};
use super::{Gateway, Remote, RemoteRole, run};
pub use crate::clientserver::{InMemoryOutcome, View};
use crate::error::Result;
use crate::parties::join_parties;

/// Settings of an in-memory run.
#[derive(Debug, Clone)]
pub struct InMemoryRun {
    /// Receive deadline on every channel.
    pub timeout: Duration,
    /// Keep each party's exact view ([`View`]), for the tests that attack it.
    pub views: bool,
    /// Traces of every nonlinear layer's shares after the cut: A's, B's, C's.
    pub layer_shares: Option<[LayerTrace; 3]>,
}

impl Default for InMemoryRun {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(300), views: false, layer_shares: None }
    }
}

/// Splits `model` after `split` weighted layers, deals B's and C's weight shares, and runs one
/// query on `input` (`batch` encoded images) with the four parties on their own tasks.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    split: usize,
    he: &Arc<HeParams>,
    input: &[u64],
    batch: usize,
    settings: &InMemoryRun,
) -> Result<InMemoryOutcome> {
    let parts = model.split(split)?;
    // Each party holds what its split file holds: the user and the remote servers no plaintext
    // weight (the remote servers their shares), the gateway the weights before the cut only.
    let user_model =
        UserModel { prefix: parts.prefix.architecture(), logits: model.output_len(), remote: parts.suffix.is_some() };
    let bare_suffix = parts.suffix.as_ref().map(|s| s.architecture());
    let limit = 1 << 30;
    let t = settings.timeout;
    let (mut user, mut a_user) = Channel::pair("user", "gateway", t, limit);
    let (mut a_b, mut b_a) = Channel::pair("gateway", "remote-b", t, limit);
    let (mut a_c, mut c_a) = Channel::pair("gateway", "remote-c", t, limit);
    let (mut b_c, mut c_b) = Channel::pair("remote-b", "remote-c", t, limit);
    let taps = settings.views.then(|| {
        let taps: [Wiretap; 4] = Default::default();
        user.tap(taps[0].clone());
        for ch in [&mut a_user, &mut a_b, &mut a_c] {
            ch.tap(taps[1].clone());
        }
        for ch in [&mut b_a, &mut b_c] {
            ch.tap(taps[2].clone());
        }
        for ch in [&mut c_a, &mut c_b] {
            ch.tap(taps[3].clone());
        }
        taps
    });
    let [a_trace, b_trace, c_trace] = settings.layer_shares.clone().map_or([None, None, None], |t| t.map(Some));
    let gateway = Gateway::new(parts.prefix.clone(), bare_suffix.clone(), he.clone()).traced(None, a_trace);
    let mut tasks = vec![tokio::spawn(async move { gateway.serve("gateway", &mut a_user, &mut a_b, &mut a_c).await })];
    if let Some(suffix) = &parts.suffix {
        let [b_shares, c_shares] = WeightShares::deal(suffix, &mut os_rng());
        let bare = bare_suffix.clone().expect("a suffix");
        let b = Remote::new(RemoteRole::B, bare.clone(), Arc::new(b_shares), he.clone()).traced(b_trace);
        let c = Remote::new(RemoteRole::C, bare, Arc::new(c_shares), he.clone()).traced(c_trace);
        tasks.push(tokio::spawn(async move { b.serve("remote-b", &mut b_a, &mut b_c).await }));
        tasks.push(tokio::spawn(async move { c.serve("remote-c", &mut c_a, &mut c_b).await }));
    }
    let outcome = async {
        let material = prepare_traced_seco("user", &user_model, he, &mut user, batch, None).await?;
        let user_storage = material.stored_bytes();
        Ok((run("user", &user_model, &mut user, material, input).await?, user_storage))
    }
    .await;
    drop(user);
    let (outcome, user_storage) = join_parties(outcome, tasks).await?;
    let views = taps.map_or_else(Vec::new, |t| t.iter().map(|tap| View { frames: tap.frames() }).collect());
    Ok(InMemoryOutcome { outcome, views, user_storage })
}
