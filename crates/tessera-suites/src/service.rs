//! The two seams between a suite and a deployment: what a server party does with each
//! connection ([`Service`]), and how a party reaches another one by name ([`Connect`]). A
//! deployment implements `Connect` with TLS across processes, or with in-memory channels to
//! services in the same process; the suites' code is the same either way.

use std::time::Duration;

use futures::future::BoxFuture;
use tessera_net::{Channel, FrameHeader, MessageKind, NetError};

use crate::error::Result;

/// A server party of a suite. The deployment authenticates each connection and serves it on
/// its own task, so a failing connection never stops the others.
pub trait Service: Send + Sync + 'static {
    /// Serves one authenticated connection until its peer closes it or a step fails.
    fn handle(&self, channel: Channel) -> BoxFuture<'_, Result<()>>;
}

/// Opens channels to other parties of the same cluster.
pub trait Connect: Send + Sync + 'static {
    /// An authenticated channel to party `name`.
    fn connect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Channel>>;
}

/// The limits every channel of a deployment shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of every receive.
    pub timeout: Duration,
    /// Largest frame payload accepted.
    pub max_frame: u32,
}

/// The first frame of the peer's next query on `channel`, which must be of `kind`; `None` once
/// the peer closed the connection between queries.
pub async fn next_query(channel: &mut Channel, kind: MessageKind) -> Result<Option<(FrameHeader, Vec<u8>)>> {
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
