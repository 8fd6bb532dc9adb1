//! The user: splits the encoded images, collects the logit shares and every party's report.

use tessera_field::share::share;
use tessera_field::{Seed, seed::os_rng};
use tessera_net::{Channel, Recorder, SessionId, StageKind};

use super::msgs::HolderInput;
use super::{HOLDERS, INPUT, OUTPUT, REPORT};
use crate::error::{Result, SuiteError};
use crate::parties::{Outcome, collect_outputs};
use crate::wire::send_wiped;

/// Runs one query as the user: `input` holds `batch` images encoded at activation scale; each
/// holder gets its share and the fresh query seed.
pub async fn user(
    name: &str,
    holders: &mut [Channel],
    session: SessionId,
    input: &[u64],
    batch: usize,
    classes: usize,
) -> Result<Outcome> {
    let m = holders.len();
    if !HOLDERS.contains(&m) {
        return Err(SuiteError::HolderCount { suite: "serpens-n", holders: m, allowed: HOLDERS });
    }
    let mut rec = Recorder::new(name);
    let mut rng = os_rng();
    let seed = Seed::random(&mut rng);
    let shares = share(input, m, &mut rng)?;
    for (i, (channel, share)) in holders.iter_mut().zip(shares).enumerate() {
        let msg = HolderInput { index: i + 1, holders: m, batch, seed: seed.clone(), share };
        send_wiped(channel, INPUT, session, 0, msg.to_bytes()).await?;
    }
    let links: Vec<&Channel> = holders.iter().collect();
    rec.stage(0, "input", StageKind::Input, &links);
    let (logits, per_holder) = collect_outputs(holders, session, batch * classes, OUTPUT, REPORT).await?;
    // Each holder's report, then S0's (forwarded by holder 1).
    let mut reports = Vec::new();
    let mut central = Vec::new();
    for mut r in per_holder {
        reports.push(r.remove(0));
        central.extend(r);
    }
    let links: Vec<&Channel> = holders.iter().collect();
    rec.stage(0, "output", StageKind::Output, &links);
    reports.insert(0, rec.finish());
    reports.extend(central);
    Ok(Outcome { logits, reports })
}
