//! A party's server loop, and the user's side of a query.
//!
//! A server accepts authenticated connections from the parties its role talks to and serves
//! each on its own task: a misbehaving, slow or vanished peer ends that connection with a typed
//! error (logged with peer and step, never with values) while every other connection goes on.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_model::plain::PlainEngine;
use tessera_net::tls::{TlsServer, connect};
use tessera_net::{Channel, Meter, NetError, SessionId};
use tessera_suites::plain;
use tokio::net::TcpListener;

use crate::cluster::{ClusterConfig, Role};
use crate::error::{Error, Result};
use crate::load::LoadedModel;

/// Serves `role` of the cluster until `shutdown` resolves. `ready` is called with the bound
/// address once connections are accepted.
pub async fn serve(
    config: &ClusterConfig,
    role: Role,
    ready: impl FnOnce(std::net::SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    if role != Role::Server {
        return Err(Error::Config {
            path: config.base.display().to_string(),
            reason: format!("role `{role}` does not serve in suite `{}`", config.suite),
        });
    }
    let me = config.party(role)?;
    let identity = config.identity(me)?;
    let model = Arc::new(config.load_model()?);
    let server = Arc::new(TlsServer::new(&identity, config.timeout(), config.max_frame_bytes)?);
    let address = me.address.clone().unwrap_or_default();
    let listener =
        TcpListener::bind(&address).await.map_err(|e| Error::Local(format!("cannot listen on {address}: {e}")))?;
    ready(listener.local_addr().map_err(|e| Error::Local(e.to_string()))?);
    let users = Arc::new(config.names(Role::User));
    tracing::info!(party = %me.name, %address, suite = %config.suite, "serving");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((tcp, addr)) = accepted else { continue };
                let (server, model, users) = (server.clone(), model.clone(), users.clone());
                tokio::spawn(async move {
                    match server.accept(tcp, &users).await {
                        Ok(channel) => {
                            if let Err(e) = serve_connection(channel, &model).await {
                                tracing::warn!(error = %e, "connection ended with an error");
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

/// Serves queries on one connection until the user closes it.
async fn serve_connection(mut user: Channel, model: &LoadedModel) -> Result<()> {
    let mut engine = PlainEngine::new(&model.merged);
    let input_len = model.merged.input_shape().len();
    loop {
        let (header, payload) = match user.recv_any().await {
            Ok(frame) => frame,
            // The user is done with this connection.
            Err(NetError::PeerClosed { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if header.kind != plain::QUERY {
            return Err(NetError::UnexpectedKind {
                peer: user.peer().into(),
                expected: plain::QUERY,
                got: header.kind,
            }
            .into());
        }
        let start = Instant::now();
        plain::serve_query(&mut user, &mut engine, header.session, &payload, input_len).await?;
        tracing::debug!(peer = %user.peer(), elapsed = ?start.elapsed(), "query served");
    }
}

/// What a query returned, with its cost.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// `batch × classes` logits.
    pub logits: Vec<f32>,
    /// Traffic on the user's link.
    pub meter: Meter,
    /// Wall time of the query (connection included).
    pub elapsed: Duration,
    /// Wall time of the TLS connection setup.
    pub connect: Duration,
}

/// Runs one query of the cluster's suite as its user.
pub async fn query(config: &ClusterConfig, model: &LoadedModel, input: &[f32], batch: u32) -> Result<QueryResult> {
    let start = Instant::now();
    let me = config.party(Role::User)?;
    let identity = config.identity(me)?;
    let server = config.party(Role::Server)?;
    let address = server.address.clone().unwrap_or_default();
    let mut channel = connect(&identity, &address, &server.name, config.timeout(), config.max_frame_bytes).await?;
    let connected = start.elapsed();
    let logits = plain::user(&mut channel, SessionId::random(), input, batch, model.merged.output_len()).await?;
    let meter = channel.meter();
    channel.close().await;
    Ok(QueryResult { logits, meter, elapsed: start.elapsed(), connect: connected })
}
