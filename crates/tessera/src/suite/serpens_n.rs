//! Suite `serpens-n`: share-holders run the linear layers on shares; a central server evaluates
//! every ReLU and max pool on masked, permuted values.

use tessera_net::SessionId;
use tessera_suites::serpens_n::{self, CENTRAL, CentralService, HOLDERS, HolderService, holder_name};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty};
use crate::error::Result;
use crate::query::{QueryResult, decoded};

/// Suite `serpens-n`.
pub(crate) struct SerpensN;

impl Deployment for SerpensN {
    const ROLES: &'static [RoleCount] = &[
        RoleCount::USERS,
        RoleCount { role: Role::Holder, fewest: *HOLDERS.start(), most: *HOLDERS.end() },
        RoleCount::exactly(Role::Central, 1),
    ];
    const EXACT: bool = true;

    fn dev_servers(holders: usize) -> Vec<(String, Role)> {
        let holders = (1..=holders).map(|j| (holder_name(j), Role::Holder));
        std::iter::once((CENTRAL.to_string(), Role::Central)).chain(holders).collect()
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        let model = party.model()?.fixed()?;
        let holders = party.roster.names(Role::Holder);
        match party.role {
            Role::Central => {
                let names = holders.iter().map(|n| n.to_string()).collect();
                let frames = serpens_n::frame_limits(&model, party.limits.max_frame);
                let central = CentralService::new(party.name, names, model, party.limits);
                Ok(Served::new(central, party, &[Role::Holder]).with_frames(frames.central))
            }
            Role::Holder => {
                // The holder's place is its position among the configured holders.
                let index = 1 + holders.iter().position(|&n| n == party.name).unwrap_or_default();
                let central = party.roster.first(Role::Central);
                let frames = serpens_n::frame_limits(&model, party.limits.max_frame);
                let holder = HolderService::new(
                    party.name,
                    (index, holders.len()),
                    model,
                    central,
                    party.net.clone(),
                    party.limits,
                );
                Ok(Served::new(holder, party, &[Role::User]).with_frames(frames.holder))
            }
            role => Err(party.not_served(Suite::SerpensN, role)),
        }
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let (mut holders, connect) = user.connect(Role::Holder).await?;
        let fixed = user.model()?.fixed()?;
        let encoded = fixed.encode_input(input, batch as usize)?;
        let classes = user.model()?.merged.output_len();
        let outcome =
            serpens_n::user(user.name, &mut holders, SessionId::random(), &encoded, batch as usize, classes).await?;
        for c in holders {
            c.close().await;
        }
        Ok(QueryResult::new(decoded(&fixed, &outcome.logits), outcome.reports, connect, Outcome::SerpensN))
    }
}
