//! The bayes server as a deployment's server party.

use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_net::Channel;

use super::BayesServer;
use crate::error::Result;
use crate::service::Service;

/// Bayes server `name`, serving every user connection.
#[derive(Debug)]
pub struct BayesService {
    name: String,
    server: Arc<BayesServer>,
}

impl BayesService {
    /// `server`, reporting its costs as party `name`.
    pub fn new(name: &str, server: Arc<BayesServer>) -> Self {
        Self { name: name.to_string(), server }
    }
}

impl Service for BayesService {
    fn handle(&self, mut user: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.server.serve(&self.name, &mut user).await })
    }
}
