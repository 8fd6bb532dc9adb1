//! The serpens-n ReLU and max pool: one round per nonlinear layer, as state machines without
//! I/O. A holder [`HolderRound::start`]s with its share of the layer's input and gets its
//! [`Masked`] message; `S0` adds every holder's into a [`MaskedSum`] and [`decide`]s the
//! [`Reshare`]s; each holder [`HolderRound::finish`]es with its re-shares (holder 1's from `S0`,
//! the others' [`derived_reshare`] from the seed they agreed with `S0`) and gets its share of
//! the layer's output.

use tessera_field::seed::MaskStream;
use tessera_field::{FixedPointParams, Purpose, Seed, fixed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use zeroize::Zeroizing;

use super::masks::HolderSecrets;
use super::msgs::{Masked, Reshare};
use crate::error::{Result, SuiteError};
use crate::masks::{self, Comparison, ComparisonMasks};

/// A holder between its `MASKED` message and its re-shares for one layer. Its secrets are wiped
/// on drop.
pub(crate) struct HolderRound {
    layer: NonlinearLayer,
    secrets: HolderSecrets,
    first: bool,
}

impl HolderRound {
    /// Starts the layer with the holder's `secrets` for it and its share `x` of the layer's
    /// input (`first`: this is holder 1, which adds the offsets and truncation masks).
    pub fn start(layer: &NonlinearLayer, secrets: HolderSecrets, x: &[u64], first: bool) -> (Self, Masked) {
        let masked = mask(x, layer, &secrets, first);
        (Self { layer: *layer, secrets, first }, masked)
    }

    /// The holder's share of the layer's output from its re-shares.
    pub fn finish(self, reshare: Reshare) -> Vec<u64> {
        unmask(&self.layer, &self.secrets.masks, &reshare, self.first)
    }
}

/// The stream of holder `j ≥ 2`'s re-shares of layer `node`, from the seed it agreed with `S0`.
fn reshare_stream(pair_seed: &Seed, node: u32) -> MaskStream {
    pair_seed.derive(Purpose::Reshare, node)
}

/// The re-shares a holder `j ≥ 2` draws for `layer` on a batch of `batch`.
pub(crate) fn derived_reshare(pair_seed: &Seed, layer: &NonlinearLayer, batch: usize) -> Reshare {
    let values = Reshare::values(layer, batch);
    Reshare::new(Zeroizing::new(zt::random_vec(&mut reshare_stream(pair_seed, layer.node), values)))
}

/// Holder `index`'s message for one layer: per item (in the order `π`) its comparisons
/// `k·v_j + [j = 1]·(k·c + e) + ρ_j`, `v_j` the holder's share of the compared value's linear
/// part and `c` its constant ([`crate::masks::Comparison`]), then per position (element
/// `order[q]` of the gathered batch) `x_j + [j = 1]·R + ρ'_j`. Every value is uniform on its own;
/// only the sum over the holders carries `z = k·v + e` and `w = x + R`.
fn mask(x: &[u64], layer: &NonlinearLayer, secrets: &HolderSecrets, first: bool) -> Masked {
    let (m, rho, rho_w) = (&secrets.masks, &secrets.rho, &secrets.rho_w);
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
    let comparisons = (0..m.items()).flat_map(|p| {
        m.comparisons.iter().enumerate().map(move |(i, cmp)| {
            let slot = p * c + i;
            let kv = zt::mul(m.k[slot], cmp.linear(|a| at(p * s + a)));
            let z = if first { zt::add(kv, m.offset(p, i)) } else { kv };
            zt::add(z, rho[slot])
        })
    });
    let elements = m.r.iter().zip(rho_w).enumerate().map(|(q, (&r, &rho_w))| {
        let w = if first { zt::add(at(q), r) } else { at(q) };
        zt::add(w, rho_w)
    });
    Masked::from_values(m.k.len() + m.order.len(), comparisons.chain(elements))
}

/// The holder's output share: per item `v − Σ_e b_e · (⌊R_e / 2^shift⌋ − N(R_e)) − [j = 1] · N(R_0)`,
/// from its re-shares laid out per position as `v, b_0, …, b_(s−1)`, put back at the item's
/// place; `N` is the layer's [`NonlinearLayer::truncate_below_zero`] (0 but for a leaky ReLU,
/// whose items are single elements), so an item below zero (every `b` zero) gets `−N(R_0)`.
fn unmask(layer: &NonlinearLayer, m: &ComparisonMasks, reshare: &Reshare, first: bool) -> Vec<u64> {
    let s = layer.arity();
    let mut out = vec![0u64; m.items()];
    for (p, row) in reshare.as_slice().chunks_exact(s + 1).enumerate() {
        let r = &m.r[p * s..(p + 1) * s];
        let mut acc = if first { zt::sub(row[0], layer.truncate_below_zero(r[0])) } else { row[0] };
        for e in 0..s {
            acc = zt::sub(acc, zt::mul(row[1 + e], layer.selected_mask_floor(r[e])));
        }
        out[m.order[p * s] as usize / s] = acc;
    }
    out
}

/// `S0`'s sum of the holders' `MASKED` messages for one layer: every comparison's `z`, then
/// every element's `w`. Wiped on drop.
pub(crate) struct MaskedSum(Zeroizing<Vec<u64>>);

impl MaskedSum {
    /// An empty sum for `layer` on a batch of `batch`.
    pub fn new(layer: &NonlinearLayer, batch: usize) -> Self {
        MaskedSum(Zeroizing::new(vec![0u64; Masked::values(layer, batch)]))
    }

    /// Adds `peer`'s `MASKED` payload (wiped).
    pub fn add(&mut self, peer: &str, payload: Vec<u8>) -> Result<()> {
        Masked::add_into(peer, payload, &mut self.0)
    }
}

/// `S0`'s step: decides every item from the summed comparisons `z` and elements `w` and returns
/// holder 1's re-shares, per item the selected truncated value `T` (below zero: 0, or a leaky
/// ReLU's `⌊α·w⌋` rescaled) and the one-hot selection (`v, b_0, …, b_(s−1)`), each minus the values holders `2…m` draw from their `pair_seeds`.
/// Refused when a `w = x + R` or a `z = k·v + e` lies outside the range the calibrated bound
/// allows.
pub(crate) fn decide<'a>(
    layer: &NonlinearLayer,
    params: &FixedPointParams,
    sum: MaskedSum,
    pair_seeds: impl Iterator<Item = &'a Seed>,
) -> Result<Reshare> {
    let mut streams: Vec<MaskStream> = pair_seeds.map(|seed| reshare_stream(seed, layer.node)).collect();
    let (s, clamps) = (layer.arity(), layer.compares_with_zero());
    let c = Comparison::of_item(s, clamps).len();
    let items = sum.0.len() / (c + s);
    let (z_all, w_all) = sum.0.split_at(items * c);
    let bound = 1i64 << params.bound_bits();
    let range = -bound..(1i64 << (zt::LOG2_T - 1)) + bound;
    let z_limit = 1i64 << (params.bound_bits() + params.mask_bits());
    let mut out = Zeroizing::new(Vec::with_capacity(items * (s + 1)));
    let mut row = Zeroizing::new(vec![0u64; s + 1]);
    let mut z = Zeroizing::new(vec![0i64; c]);
    for (p, ws) in w_all.chunks_exact(s).enumerate() {
        let zs = &z_all[p * c..(p + 1) * c];
        for (a, &v) in z.iter_mut().zip(zs) {
            *a = zt::to_i64(v);
        }
        if z.iter().any(|v| v.abs() >= z_limit) || ws.iter().any(|&w| !range.contains(&zt::to_i64(w))) {
            return Err(SuiteError::ActivationOverflow { layer: layer.node });
        }
        row.fill(0);
        match masks::decide(&z, s, clamps) {
            Some(best) => {
                row[0] = fixed::truncate(ws[best], layer.shift);
                row[1 + best] = 1;
            }
            // Nonzero only for a leaky ReLU, whose items are single elements.
            None => row[0] = layer.truncate_below_zero(ws[0]),
        }
        for v in row.iter_mut() {
            for rng in streams.iter_mut() {
                *v = zt::sub(*v, zt::random(rng));
            }
            out.push(*v);
        }
    }
    Ok(Reshare::new(out))
}
