//! The central server's best attacks on what it receives, shipped so that tests (and anyone
//! auditing a deployment) can run them on a recorded view. Each returns the values it claims to
//! have recovered; the tests compare them with the truth.
//!
//! * [`ratio`]: one holder's two messages `a = k·v_j`, `b = x_j` give `k = a / b` and then every
//!   `x = z / k`. Defeated by the holders' independent re-randomizers (each message is uniform).
//! * [`window_gcd`]: `gcd(z_1, …, z_s) = k · gcd(x)` over a max-pool window gives `k` and the
//!   window's values when `z = k·x` exactly. Defeated by the offsets `e ∈ [0, k)`.
//! * [`known_value`]: where a window holds a value the attacker knows (the first layer's
//!   response to a blank background, computed from the model), `⌊z_a / k⌋ = c` pins the window's
//!   `k` if its elements share one, and then every element. Defeated by giving every comparison
//!   of a window its own `k`.
//! * [`inside_mask_range`]: how many single-message values look like masked activations rather
//!   than uniform field elements.

use tessera_field::zt;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::TappedFrame;

use super::MASKED;
pub use crate::masks::Comparison;

/// What `S0` received for one nonlinear layer: every holder's message, in the order received.
#[derive(Clone)]
pub struct LayerView {
    /// The layer's node.
    pub node: u32,
    /// Elements per item.
    pub arity: usize,
    /// What each of an item's masked values compares.
    pub comparisons: Vec<Comparison>,
    /// Per holder message: every item's comparisons `z_j`, then every element's `w_j`.
    pub messages: Vec<Vec<u64>>,
}

impl std::fmt::Debug for LayerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerView").field("node", &self.node).field("messages", &self.messages.len()).finish()
    }
}

impl LayerView {
    /// Groups recorded frames by layer: every `MASKED` frame of the nonlinear `layers`.
    pub fn from_frames(frames: &[TappedFrame], layers: &[NonlinearLayer]) -> Vec<LayerView> {
        layers
            .iter()
            .map(|l| LayerView {
                node: l.node,
                arity: l.arity(),
                comparisons: Comparison::of_item(l.arity(), l.compares_with_zero()),
                messages: frames
                    .iter()
                    .filter(|f| f.header.kind == MASKED && f.header.layer == l.node)
                    .map(|f| f.payload.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8"))).collect())
                    .collect(),
            })
            .filter(|v| !v.messages.is_empty())
            .collect()
    }

    /// Items in the layer.
    pub fn items(&self) -> usize {
        self.messages.first().map_or(0, |m| m.len() / (self.comparisons.len() + self.arity))
    }

    /// Message `j`'s comparisons.
    pub fn z_of(&self, j: usize) -> Vec<u64> {
        self.messages[j][..self.items() * self.comparisons.len()].to_vec()
    }

    /// Message `j`'s elements.
    pub fn w_of(&self, j: usize) -> Vec<u64> {
        self.messages[j][self.items() * self.comparisons.len()..].to_vec()
    }

    /// The sums over the holders: `z = k·v + e` per comparison and `w = x + R` per element.
    pub fn sums(&self) -> (Vec<u64>, Vec<u64>) {
        let (mut z, mut w) = (self.z_of(0), self.w_of(0));
        for j in 1..self.messages.len() {
            zt::add_assign(&mut z, &self.z_of(j));
            zt::add_assign(&mut w, &self.w_of(j));
        }
        (z, w)
    }

    /// The summed `z` of every item's sign comparisons (`k·(2x + 1) + e` per element), item by
    /// item.
    pub fn sign_sums(&self) -> Vec<u64> {
        self.sign_windows().into_iter().flatten().map(zt::from_i64).collect()
    }

    /// Per item, the summed `z` of its sign comparisons, signed.
    fn sign_windows(&self) -> Vec<Vec<i64>> {
        let (z, _) = self.sums();
        let signs: Vec<usize> = self.signs().into_iter().flatten().collect();
        let c = self.comparisons.len();
        (0..self.items()).map(|p| signs.iter().map(|&i| zt::to_i64(z[p * c + i])).collect()).collect()
    }

    /// Per element, the position of its sign comparison among an item's (`None` where it has
    /// none).
    fn signs(&self) -> Vec<Option<usize>> {
        (0..self.arity).map(|a| self.comparisons.iter().position(|&c| c == Comparison::Sign(a as u8))).collect()
    }
}

/// The ratio attack on holder `j`'s message: per comparison, `k = z_j / v_j` with `v_j` the
/// linear part of the holder's compared value taken from its `w_j`; where that is a possible
/// mask (`1 ≤ k ≤ 2^κ`), the claimed value (decoded from `⌊z / k⌋`) of the summed `z`.
pub fn ratio(view: &LayerView, j: usize, kappa: u32) -> Vec<Option<i64>> {
    let (z, _) = view.sums();
    let (a, b) = (view.z_of(j), view.w_of(j));
    let (s, c) = (view.arity, view.comparisons.len());
    let compared: Vec<u64> = (0..view.items())
        .flat_map(|p| view.comparisons.iter().map(move |cmp| (p, *cmp)))
        .map(|(p, cmp)| cmp.linear(|e| b[p * s + e]))
        .map(|v| if v == 0 { 1 } else { v })
        .collect();
    let inverses = zt::inv_all(&compared).expect("nonzero");
    debug_assert_eq!(inverses.len(), view.items() * c);
    let kinds = (0..view.items()).flat_map(|_| view.comparisons.iter().copied());
    a.iter()
        .zip(&inverses)
        .zip(&z)
        .zip(kinds)
        .map(|(((&a, &inv), &z), cmp)| {
            let k = zt::mul(a, inv);
            (1..=1u64 << kappa).contains(&k).then(|| decode(cmp, zt::to_i64(z).div_euclid(k as i64)))
        })
        .collect()
}

/// The gcd attack on every window's sign comparisons: where `g = gcd(z_1, …, z_s)` is a
/// possible mask (`2 ≤ g ≤ 2^κ`), the claimed window decoded from `z / g`.
pub fn window_gcd(view: &LayerView, kappa: u32) -> Vec<Option<Vec<i64>>> {
    view.sign_windows()
        .into_iter()
        .map(|values| {
            let g = values.iter().fold(0u64, |g, &v| gcd(g, v.unsigned_abs()));
            (values.len() > 1 && (2..=1u64 << kappa).contains(&g))
                .then(|| values.iter().map(|&v| decode(Comparison::Sign(0), v / g as i64)).collect())
        })
        .collect()
}

/// The known-value attack on every window's sign comparisons (which compare `2x + 1`): if two
/// elements are consistent with known values `c, c'` under one `k` (`⌊z_a / k⌋ = 2c + 1` and
/// `⌊z_b / k⌋ = 2c' + 1` for a common `k ≤ 2^κ`), the claimed window `(⌊z / k⌋ − 1) / 2` for the
/// smallest such `k`.
pub fn known_value(view: &LayerView, known: &[i64], kappa: u32) -> Vec<Option<Vec<i64>>> {
    view.sign_windows()
        .into_iter()
        .map(|values| {
            let intervals: Vec<Vec<(i64, i64)>> =
                values.iter().map(|&v| known.iter().filter_map(|&c| k_interval(v, 2 * c + 1)).collect()).collect();
            let mut best: Option<i64> = None;
            for a in 0..values.len() {
                for b in a + 1..values.len() {
                    for &(lo, hi) in &intervals[a] {
                        for &(lo2, hi2) in &intervals[b] {
                            let (l, h) = (lo.max(lo2), hi.min(hi2).min(1 << kappa));
                            if l <= h && best.is_none_or(|k| l < k) {
                                best = Some(l);
                            }
                        }
                    }
                }
            }
            best.map(|k| values.iter().map(|&v| decode(Comparison::Sign(0), v.div_euclid(k))).collect())
        })
        .collect()
}

/// The element a sign comparison's value `2x + 1` stands for; a pair's value as it is.
fn decode(cmp: Comparison, v: i64) -> i64 {
    match cmp {
        Comparison::Sign(_) => (v - 1).div_euclid(2),
        Comparison::Pair(..) => v,
    }
}

/// The integers `k ≥ 1` with `⌊z / k⌋ = c` (`z`, `c` nonzero, of one sign), as an interval.
fn k_interval(z: i64, c: i64) -> Option<(i64, i64)> {
    if c == 0 || z == 0 || (z > 0) != (c > 0) {
        return None;
    }
    let (lo, hi) = if c > 0 {
        // c ≤ z/k < c + 1.
        (z / (c + 1) + 1, z / c)
    } else {
        // c·k ≤ z < (c + 1)·k with z, c < 0.
        let (az, ac) = (-z, -c);
        ((az + ac - 1) / ac, if ac > 1 { (az - 1) / (ac - 1) } else { i64::MAX })
    };
    (lo.max(1) <= hi).then_some((lo.max(1), hi))
}
/// The share of `values` whose signed representative lies below `2^(log2 t − 1)` in magnitude,
/// where every masked activation `k·x + e` or `x + R` lies: about one half for uniform field
/// elements, one for a message that is not re-randomized.
pub fn inside_mask_range(values: &[u64]) -> f64 {
    let limit = 1i64 << (zt::LOG2_T - 1);
    values.iter().filter(|&&v| zt::to_i64(v).abs() < limit).count() as f64 / values.len().max(1) as f64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
