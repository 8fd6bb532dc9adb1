//! Both servers and the user in this process, over in-memory channels: what the tests and the
//! in-process benchmark run. The protocol code is the same as across processes.

use std::sync::Arc;
use std::time::Duration;

use tessera_he::{HeParams, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::{Channel, SessionId, TappedFrame, Wiretap};

use super::server::{Inspection, KeySlot, Party, PeerLink, join_from_frame, receive, server};
use super::{Deal, Layout, Outcome, SERVERS, max_batch, user};
use crate::error::{Result, SuiteError};
use crate::parties::join_parties;

/// Settings of an in-memory run.
#[derive(Debug, Clone)]
pub struct InMemoryRun {
    /// Receive deadline on every channel.
    pub timeout: Duration,
    /// Where items reach their key owner.
    pub layout: Layout,
    /// Keep each server's exact view of the query ([`ServerView`]), for the tests that attack it.
    pub views: bool,
    /// One trace per server (`S1`'s first): every nonlinear layer's input and output shares.
    pub layer_shares: Option<[LayerTrace; 2]>,
}

/// One server's view of a query: every frame it received (from the user and from its peer), in
/// order, and its secret key, with which it decrypts what it receives as key owner.
pub struct ServerView {
    /// The frames, as received.
    pub frames: Vec<TappedFrame>,
    /// The server's secret key of the query.
    pub key: Arc<SecretKey>,
}

impl std::fmt::Debug for ServerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerView").field("frames", &self.frames.len()).finish_non_exhaustive()
    }
}

/// Runs one query with every party on its own task; returns the outcome and, if asked, both
/// servers' views (`S1`'s first).
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    he: &Arc<HeParams>,
    input: &[u64],
    batch: usize,
    settings: &InMemoryRun,
) -> Result<(Outcome, Vec<ServerView>)> {
    let (max, timeout) = (1 << 30, settings.timeout);
    let session = SessionId::random();
    let (to_s2, at_s2) = Channel::pair(SERVERS[0], SERVERS[1], timeout, max);
    let mut peer_channels = [Some(to_s2), Some(at_s2)];
    let mut user_links = Vec::new();
    let mut tasks = Vec::new();
    let mut views = Vec::new();
    let limit = max_batch(model, he, max);
    for (i, name) in SERVERS.iter().enumerate() {
        let (u, mut h) = Channel::pair("user", name, timeout, max);
        let mut c = peer_channels[i].take().expect("one link per server");
        let key_slot = settings.views.then(|| {
            let (tap, slot) = (Wiretap::new(), KeySlot::default());
            h.tap(tap.clone());
            c.tap(tap.clone());
            views.push((tap, slot.clone()));
            slot
        });
        user_links.push(u);
        let inspect = Inspection { key: key_slot, layers: settings.layer_shares.as_ref().map(|t| t[i].clone()) };
        let (model, he) = (model.clone(), he.clone());
        tasks.push(tokio::spawn(async move {
            let (header, payload) = h.recv_any().await?;
            let from_user = receive(&mut h, header, payload, &model, &he, limit).await?;
            let he2 = he.clone();
            let peer = async move {
                if i == 0 {
                    return Ok(PeerLink::Dialed(c));
                }
                let (header, payload) = c.recv_any().await?;
                let join = join_from_frame(&he2, SERVERS[0], header, &payload, limit)?;
                Ok(PeerLink::Accepted(c, Box::new(join)))
            };
            server(Party { name, model, he }, &mut h, header.session, from_user, peer, inspect).await.map(drop)
        }));
    }
    let deal = Deal { slots: he.degree(), layout: settings.layout };
    let outcome = user("user", &mut user_links, session, model, input, batch, deal).await;
    drop(user_links);
    let outcome = join_parties(outcome, tasks).await?;
    let views = views
        .into_iter()
        .map(|(tap, slot)| {
            let key = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            let key = key.ok_or(SuiteError::NoKeyKept)?;
            Ok(ServerView { frames: tap.frames(), key })
        })
        .collect::<Result<_>>()?;
    Ok((outcome, views))
}
