//! How a party of a configured cluster reaches another one: mutual TLS to the address the
//! configuration gives it.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_net::tls::{Identity, connect};
use tessera_net::{Channel, NetError};
use tessera_suites::SuiteError;
use tessera_suites::service::{Connect, Limits};

use crate::cluster::{ClusterConfig, PartyConfig};
use crate::error::Result;

/// Dials the parties of a cluster as one of them.
#[derive(Debug)]
pub(crate) struct TlsConnect {
    identity: Arc<Identity>,
    /// Where each server party is reached.
    addresses: HashMap<String, String>,
    limits: Limits,
}

impl TlsConnect {
    /// Connections made as `me`.
    pub fn new(config: &ClusterConfig, me: &PartyConfig) -> Result<Self> {
        let addresses = config.parties.iter().map(|p| (p.name.clone(), p.reach_address())).collect();
        Ok(Self { identity: Arc::new(config.identity(me)?), addresses, limits: config.limits() })
    }
}

impl Connect for TlsConnect {
    fn connect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, tessera_suites::Result<Channel>> {
        Box::pin(async move {
            let Some(address) = self.addresses.get(name) else {
                return Err(
                    NetError::Tls { peer: name.to_string(), reason: "no such party in the cluster".into() }.into()
                );
            };
            let Limits { timeout, max_frame } = self.limits;
            connect(&self.identity, address, name, timeout, max_frame).await.map_err(SuiteError::from)
        })
    }
}
