//! A server party's accept loop.
//!
//! A server accepts authenticated connections from the parties its role talks to and serves
//! each on its own task with its suite's service: a misbehaving, slow or vanished peer ends that
//! connection (or that query) with a typed error, logged with peer and step and never with
//! values, while every other connection goes on. It holds at most `max_connections`
//! connections, `max_connections_per_peer` of them from one party; every frame it receives is
//! checked at its header against the suite's limit for its kind, the read budget and the
//! sessions already served ([`tessera_net::admission`]); a failed accept pauses the loop.

use std::future::Future;
use std::sync::Arc;

use tessera_net::SessionId;
use tessera_net::tls::TlsServer;
use tessera_suites::verify;
use tokio::net::TcpListener;

use crate::cluster::ClusterConfig;
use crate::dial::TlsConnect;
use crate::error::{Error, Result};
use crate::gate::{Backoff, RefusalLog, Slots};
use crate::suite::{Role, Roster, ServerParty};

/// How a server party behaves beyond its role.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// A `verify` cloud that cheats (tests and demos).
    pub cheat: verify::Cheat,
    /// `clientserver`: preprocessed queries a server keeps per user connection.
    pub pool: usize,
    /// `clientserver`: bytes of preprocessed material a server keeps over all connections.
    pub pool_bytes: usize,
}

/// Preprocessed queries a `clientserver` server keeps per user connection by default.
pub const DEFAULT_POOL: usize = 4;

/// GiB of preprocessed material a `clientserver` server keeps over all connections by default
/// (one MiniONN-CIFAR image's is 1.45 GB).
pub const DEFAULT_POOL_GIB: usize = 8;

impl Default for ServeOptions {
    fn default() -> Self {
        Self { cheat: verify::Cheat::Honest, pool: DEFAULT_POOL, pool_bytes: DEFAULT_POOL_GIB << 30 }
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
    let me = config.server(role, name)?;
    // Suite seco: the party's own file of the split model, not the whole model.
    let (model, split) = match config.suite.splits_model() {
        true => (None, Some(config.load_split(me)?)),
        false => (Some(config.load_model()?), None),
    };
    let roster = config.roster();
    let limits = config.limits();
    let party = ServerParty {
        name: &me.name,
        role,
        roster: Roster(&roster),
        model: model.as_ref(),
        split: split.as_ref(),
        options: &options,
        net: Arc::new(TlsConnect::new(config, me)?),
        limits,
    };
    let served = config.suite.service(&party)?;
    let server = Arc::new(TlsServer::new(&config.identity(me)?, limits.timeout, limits.max_frame)?);
    let address = me.address.clone().unwrap_or_default();
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|e| Error::Listen { address: address.clone(), reason: e.to_string() })?;
    ready(listener.local_addr().map_err(|e| Error::Listen { address: address.clone(), reason: e.to_string() })?);
    let (service, callers) = (served.service, Arc::new(served.callers));
    let admission = Arc::new(config.admission(served.frames));
    let slots = Arc::new(Slots::new(config.max_connections, config.max_connections_per_peer));
    let refusals = Arc::new(RefusalLog::new());
    let mut backoff = Backoff::default();
    tracing::info!(party = %me.name, %address, suite = %config.suite, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (tcp, addr) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors (or memory): wait for connections to end.
                        refusals.refused("the listener", &e);
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                };
                backoff.reset();
                let Some(slot) = slots.connection() else {
                    refusals.refused(&addr.to_string(), &"the server holds its most connections");
                    continue;
                };
                let (server, service, callers) = (server.clone(), service.clone(), callers.clone());
                let (admission, slots, refusals) = (admission.clone(), slots.clone(), refusals.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let mut channel = match server.accept(tcp, &callers).await {
                        Ok(channel) => channel,
                        Err(e) => return refusals.refused(&addr.to_string(), &e),
                    };
                    let peer = channel.peer().to_string();
                    let Some(_peer_slot) = slots.peer(&peer) else {
                        let why = format!("{peer} holds its most connections to this server");
                        channel.abort(SessionId([0; 16]), &why).await;
                        channel.close().await;
                        return refusals.refused(&peer, &why);
                    };
                    channel.admit(admission);
                    if let Err(e) = service.handle(channel).await {
                        refusals.failed(&format!("{peer} ({:?} fault)", e.fault()), &e);
                    }
                });
            }
        }
    }
    tracing::info!(party = %me.name, "shut down");
    Ok(())
}
