//! A share-holder `S_j`: the linear layers on its share, its half of every nonlinear round.

use std::future::Future;
use std::sync::Arc;

use tessera_field::share::Share;
use tessera_field::{Purpose, Seed, seed::os_rng, zt};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::Runner;
use tessera_net::{Channel, Recorder, SessionId, StageKind};
use zeroize::Zeroize;

use super::masks::HolderSecrets;
use super::{HOLDERS, JOIN, MASKED, OUTPUT, REPORT, RESHARE};
use crate::error::Result;
use crate::masks::ComparisonMasks;
use crate::parties::{advance_linear, stage_kind};
use crate::wire::{Reader, elements_to_bytes, put_elements, recv_reports, send_reports, send_wiped};

/// What the user sends a holder.
#[derive(Debug)]
pub struct HolderInput {
    /// This holder's index, 1-based.
    pub index: usize,
    /// Number of holders.
    pub holders: usize,
    /// Images in the batch.
    pub batch: usize,
    /// The query seed shared by the holders (never by `S0`).
    pub seed: Seed,
    /// This holder's share of the encoded images.
    pub share: Share,
}

impl HolderInput {
    /// The `INPUT` payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + 8 * self.share.len());
        for v in [self.index, self.holders, self.batch] {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        out.extend_from_slice(self.seed.expose_bytes());
        put_elements(&mut out, self.share.as_slice());
        out
    }

    /// Reads an `INPUT` payload from `peer` for a model whose images have `input_len` values;
    /// batches above `max_batch` are refused.
    pub fn parse(peer: &str, payload: &[u8], input_len: usize, max_batch: usize) -> Result<Self> {
        let mut r = Reader::new(payload, peer, "input");
        let (index, holders, batch) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
        r.check_range("holders", holders, HOLDERS)?;
        r.check_range("holder index", index, 1..=holders)?;
        r.check_range("batch", batch, 1..=max_batch)?;
        r.check_range("batch", batch, 1..=usize::MAX / input_len.max(1))?;
        let seed = r.seed()?;
        let len = batch * input_len;
        let share = Share::from_vec(r.elements(len)?);
        r.end()?;
        Ok(Self { index, holders, batch, seed, share })
    }
}

/// Serves one query as holder `input.index`: runs the model on its share, with `S0` reached
/// through `central` (awaited while the first layers run), and returns the logit share and cost
/// reports to `user`. Gives back the link to `S0`, which may serve the next query.
pub async fn holder(
    name: &str,
    model: Arc<FixedModel>,
    user: &mut Channel,
    session: SessionId,
    input: HolderInput,
    central: impl Future<Output = Result<Channel>>,
) -> Result<Option<Channel>> {
    // Every step of the query; a failure is told to the user at once instead of leaving it to
    // its timeout.
    let result: Result<Option<Channel>> = async {
        let mut rec = Recorder::new(name);
        rec.stage(0, "input", StageKind::Input, &[user]);
        let HolderInput { index, holders, batch, seed, share } = input;
        let params = model.params();
        let pair_seed = Seed::random(&mut os_rng());
        let mut runner = Runner::new(model.clone(), share.as_slice().to_vec(), batch, index == 1);
        drop(share);
        let mut central_link: Option<Channel> = None;
        let mut central = std::pin::pin!(central);
        let mut first = 0usize;
        loop {
            let links: Vec<&Channel> = central_link.iter().collect();
            let (back, layer) = advance_linear(runner, &model, &mut rec, &mut first, &links).await?;
            runner = back;
            let Some(layer) = layer else { break };
            let s0 = match central_link.as_mut() {
                Some(c) => c,
                None => {
                    let mut c = central.as_mut().await?;
                    let mut join = Vec::with_capacity(44);
                    for v in [index, holders, batch] {
                        join.extend_from_slice(&(v as u32).to_le_bytes());
                    }
                    join.extend_from_slice(pair_seed.expose_bytes());
                    c.send(JOIN, session, 0, &join).await?;
                    central_link.insert(c)
                }
            };
            let secrets = HolderSecrets::derive(&seed, &layer, batch, &params, index, holders);
            let masks = &secrets.masks;
            let masked = mask(runner.pending_input(), &layer, masks, &secrets.rho, &secrets.rho_w, index == 1);
            send_wiped(s0, MASKED, session, layer.node, masked).await?;
            let values = batch * layer.items() * (layer.arity() + 1);
            let shares = if index == 1 {
                let reply = s0.recv(RESHARE, session, layer.node).await?;
                let mut r = Reader::new(&reply, s0.peer(), "reshare");
                let shares = r.elements(values)?;
                r.end()?;
                shares
            } else {
                zt::random_vec(&mut pair_seed.derive(Purpose::Reshare, layer.node), values)
            };
            runner.complete(unmask(&layer, masks, shares));
            drop(secrets);
            rec.stage(layer.node, model.node_name(layer.node as usize), stage_kind(&layer), &[s0]);
        }
        user.send(OUTPUT, session, 0, &elements_to_bytes(runner.output())).await?;
        drop(runner);
        let mut reports = Vec::new();
        if let Some(mut s0) = central_link {
            if index == 1 {
                reports = recv_reports(&mut s0, REPORT, session).await?;
            }
            rec.stage(0, "output", StageKind::Output, &[user, &s0]);
            reports.insert(0, rec.finish());
            send_reports(user, REPORT, session, &reports).await?;
            return Ok(Some(s0));
        }
        rec.stage(0, "output", StageKind::Output, &[user]);
        reports.insert(0, rec.finish());
        send_reports(user, REPORT, session, &reports).await?;
        Ok(None)
    }
    .await;
    if let Err(e) = &result {
        user.abort(session, &e.to_string()).await;
    }
    result
}

/// Holder `index`'s message for one layer, written straight into the message: per item (in
/// the order `π`) its comparisons `k·v_j + [j = 1]·(k·c + e) + ρ_j`, `v_j` the holder's share
/// of the compared value's linear part and `c` its constant ([`crate::masks::Comparison`]), then per position (element `order[q]` of the gathered
/// batch) `x_j + [j = 1]·R + ρ'_j`. Every value is uniform on its own; only the sum over the
/// holders carries `z = k·v + e` and `w = x + R`.
fn mask(x: &[u64], layer: &NonlinearLayer, m: &ComparisonMasks, rho: &[u64], rho_w: &[u64], first: bool) -> Vec<u8> {
    let (s, in_len) = (layer.arity(), layer.input.len());
    let per_image = layer.items() * s;
    // Element-wise layers read their input in place; windows need the gather map.
    let gather = if s == 1 && layer.items() == in_len { Vec::new() } else { layer.gather() };
    let at = |q: usize| {
        let element = m.order[q] as usize;
        if gather.is_empty() {
            x[element]
        } else {
            x[element / per_image * in_len + gather[element % per_image] as usize]
        }
    };
    let c = m.comparisons.len();
    let mut out = Vec::with_capacity(8 * (m.k.len() + m.order.len()));
    for p in 0..m.items() {
        for (i, cmp) in m.comparisons.iter().enumerate() {
            let slot = p * c + i;
            let kv = zt::mul(m.k[slot], cmp.linear(|a| at(p * s + a)));
            let z = if first { zt::add(kv, m.offset(p, i)) } else { kv };
            out.extend_from_slice(&zt::add(z, rho[slot]).to_le_bytes());
        }
    }
    for (q, (&r, &rho_w)) in m.r.iter().zip(rho_w).enumerate() {
        let w = if first { zt::add(at(q), r) } else { at(q) };
        out.extend_from_slice(&zt::add(w, rho_w).to_le_bytes());
    }
    out
}

/// The holder's output share: per item `v − Σ_e b_e · ⌊R_e / 2^shift⌋`, from its re-shares laid
/// out per position as `v, b_0, …, b_(s−1)`, put back at the item's place.
fn unmask(layer: &NonlinearLayer, m: &ComparisonMasks, mut shares: Vec<u64>) -> Vec<u64> {
    let s = layer.arity();
    let mut out = vec![0u64; m.items()];
    for (p, row) in shares.chunks_exact(s + 1).enumerate() {
        let mut acc = row[0];
        for e in 0..s {
            acc = zt::sub(acc, zt::mul(row[1 + e], m.r[p * s + e] >> layer.shift));
        }
        out[m.order[p * s] as usize / s] = acc;
    }
    shares.zeroize();
    out
}
