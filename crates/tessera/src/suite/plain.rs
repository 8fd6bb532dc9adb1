//! Suite `plain`: one server runs the `f32` engine on the user's images in the clear.

use tessera_net::{Recorder, SessionId, StageKind};
use tessera_suites::plain::{self, PlainServer};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty};
use crate::error::Result;
use crate::query::QueryResult;

/// Suite `plain`.
pub(crate) struct Plain;

impl Deployment for Plain {
    const ROLES: &'static [RoleCount] = &[RoleCount::USERS, RoleCount::exactly(Role::Server, 1)];
    const EXACT: bool = false;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        vec![("server".into(), Role::Server)]
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        if party.role != Role::Server {
            return Err(party.not_served(Suite::Plain, party.role));
        }
        let frames = plain::frame_limits(&party.model()?.merged, party.limits.max_frame);
        let server = PlainServer::new(std::sync::Arc::new(party.model()?.merged.clone()));
        Ok(Served::new(server, party, &[Role::User]).with_frames(frames))
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let mut rec = Recorder::new(user.name);
        let (mut channels, connect) = user.connect(Role::Server).await?;
        let mut server = channels.remove(0);
        rec.stage(0, "connect", StageKind::Connect, &[&server]);
        let classes = user.model()?.merged.output_len();
        let logits = plain::user(&mut server, SessionId::random(), input, batch, classes).await?;
        rec.stage(0, "query", StageKind::Query, &[&server]);
        server.close().await;
        Ok(QueryResult::new(logits, vec![rec.finish()], connect, Outcome::Plain))
    }
}
