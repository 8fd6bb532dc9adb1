//! The user: splits the encoded images in two, collects the logit shares and both reports.

use futures::future::try_join_all;
use tessera_field::share::share;
use tessera_field::{seed::os_rng, zt};
use tessera_net::{Channel, PartyReport, Recorder, SessionId};

use super::server::ServerInput;
use super::{INPUT, OUTPUT, REPORT};
use crate::error::{Result, SuiteError};
use crate::wire::{Reader, recv_reports};

/// What a query returns.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `batch × classes` logits in `Z_t`, at the model's output scale.
    pub logits: Vec<u64>,
    /// Every party's cost report: the user's, then `S1`'s and `S2`'s.
    pub reports: Vec<PartyReport>,
}

/// Runs one query as the user: `input` holds `batch` images encoded at activation scale;
/// `servers` are the channels to `S1` and `S2`, in that order.
pub async fn user(
    name: &str,
    servers: &mut [Channel; 2],
    session: SessionId,
    input: &[u64],
    batch: usize,
    classes: usize,
) -> Result<Outcome> {
    let mut rec = Recorder::new(name);
    let shares = share(input, 2, &mut os_rng()).map_err(|e| SuiteError::Local(e.to_string()))?;
    for (i, (channel, share)) in servers.iter_mut().zip(shares).enumerate() {
        let msg = ServerInput { index: i + 1, batch, share };
        channel.send(INPUT, session, 0, &msg.to_bytes()).await?;
    }
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "input", "input", &links);
    let n = batch * classes;
    let outputs = try_join_all(servers.iter_mut().map(|c| async move {
        let bytes = c.recv(OUTPUT, session, 0).await?;
        let mut r = Reader::new(&bytes, c.peer(), "output");
        let share = r.elements(n)?;
        r.end()?;
        let reports = recv_reports(c, REPORT, session).await?;
        Ok::<_, SuiteError>((share, reports))
    }))
    .await?;
    let mut logits = vec![0u64; n];
    let mut reports = Vec::new();
    for (share, r) in outputs {
        zt::add_assign(&mut logits, &share);
        reports.extend(r);
    }
    let links: Vec<&Channel> = servers.iter().collect();
    rec.stage(0, "output", "output", &links);
    reports.insert(0, rec.finish());
    Ok(Outcome { logits, reports })
}
