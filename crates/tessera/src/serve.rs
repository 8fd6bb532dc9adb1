//! A party's server loop, and the user's side of a query.
//!
//! A server accepts authenticated connections from the parties its role talks to and serves
//! each on its own task: a misbehaving, slow or vanished peer ends that connection (or that
//! query) with a typed error, logged with peer and step and never with values, while every
//! other connection goes on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::try_join_all;
use tessera_field::fixed;
use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::plain::PlainEngine;
use tessera_net::tls::{Identity, TlsServer, connect};
use tessera_net::{Channel, NetError, PartyReport, Recorder, SessionId, StageKind};
use tessera_suites::bayes::{self, BayesServer, Sampling};
use tessera_suites::serpens_2;
use tessera_suites::serpens_n::{self, HolderInput, Join};
use tessera_suites::verify;
use tessera_suites::wire::parse_wiped;
use tessera_suites::{SuiteError, plain};
use tokio::net::TcpListener;

use crate::cluster::{ClusterConfig, PartyConfig, Role};
use crate::error::{Error, Result};
use crate::load::LoadedModel;

/// A holder's connection that joined a query, and where to hand it back once the query is done.
type Joined = (Channel, Join, tokio::sync::oneshot::Sender<Channel>);

/// Queries waiting at the central server for the rest of their holders.
type Pending = Mutex<HashMap<SessionId, Vec<Joined>>>;

/// How long a holder keeps an idle connection to the central server for its next query. The
/// central server waits up to the full timeout for the next query on a kept connection, so
/// the holder never reuses one the other end is about to close.
fn keep_idle(timeout: Duration) -> Duration {
    timeout / 2
}

/// Where `S2` pairs each query's user connection with `S1`'s connection for it: whichever
/// arrives first waits for the other (up to the timeout).
type Meeting = Mutex<HashMap<SessionId, Rendezvous>>;

/// One side of a serpens-2 query at `S2`, waiting for the other.
enum Rendezvous {
    /// The user's query is here; `S1`'s link goes to this sender.
    User(tokio::sync::oneshot::Sender<(Channel, Box<serpens_2::Join>)>),
    /// `S1`'s link is here, its `JOIN` read.
    Peer(Channel, Box<serpens_2::Join>),
}

/// Most images in one bayes query: with `S` samples, a layer's frame carries `S × batch` sets
/// of ciphertexts.
pub const BAYES_MAX_BATCH: usize = 16;

/// What one server party does with a connection.
enum Service {
    Plain {
        model: Arc<LoadedModel>,
    },
    Holder {
        name: String,
        model: Arc<FixedModel>,
        identity: Arc<Identity>,
        central: PartyConfig,
        /// Idle connections to the central server, with the time they went idle.
        kept: Arc<Mutex<Vec<(Channel, Instant)>>>,
    },
    Central {
        name: String,
        model: Arc<FixedModel>,
        layers: Arc<Vec<NonlinearLayer>>,
        pending: Arc<Pending>,
    },
    Cloud {
        name: String,
        cloud: Arc<verify::Cloud>,
    },
    /// A bayes server: samples weights per query, evaluates linear layers under HE.
    Bayes {
        name: String,
        server: Arc<BayesServer>,
    },
    /// A serpens-2 server: `S1` (index 1) dials `S2` for every query; `S2` meets it there.
    Pair {
        name: String,
        index: usize,
        model: Arc<FixedModel>,
        he: Arc<HeParams>,
        identity: Arc<Identity>,
        other: PartyConfig,
        meeting: Arc<Meeting>,
    },
}

/// How a server party behaves beyond its role.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A `verify` cloud that cheats (tests and demos).
    pub cheat: verify::Cheat,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { cheat: verify::Cheat::Honest }
    }
}

/// Serves party `name` (or the only party with `role`) until `shutdown` resolves. `ready` is
/// called with the bound address once connections are accepted.
pub async fn serve(
    config: &ClusterConfig,
    role: Role,
    name: Option<&str>,
    options: ServeOptions,
    ready: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let refuse = |reason: String| Error::Config { path: config.base.display().to_string(), reason };
    let candidates = config.parties_with(role);
    let me = match name {
        Some(n) => candidates.iter().find(|p| p.name == n).ok_or_else(|| refuse(format!("no {role} named `{n}`")))?,
        None if candidates.len() == 1 => candidates[0],
        None if candidates.is_empty() => {
            return Err(refuse(format!("role `{role}` does not serve in suite `{}`", config.suite)));
        }
        None => return Err(refuse(format!("several parties are `{role}`: name one with --name"))),
    };
    if role == Role::User {
        return Err(refuse("the user does not serve".into()));
    }
    let identity = config.identity(me)?;
    let model = Arc::new(config.load_model()?);
    let (service, peers) = match role {
        Role::Server if config.suite == "bayes" => {
            let posterior = model.posterior.clone().ok_or_else(|| {
                refuse(format!("model {} has no posterior: suite bayes needs a Bayesian model", model.path.display()))
            })?;
            let he = Arc::new(HeParams::standard().map_err(|e| Error::Local(e.to_string()))?);
            let server = BayesServer::new(
                model.original.clone(),
                posterior,
                model.params()?,
                he,
                Sampling::Fresh,
                BAYES_MAX_BATCH,
            );
            (Service::Bayes { name: me.name.clone(), server: Arc::new(server) }, config.names(Role::User))
        }
        Role::Server => (Service::Plain { model }, config.names(Role::User)),
        Role::Holder if config.suite == "serpens-2" => {
            let servers = config.parties_with(Role::Holder);
            let index = if servers[0].name == me.name { 1 } else { 2 };
            let other = servers[2 - index].clone();
            let mut peers = config.names(Role::User);
            if index == 2 {
                peers.push(other.name.clone());
            }
            let service = Service::Pair {
                name: me.name.clone(),
                index,
                model: model.fixed()?,
                he: Arc::new(HeParams::standard().map_err(|e| Error::Local(e.to_string()))?),
                identity: Arc::new(config.identity(me)?),
                other,
                meeting: Arc::new(Mutex::new(HashMap::new())),
            };
            (service, peers)
        }
        Role::Holder => (
            Service::Holder {
                name: me.name.clone(),
                model: model.fixed()?,
                identity: Arc::new(config.identity(me)?),
                central: config.party(Role::Central)?.clone(),
                kept: Arc::new(Mutex::new(Vec::new())),
            },
            config.names(Role::User),
        ),
        Role::Central => {
            let fixed = model.fixed()?;
            let layers = Arc::new(fixed.nonlinear_layers());
            let pending = Arc::new(Mutex::new(HashMap::new()));
            (Service::Central { name: me.name.clone(), model: fixed, layers, pending }, config.names(Role::Holder))
        }
        Role::Cloud => {
            let cloud = Arc::new(verify::Cloud::new(model.fixed()?, options.cheat));
            (Service::Cloud { name: me.name.clone(), cloud }, config.names(Role::User))
        }
        Role::User => unreachable!("refused above"),
    };
    let service = Arc::new(service);
    let timeout = config.timeout();
    let max_frame = config.max_frame_bytes;
    let server = Arc::new(TlsServer::new(&identity, timeout, max_frame)?);
    let address = me.address.clone().unwrap_or_default();
    let listener =
        TcpListener::bind(&address).await.map_err(|e| Error::Local(format!("cannot listen on {address}: {e}")))?;
    ready(listener.local_addr().map_err(|e| Error::Local(e.to_string()))?);
    let peers = Arc::new(peers);
    tracing::info!(party = %me.name, %address, suite = %config.suite, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, addr)) = accepted else { continue };
                let (server, service, peers) = (server.clone(), service.clone(), peers.clone());
                tokio::spawn(async move {
                    match server.accept(tcp, &peers).await {
                        Ok(channel) => {
                            let peer = channel.peer().to_string();
                            if let Err(e) = service.handle(channel, timeout, max_frame).await {
                                tracing::warn!(%peer, error = %e, "connection ended with an error");
                            }
                        }
                        Err(e) => tracing::warn!(%addr, error = %e, "connection refused"),
                    }
                });
            }
        }
    }
    tracing::info!(party = %me.name, "shut down");
    Ok(())
}

impl Service {
    /// Serves one authenticated connection.
    async fn handle(&self, mut channel: Channel, timeout: Duration, max_frame: u32) -> Result<()> {
        match self {
            Service::Plain { model } => serve_plain(channel, model).await,
            Service::Cloud { name, cloud } => Ok(cloud.serve(name, &mut channel).await?),
            Service::Bayes { name, server } => Ok(server.serve(name, &mut channel).await?),
            Service::Holder { name, model, identity, central, kept } => {
                let input_len = model.input_shape().len();
                // A user may send several queries on one connection.
                while let Some((header, payload)) = next_query(&mut channel, serpens_n::INPUT).await? {
                    let input = parse_wiped(payload, |p| {
                        HolderInput::parse(channel.peer(), p, input_len, serpens_n::max_batch(model, max_frame))
                    })?;
                    let idle = loop {
                        let next = {
                            let mut kept = kept.lock().expect("kept connections");
                            kept.retain(|(_, since)| since.elapsed() < keep_idle(timeout));
                            kept.pop()
                        };
                        match next {
                            Some((mut c, since)) => {
                                // The central server restarted or dropped it: try the next one.
                                if !c.peer_gone().await {
                                    break Some((c, since));
                                }
                            }
                            None => break None,
                        }
                    };
                    let reach = async {
                        match idle {
                            Some((mut c, _)) => {
                                c.reset_meter();
                                Ok(c)
                            }
                            None => {
                                let address = central.reach_address();
                                Ok::<_, SuiteError>(
                                    connect(identity, &address, &central.name, timeout, max_frame).await?,
                                )
                            }
                        }
                    };
                    let start = Instant::now();
                    let link =
                        serpens_n::holder(name, model.clone(), &mut channel, header.session, input, reach).await?;
                    if let Some(link) = link {
                        kept.lock().expect("kept connections").push((link, Instant::now()));
                    }
                    tracing::debug!(elapsed = ?start.elapsed(), "query served");
                }
                Ok(())
            }
            Service::Pair { name, index, model, he, identity, other, meeting } => {
                let limit = serpens_2::max_batch(model, he, max_frame);
                if channel.peer() == other.name {
                    // S1's link for one query: hand it to that query's user side.
                    let (header, payload) = channel.recv_any().await?;
                    let join = Box::new(serpens_2::join_from_frame(he, channel.peer(), header, &payload, limit)?);
                    let session = join.session;
                    let mut waiting = meeting.lock().expect("meeting");
                    match waiting.remove(&session) {
                        Some(Rendezvous::User(tx)) => {
                            let _ = tx.send((channel, join));
                        }
                        _ => {
                            waiting.insert(session, Rendezvous::Peer(channel, join));
                            let meeting = meeting.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(timeout).await;
                                meeting.lock().expect("meeting").remove(&session);
                            });
                        }
                    }
                    return Ok(());
                }
                while let Some((header, payload)) = next_query(&mut channel, serpens_2::CORRELATIONS).await? {
                    let from_user = serpens_2::receive(&mut channel, header, payload, model, he, limit).await?;
                    let session = header.session;
                    let peer = async {
                        if *index == 1 {
                            let link =
                                connect(identity, &other.reach_address(), &other.name, timeout, max_frame).await?;
                            return Ok(serpens_2::PeerLink::Dialed(link));
                        }
                        let arrived = {
                            let mut waiting = meeting.lock().expect("meeting");
                            match waiting.remove(&session) {
                                Some(Rendezvous::Peer(c, join)) => Ok((c, join)),
                                _ => {
                                    let (tx, rx) = tokio::sync::oneshot::channel();
                                    waiting.insert(session, Rendezvous::User(tx));
                                    Err(rx)
                                }
                            }
                        };
                        let (c, join) = match arrived {
                            Ok(link) => link,
                            Err(rx) => match tokio::time::timeout(timeout, rx).await {
                                Ok(Ok(link)) => link,
                                _ => {
                                    meeting.lock().expect("meeting").remove(&session);
                                    return Err(SuiteError::Net(NetError::Timeout {
                                        peer: other.name.clone(),
                                        step: serpens_2::JOIN,
                                        waited: timeout,
                                    }));
                                }
                            },
                        };
                        Ok(serpens_2::PeerLink::Accepted(c, join))
                    };
                    let start = Instant::now();
                    let link =
                        serpens_2::server(name, model.clone(), he.clone(), &mut channel, session, from_user, peer)
                            .await?;
                    link.close().await;
                    tracing::debug!(elapsed = ?start.elapsed(), "query served");
                }
                Ok(())
            }
            Service::Central { name, model, layers, pending } => {
                let batch_limit = serpens_n::max_batch(model, max_frame);
                let mut join = serpens_n::read_join(&mut channel, batch_limit).await?;
                // A holder keeps its connection for later queries: serve them until it goes idle.
                loop {
                    let (session, holders) = (join.session, join.holders);
                    let (back, returned) = tokio::sync::oneshot::channel();
                    let complete = {
                        let mut waiting = pending.lock().expect("pending queries");
                        let entry = waiting.entry(session).or_default();
                        entry.push((channel, join, back));
                        if entry.len() >= holders { waiting.remove(&session) } else { None }
                    };
                    if let Some(mut joined) = complete {
                        joined.sort_by_key(|(_, j, _)| j.index);
                        let (parts, senders): (Vec<_>, Vec<_>) =
                            joined.into_iter().map(|(c, j, s)| ((c, j), s)).unzip();
                        let channels = serpens_n::central(name, model.params(), layers, parts).await?;
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
                                if pending.lock().expect("pending queries").remove(&session).is_some() {
                                    return Err(Error::Local("a query's holders did not all join in time".into()));
                                }
                            }
                        }
                    };
                    let Some(frame) = channel.recv_next(timeout).await else { return Ok(()) };
                    let (header, payload) = frame?;
                    join = serpens_n::join_from_frame(channel.peer(), header, &payload, batch_limit)?;
                }
            }
        }
    }
}

/// The first frame of the user's next query on a connection, which must be of `kind`; `None`
/// once the user closed the connection.
async fn next_query(
    channel: &mut Channel,
    kind: tessera_net::MessageKind,
) -> Result<Option<(tessera_net::FrameHeader, Vec<u8>)>> {
    let (header, payload) = match channel.recv_any().await {
        Ok(frame) => frame,
        Err(NetError::PeerClosed { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if header.kind != kind {
        return Err(NetError::UnexpectedKind { peer: channel.peer().into(), expected: kind, got: header.kind }.into());
    }
    Ok(Some((header, payload)))
}

/// Serves plain queries on one connection until the user closes it.
async fn serve_plain(mut user: Channel, model: &LoadedModel) -> Result<()> {
    let mut engine = PlainEngine::new(&model.merged);
    let input_len = model.merged.input_shape().len();
    while let Some((header, payload)) = next_query(&mut user, plain::QUERY).await? {
        let start = Instant::now();
        plain::serve_query(&mut user, &mut engine, header.session, &payload, input_len).await?;
        tracing::debug!(peer = %user.peer(), elapsed = ?start.elapsed(), "query served");
    }
    Ok(())
}

/// What a query returned, with its cost.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// `batch × classes` logits.
    pub logits: Vec<f32>,
    /// Every party's cost report, the user's first.
    pub reports: Vec<PartyReport>,
    /// Wall time of the query (connections included).
    pub elapsed: Duration,
    /// Wall time of the TLS connection setup.
    pub connect: Duration,
    /// Layers whose offloaded product failed its check and were recomputed locally (verify).
    pub recomputed: Vec<u32>,
    /// bayes: each sampled forward pass's `batch × classes` logits (`logits` then holds the
    /// log of the meta-prediction, so that its softmax is the mean of the samples' softmax).
    pub sample_logits: Vec<Vec<f32>>,
}

/// Logits in `Z_t` as real numbers at the model's output scale.
fn decoded(model: &FixedModel, logits: &[u64]) -> Vec<f32> {
    let bits = model.output_bits();
    logits.iter().map(|&v| fixed::decode(v, bits) as f32).collect()
}

/// Sampled forward passes per bayes query unless asked otherwise.
pub const DEFAULT_SAMPLES: usize = 4;

/// How the user runs a query, beyond its input.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// How a `verify` client checks the cloud.
    pub verify: verify::ClientSettings,
    /// bayes: sampled forward passes averaged into the prediction.
    pub samples: usize,
    /// serpens-2: where a nonlinear layer's items reach their key owner.
    pub layout: serpens_2::Layout,
}

impl Default for QueryOptions {
    fn default() -> Self {
        let verify = verify::ClientSettings {
            disguise: verify::Disguise::Pad,
            challenge: verify::Challenge::Field,
            repetitions: 1,
            recompute_on_failure: false,
        };
        Self { verify, samples: DEFAULT_SAMPLES, layout: serpens_2::Layout::Hidden }
    }
}

/// The BFV parameters a user's queries share: building them (NTT tables for every prime) costs
/// more than a small query's HE work, so it happens once per process.
fn user_he_params() -> Result<&'static HeParams> {
    static HE: std::sync::OnceLock<HeParams> = std::sync::OnceLock::new();
    if let Some(he) = HE.get() {
        return Ok(he);
    }
    let he = HeParams::standard().map_err(|e| Error::Local(e.to_string()))?;
    Ok(HE.get_or_init(|| he))
}

/// Runs one query of the cluster's suite as its user, with default options.
pub async fn query(config: &ClusterConfig, model: &LoadedModel, input: &[f32], batch: u32) -> Result<QueryResult> {
    query_with(config, model, input, batch, &QueryOptions::default()).await
}

/// Runs one query of the cluster's suite as its user.
pub async fn query_with(
    config: &ClusterConfig,
    model: &LoadedModel,
    input: &[f32],
    batch: u32,
    options: &QueryOptions,
) -> Result<QueryResult> {
    let start = Instant::now();
    let me = config.party(Role::User)?;
    let identity = config.identity(me)?;
    let (timeout, max_frame) = (config.timeout(), config.max_frame_bytes);
    let reach = |p: &PartyConfig| {
        let address = p.reach_address();
        let (identity, name) = (&identity, p.name.clone());
        async move { connect(identity, &address, &name, timeout, max_frame).await }
    };
    let mut rec = Recorder::new(&me.name);
    let classes = model.merged.output_len();
    match config.suite.as_str() {
        "serpens-n" | "serpens-2" => {
            let servers = config.parties_with(Role::Holder);
            let connecting = Instant::now();
            let mut channels = try_join_all(servers.into_iter().map(reach)).await?;
            let connected = connecting.elapsed();
            let fixed = model.fixed()?;
            let encoded = fixed.encode_input(input, batch as usize)?;
            let (session, batch) = (SessionId::random(), batch as usize);
            let (logits, reports) = if config.suite == "serpens-n" {
                let o = serpens_n::user(&me.name, &mut channels, session, &encoded, batch, classes).await?;
                (o.logits, o.reports)
            } else {
                let deal = serpens_2::Deal { slots: user_he_params()?.degree(), layout: options.layout };
                let o = serpens_2::user(&me.name, &mut channels, session, &fixed, &encoded, batch, deal).await?;
                (o.logits, o.reports)
            };
            for c in channels {
                c.close().await;
            }
            Ok(QueryResult {
                logits: decoded(&fixed, &logits),
                reports,
                elapsed: start.elapsed(),
                connect: connected,
                recomputed: Vec::new(),
                sample_logits: Vec::new(),
            })
        }
        "verify" => {
            let fixed = model.fixed()?;
            let encoded = fixed.encode_input(input, batch as usize)?;
            // The pads do not depend on the input: a deployment prepares them ahead of time.
            let pre = verify::preprocess(&fixed, batch as usize, options.verify.disguise);
            let connecting = Instant::now();
            let mut channel = reach(config.party(Role::Cloud)?).await?;
            let connected = connecting.elapsed();
            let outcome = verify::client(
                &me.name,
                fixed.clone(),
                &mut channel,
                SessionId::random(),
                encoded,
                pre,
                options.verify,
            )
            .await?;
            channel.close().await;
            Ok(QueryResult {
                logits: decoded(&fixed, &outcome.logits),
                reports: outcome.reports,
                elapsed: start.elapsed(),
                connect: connected,
                recomputed: outcome.recomputed,
                sample_logits: Vec::new(),
            })
        }
        "bayes" => {
            let fixed = model.fixed()?;
            let encoded = fixed.encode_input(input, batch as usize)?;
            let he = user_he_params()?;
            let connecting = Instant::now();
            let mut channel = reach(config.party(Role::Server)?).await?;
            let connected = connecting.elapsed();
            let samples = options.samples;
            let session = SessionId::random();
            let outcome = bayes::user(
                &me.name,
                fixed.clone(),
                he,
                &mut channel,
                session,
                bayes::Query { input: encoded, batch: batch as usize, samples },
            )
            .await?;
            channel.close().await;
            Ok(QueryResult {
                logits: outcome.probabilities.iter().map(|&p| p.max(f64::MIN_POSITIVE).ln() as f32).collect(),
                reports: outcome.reports,
                elapsed: start.elapsed(),
                connect: connected,
                recomputed: Vec::new(),
                sample_logits: outcome.samples.iter().map(|l| decoded(&fixed, l)).collect(),
            })
        }
        _ => {
            let connecting = Instant::now();
            let mut channel = reach(config.party(Role::Server)?).await?;
            let connected = connecting.elapsed();
            rec.stage(0, "connect", StageKind::Connect, &[&channel]);
            let logits = plain::user(&mut channel, SessionId::random(), input, batch, classes).await?;
            rec.stage(0, "query", StageKind::Query, &[&channel]);
            channel.close().await;
            Ok(QueryResult {
                logits,
                reports: vec![rec.finish()],
                elapsed: start.elapsed(),
                connect: connected,
                recomputed: Vec::new(),
                sample_logits: Vec::new(),
            })
        }
    }
}
