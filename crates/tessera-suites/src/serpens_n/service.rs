//! The share-holders and the central server as a deployment's server parties: a holder keeps
//! its connections to `S0` from query to query; `S0` gathers each query's holders by session.
//! Places come from the configuration, never from the messages: a holder serves only the
//! queries that address it by its own index, and `S0` takes index `j` only from the party
//! configured as holder `j`, once per query.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::BoxFuture;
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, NetError, SessionId};

use super::holder::holder;
use super::{HolderInput, INPUT, JOIN, Join, central, join_from_frame, max_batch, read_join};
use crate::error::{Mismatch, Result, SuiteError, Violation};
use crate::service::{Connect, Limits, Service, next_query};
use crate::wire::parse_wiped;

/// A share-holder: serves a user's queries, reaching `S0` through kept or fresh connections.
pub struct HolderService {
    name: String,
    /// Its index (1-based) among the configured holders.
    index: usize,
    /// How many holders the cluster has.
    holders: usize,
    model: Arc<FixedModel>,
    central: String,
    net: Arc<dyn Connect>,
    limits: Limits,
    /// Idle connections to the central server, with the time they went idle.
    kept: Mutex<Vec<(Channel, Instant)>>,
}

impl std::fmt::Debug for HolderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HolderService")
            .field("name", &self.name)
            .field("central", &self.central)
            .finish_non_exhaustive()
    }
}

impl HolderService {
    /// Holder `name`, number `index` of the cluster's `holders`, of `model`, reaching the
    /// central server `central` through `net`.
    pub fn new(
        name: &str,
        (index, holders): (usize, usize),
        model: Arc<FixedModel>,
        central: &str,
        net: Arc<dyn Connect>,
        limits: Limits,
    ) -> Self {
        let kept = Mutex::new(Vec::new());
        Self { name: name.into(), index, holders, model, central: central.into(), net, limits, kept }
    }

    /// Refuses an input that addresses another holder or another number of holders than the
    /// cluster's.
    fn check_place(&self, peer: &str, input: &HolderInput) -> Result<()> {
        if input.index != self.index {
            let mismatch = Mismatch::ServerIndex { got: input.index, this: self.index };
            return Err(SuiteError::Incompatible { peer: peer.into(), message: "input", mismatch });
        }
        if input.holders != self.holders {
            let n = self.holders as u64;
            let violation = Violation::OutOfRange { field: "holders", value: input.holders as u64, min: n, max: n };
            return Err(SuiteError::Protocol { peer: peer.into(), message: "input", violation });
        }
        Ok(())
    }

    /// An idle connection to `S0` that is still open, if one is kept. The central server waits
    /// up to the full timeout for the next query on a kept connection; a holder keeps one for
    /// half of it, so it never reuses one the other end is about to close.
    async fn idle_link(&self) -> Option<Channel> {
        loop {
            let next = {
                let mut kept = self.kept.lock().expect("kept connections");
                kept.retain(|(_, since)| since.elapsed() < self.limits.timeout / 2);
                kept.pop()
            };
            let (mut c, _) = next?;
            // The central server restarted or dropped it: try the next one.
            if !c.peer_gone().await {
                c.reset_meter();
                return Some(c);
            }
        }
    }
}

impl Service for HolderService {
    fn handle(&self, mut user: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (input_len, limit) = (self.model.input_shape().len(), max_batch(&self.model, self.limits.max_frame));
            // A user may send several queries on one connection.
            while let Some((header, payload)) = next_query(&mut user, INPUT).await? {
                let input = parse_wiped(payload, |p| HolderInput::parse(user.peer(), p, input_len, limit))
                    .and_then(|input| self.check_place(user.peer(), &input).map(|()| input));
                let input = match input {
                    Ok(input) => input,
                    Err(e) => {
                        user.abort(header.session, &e.to_string()).await;
                        return Err(e);
                    }
                };
                let idle = self.idle_link().await;
                let reach = async {
                    match idle {
                        Some(c) => Ok(c),
                        None => self.net.connect(&self.central).await,
                    }
                };
                let start = Instant::now();
                let (model, session) = (self.model.clone(), header.session);
                let link = holder(&self.name, model, &mut user, session, input, reach, None).await?;
                if let Some(link) = link {
                    self.kept.lock().expect("kept connections").push((link, Instant::now()));
                }
                tracing::debug!(elapsed = ?start.elapsed(), "query served");
            }
            Ok(())
        })
    }
}

/// A holder's connection that joined a query, and where to hand it back once the query is done.
type Joined = (Channel, Join, tokio::sync::oneshot::Sender<Channel>);

/// The central server `S0`: each holder connection joins a query; once all of a query's holders
/// joined, one task runs it and hands every connection back for its holder's next query.
pub struct CentralService {
    name: String,
    /// The configured holders' names, in index order.
    holders: Vec<String>,
    model: Arc<FixedModel>,
    layers: Vec<NonlinearLayer>,
    limits: Limits,
    /// Queries waiting for the rest of their holders.
    pending: Mutex<HashMap<SessionId, Vec<Joined>>>,
}

impl std::fmt::Debug for CentralService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CentralService").field("name", &self.name).finish_non_exhaustive()
    }
}

impl CentralService {
    /// Central server `name` of `model`, for the holders named `holders` (in index order).
    pub fn new(name: &str, holders: Vec<String>, model: Arc<FixedModel>, limits: Limits) -> Self {
        let layers = model.nonlinear_layers();
        Self { name: name.into(), holders, model, layers, limits, pending: Mutex::new(HashMap::new()) }
    }

    /// Refuses a `JOIN` from a party that is not the holder configured at its index, or for
    /// another number of holders than the cluster's.
    fn check_place(&self, peer: &str, join: &Join) -> Result<()> {
        let refuse = |violation| Err(SuiteError::Protocol { peer: peer.into(), message: "join", violation });
        if join.holders != self.holders.len() {
            let n = self.holders.len() as u64;
            return refuse(Violation::OutOfRange { field: "holders", value: join.holders as u64, min: n, max: n });
        }
        match self.holders.get(join.index - 1) {
            Some(owner) if owner == peer => Ok(()),
            owner => refuse(Violation::NotItsPlace {
                what: "holder index",
                index: join.index as u64,
                owner: owner.cloned().unwrap_or_default(),
            }),
        }
    }

    /// Adds a checked `JOIN` to its query; all of the query's joins once it is complete. A
    /// second `JOIN` for a place the query already has is refused.
    fn gather(&self, channel: Channel, join: Join, back: tokio::sync::oneshot::Sender<Channel>) -> Gathered {
        let mut waiting = self.pending.lock().expect("pending queries");
        let entry = waiting.entry(join.session).or_default();
        if entry.iter().any(|(_, j, _)| j.index == join.index) {
            return Gathered::Duplicate(Box::new((channel, join)));
        }
        let (session, holders) = (join.session, join.holders);
        entry.push((channel, join, back));
        if entry.len() >= holders {
            waiting.remove(&session).map_or(Gathered::Waiting, Gathered::Complete)
        } else {
            Gathered::Waiting
        }
    }
}

/// Where a `JOIN` left its query.
enum Gathered {
    /// The query waits for more holders.
    Waiting,
    /// Every holder joined.
    Complete(Vec<Joined>),
    /// The query already has a holder at this index.
    Duplicate(Box<(Channel, Join)>),
}

impl Service for CentralService {
    fn handle(&self, mut channel: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (timeout, batch_limit) = (self.limits.timeout, max_batch(&self.model, self.limits.max_frame));
            let mut join = read_join(&mut channel, batch_limit).await?;
            // A holder keeps its connection for later queries: serve them until it goes idle.
            loop {
                let session = join.session;
                if let Err(e) = self.check_place(channel.peer(), &join) {
                    channel.abort(session, &e.to_string()).await;
                    return Err(e);
                }
                let (back, returned) = tokio::sync::oneshot::channel();
                let complete = match self.gather(channel, join, back) {
                    Gathered::Waiting => None,
                    Gathered::Complete(joined) => Some(joined),
                    Gathered::Duplicate(refused) => {
                        let (mut channel, join) = *refused;
                        let violation = Violation::Duplicate { what: "join for holder", index: join.index as u64 };
                        let e = SuiteError::Protocol { peer: channel.peer().into(), message: "join", violation };
                        channel.abort(session, &e.to_string()).await;
                        return Err(e);
                    }
                };
                if let Some(mut joined) = complete {
                    joined.sort_by_key(|(_, j, _)| j.index);
                    let (parts, senders): (Vec<_>, Vec<_>) = joined.into_iter().map(|(c, j, s)| ((c, j), s)).unzip();
                    let channels = central(&self.name, self.model.params(), &self.layers, parts).await?;
                    for (c, s) in channels.into_iter().zip(senders) {
                        let _ = s.send(c);
                    }
                }
                // The other holders have one timeout to join; a query that started may take
                // longer (each of its receives has its own deadline).
                tokio::pin!(returned);
                channel = loop {
                    match tokio::time::timeout(timeout, &mut returned).await {
                        Ok(Ok(c)) => break c,
                        // The query failed (its task reported why).
                        Ok(Err(_)) => return Ok(()),
                        Err(_) => {
                            if self.pending.lock().expect("pending queries").remove(&session).is_some() {
                                return Err(NetError::Timeout {
                                    peer: "the other holders".into(),
                                    step: JOIN,
                                    waited: timeout,
                                }
                                .into());
                            }
                        }
                    }
                };
                let Some(frame) = channel.recv_next(timeout).await else { return Ok(()) };
                let (header, payload) = frame?;
                join = parse_wiped(payload, |p| join_from_frame(channel.peer(), header, p, batch_limit))?;
            }
        })
    }
}
