//! A server party's accept loop.
//!
//! A server accepts authenticated connections from the parties its role talks to and serves
//! each on its own task with its suite's service: a misbehaving, slow or vanished peer ends that
//! connection (or that query) with a typed error, logged with peer and step and never with
//! values, while every other connection goes on.

use std::future::Future;
use std::sync::Arc;

use tessera_net::tls::TlsServer;
use tessera_suites::verify;
use tokio::net::TcpListener;

use crate::cluster::ClusterConfig;
use crate::dial::TlsConnect;
use crate::error::{Error, Result};
use crate::suite::{Role, Roster, ServerParty};

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
    let me = config.server(role, name)?;
    let model = config.load_model()?;
    let roster = config.roster();
    let limits = config.limits();
    let party = ServerParty {
        name: &me.name,
        role,
        roster: Roster(&roster),
        model: &model,
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
    tracing::info!(party = %me.name, %address, suite = %config.suite, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, addr)) = accepted else { continue };
                let (server, service, callers) = (server.clone(), service.clone(), callers.clone());
                tokio::spawn(async move {
                    match server.accept(tcp, &callers).await {
                        Ok(channel) => {
                            let peer = channel.peer().to_string();
                            if let Err(e) = service.handle(channel).await {
                                tracing::warn!(%peer, fault = ?e.fault(), error = %e, "connection ended with an error");
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
