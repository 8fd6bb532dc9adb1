//! The clientserver model owner as a deployment's server party.

use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_net::Channel;

use super::ClientServerServer;
use crate::error::Result;
use crate::service::Service;

/// Model owner `name`, serving every user connection with its own pool of preprocessed queries.
#[derive(Debug)]
pub struct ClientServerService {
    name: String,
    server: Arc<ClientServerServer>,
}

impl ClientServerService {
    /// `server`, reporting its costs as party `name`.
    pub fn new(name: &str, server: Arc<ClientServerServer>) -> Self {
        Self { name: name.to_string(), server }
    }
}

impl Service for ClientServerService {
    fn handle(&self, mut user: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.server.serve(&self.name, &mut user).await })
    }
}
