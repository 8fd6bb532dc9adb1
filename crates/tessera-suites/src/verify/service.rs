//! The cloud as a deployment's server party.

use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_net::Channel;

use super::Cloud;
use crate::error::Result;
use crate::service::Service;

/// Cloud `name`, serving every client connection.
#[derive(Debug)]
pub struct CloudService {
    name: String,
    cloud: Arc<Cloud>,
}

impl CloudService {
    /// `cloud`, reporting its costs as party `name`.
    pub fn new(name: &str, cloud: Arc<Cloud>) -> Self {
        Self { name: name.to_string(), cloud }
    }
}

impl Service for CloudService {
    fn handle(&self, mut client: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move { self.cloud.serve(&self.name, &mut client).await })
    }
}
