//! The central server `S0`: sees only masked, permuted values; decides signs and window maxima,
//! truncates, and re-shares the result ([`super::nonlinear`]), with the channels.

use futures::future::try_join_all;
use tessera_field::FixedPointParams;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, FrameHeader, Recorder};
use tracing::Instrument;

use super::msgs::Join;
use super::nonlinear::{MaskedSum, decide};
use super::{MASKED, REPORT, RESHARE};
use crate::error::{Result, SuiteError, Violation};
use crate::parties::stage_kind;
use crate::wire::{parse_wiped, send_reports, send_wiped};

/// Reads a holder's `JOIN` frame (the first frame on a new connection to `S0`); the payload,
/// which carries the holder's re-sharing seed, is wiped once read.
pub async fn read_join(holder: &mut Channel, max_batch: usize) -> Result<Join> {
    let (header, payload) = holder.recv_any().await?;
    parse_wiped(payload, |p| join_from_frame(holder.peer(), header, p, max_batch))
}

/// Reads a `JOIN` from a received frame (`peer` sent it).
pub fn join_from_frame(peer: &str, header: FrameHeader, payload: &[u8], max_batch: usize) -> Result<Join> {
    Join::parse(peer, header, payload, max_batch)
}

/// Runs `S0`'s side of one query over `layers`, with the holders that joined it (channel and
/// `JOIN` each, in any order), and sends its cost report to holder 1. Gives the channels back
/// in holder order, for the holders' next queries.
pub async fn central(
    name: &str,
    params: FixedPointParams,
    layers: &[NonlinearLayer],
    mut joined: Vec<(Channel, Join)>,
) -> Result<Vec<Channel>> {
    let mut rec = Recorder::new(name);
    // The holders keep their connections from query to query: count this query's traffic only
    // (each holder's JOIN came before; the holders count it).
    for (c, _) in &mut joined {
        c.reset_meter();
    }
    joined.sort_by_key(|(_, j)| j.index);
    let m = joined.len();
    let (session, batch) = (joined[0].1.session, joined[0].1.batch);
    let consistent = joined
        .iter()
        .enumerate()
        .all(|(i, (_, j))| j.index == i + 1 && j.holders == m && j.batch == batch && j.session == session);
    if !consistent {
        return Err(SuiteError::Protocol {
            peer: joined[0].0.peer().into(),
            message: "join",
            violation: Violation::Disagreement { on: "indices, count, batch or session" },
        });
    }
    let (mut channels, joins): (Vec<Channel>, Vec<Join>) = joined.into_iter().unzip();
    let rounds = layers_steps(&params, layers, &mut channels, &joins, &mut rec).await;
    if let Err(e) = rounds {
        // Every holder learns why at once; holder 1 passes it on to the user.
        for c in &mut channels {
            c.abort(session, &e.to_string()).await;
        }
        return Err(e);
    }
    let report = vec![rec.finish()];
    send_reports(&mut channels[0], REPORT, session, &report).await?;
    Ok(channels)
}

/// One round per nonlinear layer: receive the masked values, decide, re-share.
async fn layers_steps(
    params: &FixedPointParams,
    layers: &[NonlinearLayer],
    channels: &mut [Channel],
    joins: &[Join],
    rec: &mut Recorder,
) -> Result<()> {
    for layer in layers {
        let span = tracing::debug_span!("layer", node = layer.node, kind = ?layer.kind);
        nonlinear_layer(params, layer, channels, joins).instrument(span).await?;
        let links: Vec<&Channel> = channels.iter().collect();
        rec.stage(layer.node, &format!("node {}", layer.node), stage_kind(layer), &links);
    }
    Ok(())
}

/// One layer's round: every holder's `MASKED`, summed; the decision; holder 1's `RESHARE`.
async fn nonlinear_layer(
    params: &FixedPointParams,
    layer: &NonlinearLayer,
    channels: &mut [Channel],
    joins: &[Join],
) -> Result<()> {
    let (session, batch) = (joins[0].session, joins[0].batch);
    let payloads = try_join_all(channels.iter_mut().map(|c| c.recv(MASKED, session, layer.node))).await?;
    let mut sum = MaskedSum::new(layer, batch);
    let mut added = Ok(());
    for (c, p) in channels.iter().zip(payloads) {
        // Every payload is read (and wiped), even after a bad one.
        added = added.and(sum.add(c.peer(), p));
    }
    added?;
    let reshare = decide(layer, params, sum, joins[1..].iter().map(|j| &j.pair_seed))?;
    send_wiped(&mut channels[0], RESHARE, session, layer.node, reshare.to_bytes()).await
}
