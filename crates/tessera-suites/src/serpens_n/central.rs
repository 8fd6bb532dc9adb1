//! The central server `S0`: sees only masked, permuted values; decides signs and window maxima,
//! truncates, and re-shares the result.

use futures::future::try_join_all;
use tessera_field::{FixedPointParams, Purpose, Seed, fixed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, Recorder, SessionId};
use zeroize::Zeroize;

use super::holder::kind_name;
use super::{HOLDERS, JOIN, MASKED, REPORT, RESHARE};
use crate::error::{Result, SuiteError};
use crate::wire::{Reader, put_elements};

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
    if header.kind != JOIN {
        return Err(tessera_net::NetError::UnexpectedKind { peer: holder.peer().into(), expected: JOIN, got: header.kind }
            .into());
    }
    let mut r = Reader::new(&payload, holder.peer(), "join");
    let (index, holders, batch) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
    if !HOLDERS.contains(&holders) || !(1..=holders).contains(&index) || !(1..=max_batch).contains(&batch) {
        return Err(r.error(format!("holder {index} of {holders}, batch {batch}")));
    }
    let pair_seed = r.seed()?;
    r.end()?;
    Ok(Join { session: header.session, index, holders, batch, pair_seed })
}

/// What `S0` sees of one layer, for inspection in tests: the sums `z = π(k ⊙ x)` and
/// `w = π(x + R)`.
pub type Observer<'a> = &'a mut (dyn FnMut(&NonlinearLayer, &[u64], &[u64]) + Send);

/// Runs `S0`'s side of one query over `layers`, with the holders that joined it (channel and
/// `JOIN` each, in any order), and sends its cost report to holder 1.
pub async fn central(
    name: &str,
    params: FixedPointParams,
    layers: &[NonlinearLayer],
    mut joined: Vec<(Channel, Join)>,
    observe: Observer<'_>,
) -> Result<()> {
    let mut rec = Recorder::new(name);
    joined.sort_by_key(|(_, j)| j.index);
    let m = joined.len();
    let (session, batch) = (joined[0].1.session, joined[0].1.batch);
    let consistent = joined.iter().enumerate().all(|(i, (_, j))| {
        j.index == i + 1 && j.holders == m && j.batch == batch && j.session == session
    });
    if !consistent {
        return Err(SuiteError::Protocol {
            peer: joined[0].0.peer().into(),
            message: "join",
            reason: "the holders disagree on the query (indices, count, batch or session)".into(),
        });
    }
    let (mut channels, joins): (Vec<Channel>, Vec<Join>) = joined.into_iter().unzip();
    for layer in layers {
        let n = batch * layer.items() * layer.arity();
        let payloads = try_join_all(channels.iter_mut().map(|c| c.recv(MASKED, session, layer.node))).await?;
        let (mut z, mut w) = (vec![0u64; n], vec![0u64; n]);
        for (c, p) in channels.iter().zip(&payloads) {
            let mut r = Reader::new(p, c.peer(), "masked");
            zt::add_assign(&mut z, &r.elements(n)?);
            zt::add_assign(&mut w, &r.elements(n)?);
            r.end()?;
        }
        drop(payloads);
        observe(layer, &z, &w);
        let decided = decide(layer, &params, &z, &w);
        z.zeroize();
        w.zeroize();
        let (mut v, mut b) = decided.ok_or(SuiteError::ActivationOverflow { layer: layer.node })?;
        let (items, elements) = (v.len(), b.len());
        for j in &joins[1..] {
            let mut rng = j.pair_seed.derive(Purpose::Reshare, layer.node);
            zt::sub_assign(&mut v, &zt::random_vec(&mut rng, items));
            zt::sub_assign(&mut b, &zt::random_vec(&mut rng, elements));
        }
        let mut reply = Vec::with_capacity(8 * (v.len() + b.len()));
        put_elements(&mut reply, &v);
        put_elements(&mut reply, &b);
        v.zeroize();
        b.zeroize();
        channels[0].send(RESHARE, session, layer.node, &reply).await?;
        let links: Vec<&Channel> = channels.iter().collect();
        rec.stage(layer.node, &format!("node {}", layer.node), kind_name(layer), &links);
    }
    let report = vec![rec.finish()];
    channels[0].send(REPORT, session, 0, &serde_json::to_vec(&report).expect("reports serialize")).await?;
    for c in channels {
        c.close().await;
    }
    Ok(())
}

/// The selected truncated value `T` per item and the one-hot selection per element; `None` when
/// a value lies outside the calibrated bound (`w = x + R` out of range).
fn decide(layer: &NonlinearLayer, params: &FixedPointParams, z: &[u64], w: &[u64]) -> Option<(Vec<u64>, Vec<u64>)> {
    let s = layer.arity();
    let items = z.len() / s;
    let bound = 1i64 << params.bound_bits();
    let range = -bound..(1i64 << (zt::LOG2_T - 1)) + bound;
    if w.iter().any(|&v| !range.contains(&zt::to_i64(v))) {
        return None;
    }
    let mut v = vec![0u64; items];
    let mut b = vec![0u64; items * s];
    for p in 0..items {
        let zs = &z[p * s..(p + 1) * s];
        let (e, best) = zs.iter().enumerate().map(|(e, &x)| (e, zt::to_i64(x))).max_by_key(|&(_, x)| x).expect("arity ≥ 1");
        if layer.clamps_at_zero() && best <= 0 {
            continue;
        }
        v[p] = fixed::truncate(w[p * s + e], layer.shift);
        b[p * s + e] = 1;
    }
    Some((v, b))
}
