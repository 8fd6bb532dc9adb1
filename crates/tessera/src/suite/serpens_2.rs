//! Suite `serpens-2`: two servers hold the shares and evaluate every ReLU and max pool between
//! themselves with BFV and random masks.

use tessera_net::SessionId;
use tessera_suites::serpens_2::{self, Deal, SERVERS, ShareServerService, ShareServerSetup};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty, he_params};
use crate::error::Result;
use crate::query::{QueryResult, decoded};

/// Suite `serpens-2`.
pub(crate) struct Serpens2;

impl Deployment for Serpens2 {
    // S1 and S2 hold the shares: the first share server in the configuration is S1.
    const ROLES: &'static [RoleCount] = &[RoleCount::USERS, RoleCount::exactly(Role::ShareServer, 2)];
    const EXACT: bool = true;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        SERVERS.iter().map(|name| (name.to_string(), Role::ShareServer)).collect()
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        if party.role != Role::ShareServer {
            return Err(party.not_served(Suite::Serpens2, party.role));
        }
        let servers = party.roster.names(Role::ShareServer);
        let index = if servers[0] == party.name { 1 } else { 2 };
        let setup = ShareServerSetup {
            name: party.name.to_string(),
            index,
            other: servers[2 - index].to_string(),
            net: party.net.clone(),
            limits: party.limits,
        };
        let (model, he) = (party.model()?.fixed()?, he_params()?);
        let frames = serpens_2::frame_limits(&model, &he, party.limits.max_frame);
        let service = ShareServerService::new(setup, model, he);
        // S1 dials S2 for every query: S2 accepts it besides the users, under limits of its own.
        if index == 2 {
            let limits = frames.user.with_peer(servers[0], frames.peer);
            return Ok(Served::new(service, party, &[Role::User, Role::ShareServer]).with_frames(limits));
        }
        Ok(Served::new(service, party, &[Role::User]).with_frames(frames.user))
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let (mut servers, connect) = user.connect(Role::ShareServer).await?;
        let fixed = user.model()?.fixed()?;
        let encoded = fixed.encode_input(input, batch as usize)?;
        let deal = Deal { slots: he_params()?.degree(), layout: user.options.layout };
        let outcome =
            serpens_2::user(user.name, &mut servers, SessionId::random(), &fixed, &encoded, batch as usize, deal)
                .await?;
        for c in servers {
            c.close().await;
        }
        Ok(QueryResult::new(decoded(&fixed, &outcome.logits), outcome.reports, connect, Outcome::Serpens2))
    }
}
