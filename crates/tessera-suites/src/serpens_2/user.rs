//! The user: splits the encoded images in two, collects the logit shares and both reports.

use tessera_field::seed::os_rng;
use tessera_field::share::share;
use tessera_net::{Channel, PartyReport, Recorder, SessionId};

use super::server::ServerInput;
use super::{INPUT, OUTPUT, REPORT};
use crate::error::{Result, SuiteError};
use crate::parties::{Outcome, collect_outputs};

/// Runs one query as the user: `input` holds `batch` images encoded at activation scale;
/// `servers` are the channels to `S1` and `S2`, in that order.
pub async fn user(
    name: &str,
    servers: &mut [Channel],
    session: SessionId,
    input: &[u64],
    batch: usize,
    classes: usize,
) -> Result<Outcome> {
    if servers.len() != 2 {
        return Err(SuiteError::Local(format!("serpens-2 runs with 2 servers, not {}", servers.len())));
    }
    let mut rec = Recorder::new(name);
    let shares = share(input, 2, &mut os_rng()).map_err(|e| SuiteError::Local(e.to_string()))?;
    for (i, (channel, share)) in servers.iter_mut().zip(shares).enumerate() {
        let msg = ServerInput { index: i + 1, batch, share };
        channel.send(INPUT, session, 0, &msg.to_bytes()).await?;
    }
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "input", "input", &links);
    let (logits, per_server) = collect_outputs(servers, session, batch * classes, OUTPUT, REPORT).await?;
    let mut reports: Vec<PartyReport> = per_server.into_iter().flatten().collect();
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "output", "output", &links);
    reports.insert(0, rec.finish());
    Ok(Outcome { logits, reports })
}
