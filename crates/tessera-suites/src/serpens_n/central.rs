//! The central server `S0`: sees only masked, permuted values; decides signs and window maxima,
//! truncates, and re-shares the result.

use futures::future::try_join_all;
use tessera_field::seed::MaskStream;
use tessera_field::{FixedPointParams, Purpose, Seed, fixed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, FrameHeader, Recorder, SessionId};
use zeroize::Zeroize;

use super::{HOLDERS, JOIN, MASKED, REPORT, RESHARE};
use crate::error::{Result, SuiteError, Violation};
use crate::masks::{self, Comparison};
use crate::parties::stage_kind;
use crate::wire::{Reader, send_reports, send_wiped};

/// A holder's `JOIN` message.
#[derive(Debug)]
pub struct Join {
    /// The query.
    pub session: SessionId,
    /// The holder's index, 1-based.
    pub index: usize,
    /// Number of holders.
    pub holders: usize,
    /// Images in the batch.
    pub batch: usize,
    /// Seed of this holder's re-shares (unused for holder 1).
    pair_seed: Seed,
}

/// Reads a holder's `JOIN` frame (the first frame on a new connection to `S0`).
pub async fn read_join(holder: &mut Channel, max_batch: usize) -> Result<Join> {
    let (header, payload) = holder.recv_any().await?;
    join_from_frame(holder.peer(), header, &payload, max_batch)
}

/// Reads a `JOIN` from a received frame (`peer` sent it).
pub fn join_from_frame(peer: &str, header: FrameHeader, payload: &[u8], max_batch: usize) -> Result<Join> {
    if header.kind != JOIN {
        return Err(
            tessera_net::NetError::UnexpectedKind { peer: peer.into(), expected: JOIN, got: header.kind }.into()
        );
    }
    let mut r = Reader::new(payload, peer, "join");
    let (index, holders, batch) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
    r.check_range("holders", holders, HOLDERS)?;
    r.check_range("holder index", index, 1..=holders)?;
    r.check_range("batch", batch, 1..=max_batch)?;
    let pair_seed = r.seed()?;
    r.end()?;
    Ok(Join { session: header.session, index, holders, batch, pair_seed })
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
    let rounds = layers_steps(&params, layers, &mut channels, &joins, session, batch, &mut rec).await;
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
    session: SessionId,
    batch: usize,
    rec: &mut Recorder,
) -> Result<()> {
    for layer in layers {
        let n = message_len(layer, batch);
        let mut payloads = try_join_all(channels.iter_mut().map(|c| c.recv(MASKED, session, layer.node))).await?;
        let mut zw = vec![0u64; n];
        let summed = sum_messages(channels, &payloads, &mut zw);
        payloads.iter_mut().for_each(|p| p.zeroize());
        if let Err(e) = summed {
            zw.zeroize();
            return Err(e);
        }
        let mut streams: Vec<_> = joins[1..].iter().map(|j| j.pair_seed.derive(Purpose::Reshare, layer.node)).collect();
        let reply = decide(layer, params, &zw, &mut streams);
        zw.zeroize();
        let reply = reply.ok_or(SuiteError::ActivationOverflow { layer: layer.node })?;
        send_wiped(&mut channels[0], RESHARE, session, layer.node, reply).await?;
        let links: Vec<&Channel> = channels.iter().collect();
        rec.stage(layer.node, &format!("node {}", layer.node), stage_kind(layer), &links);
    }
    Ok(())
}

/// Values in one holder's message for `layer`: every item's comparisons, then every element.
pub(crate) fn message_len(layer: &NonlinearLayer, batch: usize) -> usize {
    let (s, clamps) = (layer.arity(), layer.clamps_at_zero());
    batch * layer.items() * (Comparison::of_item(s, clamps).len() + s)
}

/// Adds the holders' messages into `zw`: each is uniform alone, the sum is every comparison's
/// `z`, then every element's `w`.
fn sum_messages(channels: &[Channel], payloads: &[Vec<u8>], zw: &mut [u64]) -> Result<()> {
    for (c, p) in channels.iter().zip(payloads) {
        let mut r = Reader::new(p, c.peer(), "masked");
        r.add_elements_into(zw)?;
        r.end()?;
    }
    Ok(())
}

/// Decides every item from the summed comparisons `z` and elements `w` and returns holder 1's
/// re-shares, per item the selected truncated value `T` and the one-hot selection
/// (`v, b_0, …, b_(s−1)`), each minus the values the other holders draw from `streams`. `None`
/// when a `w = x + R` or a `z = k·v + e` lies outside the range the calibrated bound allows.
fn decide(
    layer: &NonlinearLayer,
    params: &FixedPointParams,
    zw: &[u64],
    streams: &mut [MaskStream],
) -> Option<Vec<u8>> {
    let (s, clamps) = (layer.arity(), layer.clamps_at_zero());
    let c = Comparison::of_item(s, clamps).len();
    let items = zw.len() / (c + s);
    let (z_all, w_all) = zw.split_at(items * c);
    let bound = 1i64 << params.bound_bits();
    let range = -bound..(1i64 << (zt::LOG2_T - 1)) + bound;
    let z_limit = 1i64 << (params.bound_bits() + params.mask_bits());
    let mut out = Vec::with_capacity(8 * items * (s + 1));
    let mut row = vec![0u64; s + 1];
    let mut z = vec![0i64; c];
    for (p, ws) in w_all.chunks_exact(s).enumerate() {
        let zs = &z_all[p * c..(p + 1) * c];
        for (a, &v) in z.iter_mut().zip(zs) {
            *a = zt::to_i64(v);
        }
        if z.iter().any(|v| v.abs() >= z_limit) || ws.iter().any(|&w| !range.contains(&zt::to_i64(w))) {
            z.zeroize();
            return None;
        }
        row.fill(0);
        if let Some(best) = masks::decide(&z, s, clamps) {
            row[0] = fixed::truncate(ws[best], layer.shift);
            row[1 + best] = 1;
        }
        for v in &mut row {
            for rng in streams.iter_mut() {
                *v = zt::sub(*v, zt::random(rng));
            }
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    row.zeroize();
    z.zeroize();
    Some(out)
}
