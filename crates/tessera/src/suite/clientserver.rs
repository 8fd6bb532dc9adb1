//! Suite `clientserver`: the user and the model owner; masks for every linear layer prepared
//! under the user's BFV key, every ReLU and max pool a garbled circuit the user garbles ahead
//! of the query. Neither the image nor the weights leave their owner.

use tessera_suites::clientserver::{self, ClientServerServer, ClientServerService, MAX_BATCH};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty, he_params};
use crate::error::Result;
use crate::query::{QueryResult, decoded};

/// Suite `clientserver`.
pub(crate) struct ClientServer;

impl Deployment for ClientServer {
    const ROLES: &'static [RoleCount] = &[RoleCount::USERS, RoleCount::exactly(Role::Server, 1)];
    const EXACT: bool = true;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        vec![("server".into(), Role::Server)]
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        if party.role != Role::Server {
            return Err(party.not_served(Suite::ClientServer, party.role));
        }
        let (model, he) = (party.model()?.fixed()?, he_params()?);
        let frames = clientserver::frame_limits(&model, &he, MAX_BATCH)?;
        let server = ClientServerServer::new(model, he, MAX_BATCH, party.options.pool, party.options.pool_bytes);
        Ok(Served::new(ClientServerService::new(party.name, server.into()), party, &[Role::User]).with_frames(frames))
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let fixed = user.model()?.fixed()?;
        let encoded = fixed.encode_input(input, batch as usize)?;
        let he = he_params()?;
        let (mut channels, connect) = user.connect(Role::Server).await?;
        let mut server = channels.remove(0);
        // The material does not depend on the input: a deployment prepares it ahead of time.
        let material = clientserver::prepare(user.name, fixed.clone(), &he, &mut server, batch as usize).await?;
        let user_storage_bytes = material.stored_bytes() as u64;
        let outcome = clientserver::run(user.name, &fixed, &mut server, material, &encoded).await?;
        server.close().await;
        let result = Outcome::ClientServer { user_storage_bytes };
        Ok(QueryResult::new(decoded(&fixed, &outcome.logits), outcome.reports, connect, result))
    }
}
