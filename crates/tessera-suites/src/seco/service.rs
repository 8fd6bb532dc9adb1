//! The gateway and the two remote servers as a deployment's server parties.
//!
//! The servers' links are opened **per user connection**: the gateway dials B and C when a user
//! connects and sends each a [`LINK`] frame with a fresh id; B then dials C and passes the same
//! id on. C pairs the gateway's link with B's by that id, whichever arrives first, waiting one
//! timeout at most. The three links then carry every query of that user connection, one after
//! another, and close with it. A query that fails ends its user connection and its links only:
//! every server goes on serving its other connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tessera_he::collective::DecryptionRequest;
use tessera_he::{ConvPacking, Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_net::admission::FrameLimits;
use tessera_net::{Channel, NetError, SessionId};

use super::keys::PUBLIC_BYTES;
use super::linear::{PRODUCT_LEVEL, mask_ciphertexts};
use super::{
    COLLECTIVE, CUT, DECRYPT, Gateway, LINK, MASK_SUM, MAX_BATCH, OPEN, OPENING, PREPARE, QUERY, Remote, RemoteRole,
    SETUP, TRANSITION,
};
use crate::clientserver;
use crate::error::{Result, SuiteError, Violation};
use crate::service::{Connect, Limits, Service, next_query};

/// The largest frame of each kind each server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    /// The gateway, from users: seco's `PREPARE`, `TRANSITION` and `QUERY`, and clientserver's
    /// messages for the layers before the cut.
    pub user: FrameLimits,
    /// Either remote server, from the gateway: the link, the setup, every secret linear layer's
    /// preprocessing and openings, the cut value (B) and the three-party circuits' messages.
    pub gateway: FrameLimits,
    /// C, from B: the link, the openings and the three-party circuits' messages.
    pub peer: FrameLimits,
}

/// The frame limits of a model split into `prefix` (the layers before the cut, where the party
/// knows them: the gateway's users' limits need them) and `suffix` (the architecture after the
/// cut, if any), for queries of up to [`MAX_BATCH`] images under the BFV parameters `he`; any
/// other kind (but an abort) is refused.
pub fn frame_limits(prefix: Option<&FixedModel>, suffix: Option<&FixedModel>, he: &HeParams) -> Result<Frames> {
    let cut = suffix.map_or(0, |s| s.input_shape().len());
    let user = match prefix {
        Some(prefix) if !prefix.ops().is_empty() => clientserver::frame_limits(prefix, he, MAX_BATCH)?,
        _ => FrameLimits::new(0),
    }
    .with(PREPARE, 4 + PUBLIC_BYTES)
    .with(TRANSITION, 8 * MAX_BATCH * cut)
    .with(QUERY, 8 * MAX_BATCH * cut);
    for layer in suffix.iter().flat_map(|s| s.nonlinear_layers()) {
        clientserver::gc_op(&layer)?;
    }
    let (mut sums, mut requests, mut openings) = (0, 0, 0);
    for node in 0..suffix.map_or(0, |s| s.ops().len()) {
        let Some(kernel) = suffix.and_then(|s| s.linear_kernel(node)) else { continue };
        let packing = ConvPacking::plan(he, *kernel.geometry())?;
        sums = sums.max(MAX_BATCH * mask_ciphertexts(&packing) * Form::Full { level: 0 }.size(he));
        requests = requests.max(MAX_BATCH * packing.output_ciphertexts() * DecryptionRequest::size(he, PRODUCT_LEVEL));
        openings = openings.max(8 * MAX_BATCH * kernel.geometry().input.len());
    }
    let (rounds, shifts) = (tessera_gc::MAX_FRAME as usize, tessera_gc::gmw::MAX_SHIFTS);
    use tessera_gc::gmw::{
        COLUMNS, CORRECTIONS, MAX_COLUMNS, MAX_CORRECTIONS, MESH_BASE, MESH_REPLY, ROUND, SEEDS, SHIFTS,
    };
    // The three-party circuits' messages, alike from every server.
    let gmw = |limits: FrameLimits| {
        limits
            .with(MESH_BASE, tessera_gc::gmw::BASE_BYTES)
            .with(MESH_REPLY, tessera_gc::gmw::REPLY_BYTES)
            .with(SEEDS, tessera_gc::gmw::SEED_BYTES)
            .with(COLUMNS, MAX_COLUMNS)
            .with(CORRECTIONS, MAX_CORRECTIONS)
            .with(ROUND, rounds)
            .with(SHIFTS, shifts)
    };
    let gateway = FrameLimits::new(0)
        .with(LINK, 0)
        .with(SETUP, 4 + 2 * PUBLIC_BYTES)
        .with(COLLECTIVE, PublicKey::size(he))
        .with(MASK_SUM, sums)
        .with(DECRYPT, requests)
        .with(OPENING, openings)
        .with(CUT, 8 * MAX_BATCH * cut);
    let peer = FrameLimits::new(0).with(LINK, 0).with(OPEN, openings);
    Ok(Frames { user, gateway: gmw(gateway), peer: gmw(peer) })
}

/// The first frame of a link, which must be an empty [`LINK`]: its id. `None` once the peer
/// closed the connection before sending it.
async fn link_id(channel: &mut Channel) -> Result<Option<SessionId>> {
    let Some((header, payload)) = next_query(channel, LINK).await? else { return Ok(None) };
    if !payload.is_empty() {
        let violation = Violation::Length { actual: payload.len(), expected: 0 };
        return Err(SuiteError::Protocol { peer: channel.peer().into(), message: "link", violation });
    }
    Ok(Some(header.session))
}

/// The gateway: serves each user connection's queries, over links to B and C it opens for that
/// connection.
pub struct GatewayService {
    name: String,
    gateway: Arc<Gateway>,
    /// Whether layers run after the cut (otherwise B and C take no part).
    remote: bool,
    /// B's and C's names.
    remotes: [String; 2],
    net: Arc<dyn Connect>,
    limits: Limits,
}

impl std::fmt::Debug for GatewayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayService").field("name", &self.name).field("remotes", &self.remotes).finish()
    }
}

impl GatewayService {
    /// Gateway `name` of `prefix` (with its weights) and `suffix` (the architecture after the
    /// cut, if any), reaching the remote servers `remotes` (B, then C) through `net`.
    pub fn new(
        name: &str,
        (prefix, suffix): (Arc<FixedModel>, Option<Arc<FixedModel>>),
        he: Arc<HeParams>,
        remotes: [String; 2],
        net: Arc<dyn Connect>,
        limits: Limits,
    ) -> Self {
        let remote = suffix.is_some();
        let gateway = Arc::new(Gateway::new(prefix, suffix, he));
        Self { name: name.into(), gateway, remote, remotes, net, limits }
    }

    /// Links to B and C for one user connection, each announced with the same fresh id.
    async fn open_links(&self) -> Result<(Channel, Channel)> {
        let id = SessionId::random();
        let [b, c] = &self.remotes;
        let (mut b, mut c) = futures::future::try_join(self.net.connect(b), self.net.connect(c)).await?;
        for link in [&mut b, &mut c] {
            link.send(LINK, id, 0, &[]).await?;
        }
        Ok((b, c))
    }

    /// Tells the user why its connection cannot be served: the reason goes with its first
    /// query's session, if it sends one within the timeout.
    async fn refuse(&self, user: &mut Channel, e: &SuiteError) {
        if let Ok(Some((header, _))) = next_query(user, PREPARE).await {
            user.abort(header.session, &e.to_string()).await;
        }
    }
}

impl Service for GatewayService {
    fn handle(&self, mut user: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (mut b, mut c) = if self.remote {
                match self.open_links().await {
                    Ok(links) => links,
                    Err(e) => {
                        self.refuse(&mut user, &e).await;
                        return Err(e);
                    }
                }
            } else {
                // Every layer is before the cut: the remote servers take no part.
                let t = self.limits.timeout;
                let (b, _) = Channel::pair(&self.name, &self.remotes[0], t, 0);
                let (c, _) = Channel::pair(&self.name, &self.remotes[1], t, 0);
                (b, c)
            };
            let served = self.gateway.serve(&self.name, &mut user, &mut b, &mut c).await;
            for link in [b, c] {
                link.close().await;
            }
            served
        })
    }
}

/// C's side of one link id, waiting for the other.
enum Rendezvous {
    /// The gateway's link is here; B's goes to this sender.
    Gateway(tokio::sync::oneshot::Sender<Channel>),
    /// B's link is here; the sender drops when the gateway's side takes it.
    Peer(Channel, tokio::sync::oneshot::Sender<()>),
}

/// A remote server: B accepts the gateway's links and dials C for each; C accepts the
/// gateway's and B's and pairs them.
pub struct RemoteService {
    name: String,
    /// `None` when every layer is before the cut: the server refuses every link.
    remote: Option<Arc<Remote>>,
    role: RemoteRole,
    /// The other remote server's name.
    other: String,
    net: Arc<dyn Connect>,
    limits: Limits,
    /// C: links whose gateway or B side arrived first, by id.
    meeting: Arc<Mutex<HashMap<SessionId, Rendezvous>>>,
}

impl std::fmt::Debug for RemoteService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteService").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl RemoteService {
    /// Remote server `name` in `role`, running `remote` (none without layers after the cut),
    /// with the other remote server `other` (B dials it through `net`).
    pub fn new(
        name: &str,
        role: RemoteRole,
        remote: Option<Remote>,
        other: &str,
        net: Arc<dyn Connect>,
        limits: Limits,
    ) -> Self {
        let meeting = Arc::new(Mutex::new(HashMap::new()));
        Self { name: name.into(), remote: remote.map(Arc::new), role, other: other.into(), net, limits, meeting }
    }

    /// C: B's link `id`: hands it to the gateway's side, or leaves it there and waits (holding
    /// its connection's slot) until it is taken or one timeout passed.
    async fn meet_peer(&self, channel: Channel, id: SessionId) -> Result<()> {
        let taken = {
            let mut waiting = self.meeting.lock().expect("meeting");
            match waiting.remove(&id) {
                Some(Rendezvous::Gateway(tx)) => {
                    let _ = tx.send(channel);
                    return Ok(());
                }
                other => {
                    // An id already waiting is a replay: the first link keeps its place.
                    if let Some(first) = other {
                        waiting.insert(id, first);
                        return Err(replayed(&self.other));
                    }
                    let (tx, taken) = tokio::sync::oneshot::channel();
                    waiting.insert(id, Rendezvous::Peer(channel, tx));
                    taken
                }
            }
        };
        if tokio::time::timeout(self.limits.timeout, taken).await.is_err() {
            let mut waiting = self.meeting.lock().expect("meeting");
            if matches!(waiting.get(&id), Some(Rendezvous::Peer(..))) {
                waiting.remove(&id);
            }
            return Err(
                NetError::Timeout { peer: "the gateway".into(), step: LINK, waited: self.limits.timeout }.into()
            );
        }
        Ok(())
    }

    /// C: B's link for the gateway's link `id`, waiting one timeout at most.
    async fn peer_link(&self, id: SessionId) -> Result<Channel> {
        let arrived = {
            let mut waiting = self.meeting.lock().expect("meeting");
            match waiting.remove(&id) {
                // The sender drops here: B's connection task is done with the link.
                Some(Rendezvous::Peer(c, _taken)) => Ok(c),
                Some(first) => {
                    waiting.insert(id, first);
                    return Err(replayed("the gateway"));
                }
                None => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    waiting.insert(id, Rendezvous::Gateway(tx));
                    Err(rx)
                }
            }
        };
        match arrived {
            Ok(c) => Ok(c),
            Err(rx) => match tokio::time::timeout(self.limits.timeout, rx).await {
                Ok(Ok(c)) => Ok(c),
                _ => {
                    let mut waiting = self.meeting.lock().expect("meeting");
                    if matches!(waiting.get(&id), Some(Rendezvous::Gateway(..))) {
                        waiting.remove(&id);
                    }
                    Err(NetError::Timeout { peer: self.other.clone(), step: LINK, waited: self.limits.timeout }.into())
                }
            },
        }
    }

    /// Serves the gateway's queries on `gateway` with the other remote server on `peer`.
    async fn serve(&self, remote: &Remote, mut gateway: Channel, mut peer: Channel) -> Result<()> {
        let served = remote.serve(&self.name, &mut gateway, &mut peer).await;
        peer.close().await;
        gateway.close().await;
        served
    }
}

/// A link id used twice.
fn replayed(peer: &str) -> SuiteError {
    NetError::Replayed { peer: peer.into(), kind: LINK }.into()
}

impl Service for RemoteService {
    fn handle(&self, mut channel: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let Some(id) = link_id(&mut channel).await? else { return Ok(()) };
            let Some(remote) = self.remote.clone() else {
                let e = SuiteError::UnsupportedModel { needs: "layers after the cut for the remote servers to run" };
                channel.abort(id, &e.to_string()).await;
                return Err(e);
            };
            match self.role {
                RemoteRole::B => {
                    let mut peer = match self.net.connect(&self.other).await {
                        Ok(peer) => peer,
                        Err(e) => {
                            refuse_first_query(&mut channel, &e).await;
                            return Err(e);
                        }
                    };
                    peer.send(LINK, id, 0, &[]).await?;
                    self.serve(&remote, channel, peer).await
                }
                RemoteRole::C if channel.peer() == self.other => self.meet_peer(channel, id).await,
                RemoteRole::C => match self.peer_link(id).await {
                    Ok(peer) => self.serve(&remote, channel, peer).await,
                    Err(e) => {
                        refuse_first_query(&mut channel, &e).await;
                        Err(e)
                    }
                },
            }
        })
    }
}

/// Tells the gateway why its link cannot serve: the reason goes with the first query's
/// session, if the gateway sends one within the timeout.
async fn refuse_first_query(gateway: &mut Channel, e: &SuiteError) {
    if let Ok(Some((header, _))) = next_query(gateway, SETUP).await {
        gateway.abort(header.session, &e.to_string()).await;
    }
}
