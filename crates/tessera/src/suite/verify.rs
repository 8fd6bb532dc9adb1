//! Suite `verify`: the client offloads its convolutions to an untrusted cloud under a one-time
//! pad and checks every product.

use tessera_net::SessionId;
use tessera_suites::verify::{self, Cloud, CloudService};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty};
use crate::error::Result;
use crate::query::{QueryResult, decoded};

/// Suite `verify`.
pub(crate) struct Verify;

impl Deployment for Verify {
    const ROLES: &'static [RoleCount] = &[RoleCount::USERS, RoleCount::exactly(Role::Cloud, 1)];
    const EXACT: bool = true;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        vec![("cloud".into(), Role::Cloud)]
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        if party.role != Role::Cloud {
            return Err(party.not_served(Suite::Verify, party.role));
        }
        let model = party.model()?.fixed()?;
        let frames = verify::frame_limits(&model, party.limits.max_frame);
        let batch = verify::max_batch(&model, party.limits.max_frame);
        let cloud = Cloud::new(model, party.options.cheat).with_max_batch(batch);
        Ok(Served::new(CloudService::new(party.name, cloud.into()), party, &[Role::User]).with_frames(frames))
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let fixed = user.model()?.fixed()?;
        let encoded = fixed.encode_input(input, batch as usize)?;
        let settings = user.options.verify;
        // The pads do not depend on the input: a deployment prepares them ahead of time.
        let pre = verify::preprocess(&fixed, batch as usize, settings);
        let (mut channels, connect) = user.connect(Role::Cloud).await?;
        let mut cloud = channels.remove(0);
        let outcome =
            verify::client(user.name, fixed.clone(), &mut cloud, SessionId::random(), encoded, pre, settings).await?;
        cloud.close().await;
        let result = Outcome::Verify { recomputed: outcome.recomputed, client: outcome.cost.into() };
        Ok(QueryResult::new(decoded(&fixed, &outcome.logits), outcome.reports, connect, result))
    }
}
