//! Both servers and the user in this process, over in-memory channels: what the tests and the
//! in-process benchmark run. The protocol code is the same as across processes.

use std::sync::Arc;
use std::time::Duration;

use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_net::{Channel, SessionId};

use super::server::{PeerLink, ServerInput, join_from_frame};
use super::{Outcome, SERVERS, max_batch, server, user};
use crate::error::Result;
use crate::parties::join_parties;

/// Runs one query with every party on its own task, each receive waiting at most `timeout`.
pub async fn run_in_memory(
    model: &Arc<FixedModel>,
    he: &Arc<HeParams>,
    input: &[u64],
    batch: usize,
    timeout: Duration,
) -> Result<Outcome> {
    let max = 1 << 30;
    let session = SessionId::random();
    let (to_s2, at_s2) = Channel::pair(SERVERS[0], SERVERS[1], timeout, max);
    let mut peer_channels = [Some(to_s2), Some(at_s2)];
    let mut user_links = Vec::new();
    let mut tasks = Vec::new();
    let limit = max_batch(model, he, max);
    for (i, name) in SERVERS.iter().enumerate() {
        let (u, mut h) = Channel::pair("user", name, timeout, max);
        user_links.push(u);
        let (model, he) = (model.clone(), he.clone());
        let mut c = peer_channels[i].take().expect("one link per server");
        tasks.push(tokio::spawn(async move {
            let (header, payload) = h.recv_any().await?;
            let input = ServerInput::parse("user", &payload, model.input_shape().len(), limit)?;
            let he2 = he.clone();
            let peer = async move {
                if i == 0 {
                    return Ok(PeerLink::Dialed(c));
                }
                let (header, payload) = c.recv_any().await?;
                let join = join_from_frame(&he2, SERVERS[0], header, &payload, limit)?;
                Ok(PeerLink::Accepted(c, Box::new(join)))
            };
            server(name, model, he, &mut h, header.session, input, peer).await.map(drop)
        }));
    }
    let outcome = user("user", &mut user_links, session, input, batch, model.output_len()).await;
    drop(user_links);
    join_parties(outcome, tasks).await
}
