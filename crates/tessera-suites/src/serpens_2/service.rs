//! The two servers as a deployment's server parties: `S1` dials `S2` for every query; `S2`
//! pairs each query's user connection with `S1`'s connection for it, whichever comes first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_net::{Channel, NetError, SessionId};

use super::server::{Inspection, Party, server};
use super::{CORRELATIONS, JOIN, Join, PeerLink, join_from_frame, max_batch, receive};
use crate::error::{Result, SuiteError};
use crate::service::{Connect, Limits, Service, next_query};

/// One side of a query at `S2`, waiting for the other.
enum Rendezvous {
    /// The user's query is here; `S1`'s link goes to this sender.
    User(tokio::sync::oneshot::Sender<(Channel, Box<Join>)>),
    /// `S1`'s link is here, its `JOIN` read; the sender drops when the user side takes it.
    Peer(Channel, Box<Join>, tokio::sync::oneshot::Sender<()>),
}

/// Server `S1` or `S2` of suite serpens-2.
pub struct ShareServerService {
    name: String,
    /// 1 for `S1`, 2 for `S2`.
    index: usize,
    model: Arc<FixedModel>,
    he: Arc<HeParams>,
    /// The other server's name.
    other: String,
    net: Arc<dyn Connect>,
    limits: Limits,
    /// `S2`: queries whose user or whose `S1` link arrived first.
    meeting: Arc<Mutex<HashMap<SessionId, Rendezvous>>>,
}

impl std::fmt::Debug for ShareServerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareServerService")
            .field("name", &self.name)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

/// Who a share server is and how it reaches the other one.
#[derive(Clone)]
pub struct ShareServerSetup {
    /// Its name.
    pub name: String,
    /// 1 for `S1` (which dials), 2 for `S2`.
    pub index: usize,
    /// The other server's name.
    pub other: String,
    /// How `S1` reaches `S2`.
    pub net: Arc<dyn Connect>,
    /// The deployment's channel limits.
    pub limits: Limits,
}

impl ShareServerService {
    /// A server of `model` under the BFV parameters `he`.
    pub fn new(setup: ShareServerSetup, model: Arc<FixedModel>, he: Arc<HeParams>) -> Self {
        let ShareServerSetup { name, index, other, net, limits } = setup;
        Self { name, index, model, he, other, net, limits, meeting: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// `S2`: `S1`'s link for one query: hands it to that query's user side, or leaves it for
    /// the user side to find, waiting (and so holding its connection's slot) until it is taken
    /// or one timeout passed.
    async fn meet_peer(&self, mut channel: Channel, limit: usize) -> Result<()> {
        let (header, payload) = channel.recv_any().await?;
        let join = Box::new(join_from_frame(&self.he, channel.peer(), header, &payload, limit)?);
        let session = join.session;
        let taken = {
            let mut waiting = self.meeting.lock().expect("meeting");
            match waiting.remove(&session) {
                Some(Rendezvous::User(tx)) => {
                    let _ = tx.send((channel, join));
                    return Ok(());
                }
                _ => {
                    let (tx, taken) = tokio::sync::oneshot::channel();
                    waiting.insert(session, Rendezvous::Peer(channel, join, tx));
                    taken
                }
            }
        };
        if tokio::time::timeout(self.limits.timeout, taken).await.is_err() {
            let mut waiting = self.meeting.lock().expect("meeting");
            if matches!(waiting.get(&session), Some(Rendezvous::Peer(..))) {
                waiting.remove(&session);
            }
            return Err(SuiteError::Net(NetError::Timeout {
                peer: "the user of the query".into(),
                step: CORRELATIONS,
                waited: self.limits.timeout,
            }));
        }
        Ok(())
    }

    /// The link to the other server for query `session`: `S1` dials; `S2` waits for `S1`'s
    /// link to arrive (up to the timeout).
    async fn peer_link(&self, session: SessionId) -> Result<PeerLink> {
        if self.index == 1 {
            return Ok(PeerLink::Dialed(self.net.connect(&self.other).await?));
        }
        let arrived = {
            let mut waiting = self.meeting.lock().expect("meeting");
            match waiting.remove(&session) {
                // The sender drops here: `S1`'s connection task is done with the link.
                Some(Rendezvous::Peer(c, join, _taken)) => Ok((c, join)),
                _ => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiting.insert(session, Rendezvous::User(tx));
                    Err(rx)
                }
            }
        };
        let (c, join) = match arrived {
            Ok(link) => link,
            Err(rx) => match tokio::time::timeout(self.limits.timeout, rx).await {
                Ok(Ok(link)) => link,
                _ => {
                    self.meeting.lock().expect("meeting").remove(&session);
                    return Err(SuiteError::Net(NetError::Timeout {
                        peer: self.other.clone(),
                        step: JOIN,
                        waited: self.limits.timeout,
                    }));
                }
            },
        };
        Ok(PeerLink::Accepted(c, join))
    }
}

impl Service for ShareServerService {
    fn handle(&self, mut channel: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let limit = max_batch(&self.model, &self.he, self.limits.max_frame);
            if channel.peer() == self.other {
                return self.meet_peer(channel, limit).await;
            }
            while let Some((header, payload)) = next_query(&mut channel, CORRELATIONS).await? {
                let from_user = receive(&mut channel, header, payload, &self.model, &self.he, limit).await?;
                let session = header.session;
                let start = Instant::now();
                let peer = self.peer_link(session);
                let party = Party { name: &self.name, model: self.model.clone(), he: self.he.clone() };
                let link = server(party, &mut channel, session, from_user, peer, Inspection::default()).await?;
                link.close().await;
                tracing::debug!(elapsed = ?start.elapsed(), "query served");
            }
            Ok(())
        })
    }
}
