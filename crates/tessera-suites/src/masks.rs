//! The masks both Serpens suites put on a nonlinear layer's inputs before the deciding party
//! sees them (PROTOCOLS.md 3.3 and 4.3, *masks*).
//!
//! A ReLU element or a max-pool window (an *item*) is decided from *comparisons*
//! ([`Comparison`]): every pair `x_a − x_b` of a window (its argmax) and, where the layer clamps
//! at zero, every element `x_a` (its sign). Each comparison gets its own multiplicative mask
//! `k ≥ 1` with `log2 k` uniform in `[0, κ]` and an offset `e` uniform in `[0, k)`; each
//! element a truncation mask `R` uniform in `[0, 2^(ℓx+σ))`; and an order permutes the items
//! and the elements inside each. The deciding party sees `z = k·v + e` per comparison and
//! `w = x + R` per element:
//!
//! * `z < 0` exactly when `v < 0` (`k·v + e ≤ −k + k − 1` for `v ≤ −1`), so signs and window
//!   maxima are decided exactly;
//! * `z` is not a multiple of `v`: every `k` in range fits every `z` (`v = ⌊z / k⌋`), so the gcd
//!   of a window or the factors of `z` say nothing about `k`;
//! * `log2 |z| ≈ log2 |v| + log2 k` is blurred by a uniform `κ`-bit term (a `k` uniform in
//!   `[1, 2^κ]` would sit within two bits of `2^κ` most of the time and hide almost nothing);
//! * no two values share a `k`: with one `k` per window, two equal elements give values that
//!   differ by `e_a − e_b`, spread over `k`, and a value the attacker knows (a blank
//!   background's response) pins `k` — either gives the window's `k` and then its elements.
//!
//! With `|x| < 2^ℓx`, `κ + ℓx + 1 ≤ ⌊log2 t⌋` and `κ − 1` bits for differences,
//! `|z| < 2^(κ+ℓx) ≤ t/2`: `z` never wraps.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_core::RngCore;
use tessera_field::zt;
use zeroize::Zeroize;

/// A multiplicative mask `k ∈ [1, 2^κ]` with `log2 k` uniform in `[0, κ]`: `k = ⌊2^u⌋` for `u`
/// uniform in `[0, κ]` at 52-bit resolution.
pub(crate) fn multiplicative<R: RngCore + ?Sized>(rng: &mut R, kappa: u32) -> u64 {
    let u = (rng.next_u64() >> 12) as f64 / (1u64 << 52) as f64 * kappa as f64;
    (u.exp2() as u64).clamp(1, 1 << kappa)
}

/// Where each stream of a [`ComparisonMasks`] comes from: holders of one seed derive the same ones
/// (serpensN); a single masker draws all from one CSPRNG (serpens2).
pub(crate) struct MaskSources<'a, R: RngCore + ?Sized> {
    /// The order of items and of elements inside items.
    pub order: &'a mut R,
    /// The multiplicative masks.
    pub k: &'a mut R,
    /// The offsets.
    pub e: &'a mut R,
    /// The truncation masks.
    pub r: &'a mut R,
}

/// What one masked value of an item carries: the comparisons a deciding party reads a ReLU or a
/// max-pool window from, each under its own multiplicative mask, so no two values of an item
/// share a `k` (with one `k` per window, two equal inputs give two values that differ by
/// `e_a − e_b`, spread over `k`: a tie would reveal the window's `k` and magnitudes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Element `a` of the item (its sign: ReLU, or a max pool fused with ReLU).
    Sign(u8),
    /// Elements `a < b`: `x_a − x_b` (which of the two is larger).
    Pair(u8, u8),
}

impl Comparison {
    /// The comparisons that decide an item of `arity` elements: every pair `a < b` (in order),
    /// then every element's sign where the layer clamps at zero.
    pub fn of_item(arity: usize, clamps: bool) -> Vec<Comparison> {
        let n = arity as u8;
        let pairs = (0..n).flat_map(|a| (a + 1..n).map(move |b| Comparison::Pair(a, b)));
        let signs = (0..n).filter(move |_| clamps).map(Comparison::Sign);
        pairs.chain(signs).collect()
    }

    /// Where `Pair(a, b)` (`a < b`) sits among an item's comparisons.
    pub fn pair_index(a: usize, b: usize, arity: usize) -> usize {
        a * (2 * arity - a - 1) / 2 + (b - a - 1)
    }

    /// Where `Sign(a)` sits among an item's comparisons.
    pub fn sign_index(a: usize, arity: usize) -> usize {
        arity * (arity - 1) / 2 + a
    }

    /// The compared value from an item's elements `x`, in `Z_t` (`x_a` or `x_a − x_b`).
    #[inline]
    pub fn value(self, x: impl Fn(usize) -> u64) -> u64 {
        match self {
            Comparison::Sign(a) => x(a as usize),
            Comparison::Pair(a, b) => zt::sub(x(a as usize), x(b as usize)),
        }
    }

    /// Bits of its multiplicative mask: `κ` for a sign, `κ − 1` for a difference (which needs
    /// one more bit of range), so `|k·v + e| < 2^(κ+ℓx)` for both.
    pub fn mask_bits(self, kappa: u32) -> u32 {
        match self {
            Comparison::Sign(_) => kappa,
            Comparison::Pair(..) => kappa - 1,
        }
    }
}

/// Decides one item from its masked comparisons `z` (signed, in [`Comparison::of_item`]'s
/// order): the element holding the maximum, or `None` where the layer clamps and that maximum
/// is not positive. Exact: `z < 0` exactly when the compared value is negative.
pub fn decide(z: &[i64], arity: usize, clamps: bool) -> Option<usize> {
    let mut best = 0;
    for b in 1..arity {
        // x_b > x_best exactly when x_best − x_b < 0.
        if z[Comparison::pair_index(best, b, arity)] < 0 {
            best = b;
        }
    }
    (!clamps || z[Comparison::sign_index(best, arity)] > 0).then_some(best)
}

/// The masks of one layer's comparisons: per item an order of its elements, and per
/// comparison its own multiplicative mask and offset; per element a truncation mask.
pub(crate) struct ComparisonMasks {
    /// Elements per item.
    pub arity: usize,
    /// The comparisons of every item, in order.
    pub comparisons: Vec<Comparison>,
    /// `order[q]`: the element (over the flattened batch, `item · arity + e`) at position `q`;
    /// comparisons of item `p` read the elements at positions `p · arity ..`.
    pub order: Vec<u32>,
    /// Multiplicative mask per comparison (`item · comparisons + c`).
    pub k: Vec<u64>,
    /// Offset per comparison, uniform in `[0, k)`.
    pub e: Vec<u64>,
    /// Truncation mask per position, uniform in `[0, 2^r_bits)`.
    pub r: Vec<u64>,
}

impl ComparisonMasks {
    /// Draws the masks of `items` items of `arity` elements (signs compared where `clamps`):
    /// `κ` bits of multiplicative mask, truncation masks below `2^r_bits`.
    pub fn draw<R: RngCore + ?Sized>(
        src: MaskSources<'_, R>,
        items: usize,
        arity: usize,
        clamps: bool,
        kappa: u32,
        r_bits: u32,
    ) -> Self {
        let order = element_order(src.order, items, arity);
        Self::with_order(order, src.k, src.e, src.r, arity, clamps, kappa, r_bits)
    }

    /// The masks of the items that `order` lists (`order.len() / arity` items of `arity`
    /// elements, in the order the deciding party receives them), each stream from its own
    /// source: for an order that the masking party does not draw itself (serpens2's
    /// permutation correlation, or the natural order of its comparison layout).
    #[allow(clippy::too_many_arguments)]
    pub fn with_order<R: RngCore + ?Sized>(
        order: Vec<u32>,
        k_src: &mut R,
        e_src: &mut R,
        r_src: &mut R,
        arity: usize,
        clamps: bool,
        kappa: u32,
        r_bits: u32,
    ) -> Self {
        let items = order.len() / arity;
        let comparisons = Comparison::of_item(arity, clamps);
        let bits: Vec<u32> = comparisons.iter().map(|c| c.mask_bits(kappa)).collect();
        let k: Vec<u64> = (0..items).flat_map(|_| bits.iter()).map(|&b| multiplicative(k_src, b)).collect();
        let e = k.iter().map(|&k| e_src.random_range(0..k)).collect();
        let r = (0..items * arity).map(|_| r_src.next_u64() >> (64 - r_bits)).collect();
        Self { arity, comparisons, order, k, e, r }
    }

    /// Items masked.
    pub fn items(&self) -> usize {
        self.order.len() / self.arity
    }
}

impl Drop for ComparisonMasks {
    fn drop(&mut self) {
        self.order.zeroize();
        self.k.zeroize();
        self.e.zeroize();
        self.r.zeroize();
    }
}

/// A uniform permutation of `items` items composed with a uniform permutation of the `arity`
/// elements inside each: `order[q]` is the element sent at position `q`.
pub(crate) fn element_order<R: RngCore + ?Sized>(rng: &mut R, items: usize, arity: usize) -> Vec<u32> {
    let mut perm: Vec<u32> = (0..items as u32).collect();
    perm.shuffle(rng);
    if arity == 1 {
        return perm;
    }
    let mut order = Vec::with_capacity(items * arity);
    let mut inside: Vec<u32> = (0..arity as u32).collect();
    for &item in &perm {
        inside.shuffle(rng);
        order.extend(inside.iter().map(|&e| item * arity as u32 + e));
    }
    perm.zeroize();
    inside.zeroize();
    order
}

/// `k·v + e` in `Z_t`: the masked value of one share (or of the sum, where `e` is added once).
#[inline]
pub(crate) fn apply(k: u64, v: u64, e: u64) -> u64 {
    zt::add(zt::mul(k, v), e)
}

#[cfg(test)]
mod tests {
    use tessera_field::seed::os_rng;

    use super::*;

    fn draw(items: usize, arity: usize, clamps: bool, kappa: u32) -> ComparisonMasks {
        let (mut a, mut b, mut c, mut d) = (os_rng(), os_rng(), os_rng(), os_rng());
        let src = MaskSources { order: &mut a, k: &mut b, e: &mut c, r: &mut d };
        ComparisonMasks::draw(src, items, arity, clamps, kappa, 59)
    }

    /// `log2 k` fills `[0, κ]` evenly: each of its eight equal bins holds about an eighth.
    #[test]
    fn log2_of_k_is_uniform() {
        let kappa = 40;
        let m = draw(80_000, 1, true, kappa);
        let mut bins = [0usize; 8];
        for &k in &m.k {
            assert!((1..=1u64 << kappa).contains(&k));
            bins[((k as f64).log2() / kappa as f64 * 8.0).min(7.0) as usize] += 1;
        }
        for b in bins {
            assert!((9_000..11_000).contains(&b), "{bins:?}");
        }
    }

    /// Offsets lie in `[0, k)` and break exact divisibility.
    #[test]
    fn offsets_break_divisibility() {
        let m = draw(5_000, 4, true, 20);
        let mut divisible = 0;
        for (&k, &e) in m.k.iter().zip(&m.e) {
            assert!(e < k);
            divisible += usize::from(k > 1 && zt::to_i64(apply(k, zt::from_i64(5), e)) % 5 == 0);
        }
        assert!(divisible < m.k.len() / 3, "{divisible} of {} divisible by 5", m.k.len());
    }

    /// Deciding from the comparisons gives the window's maximum and the fused ReLU exactly,
    /// ties and zeros included.
    #[test]
    fn comparisons_decide_every_window_exactly() {
        let mut rng = os_rng();
        for (arity, clamps) in [(1, true), (4, true), (4, false), (9, true)] {
            let mut sources = (os_rng(), os_rng(), os_rng(), os_rng());
            let src = MaskSources { order: &mut sources.0, k: &mut sources.1, e: &mut sources.2, r: &mut sources.3 };
            let m = ComparisonMasks::draw(src, 2_000, arity, clamps, 30, 59);
            let c = m.comparisons.len();
            assert_eq!(c, arity * (arity - 1) / 2 + if clamps { arity } else { 0 });
            for item in 0..m.items() {
                // Small values, with ties and zeros.
                let x: Vec<i64> = (0..arity).map(|_| (rng.next_u64() % 7) as i64 - 3).collect();
                let z: Vec<i64> = m
                    .comparisons
                    .iter()
                    .enumerate()
                    .map(|(i, cmp)| {
                        let v = cmp.value(|a| zt::from_i64(x[a]));
                        zt::to_i64(apply(m.k[item * c + i], v, m.e[item * c + i]))
                    })
                    .collect();
                let max = *x.iter().max().unwrap();
                match decide(&z, arity, clamps) {
                    Some(best) => assert!(x[best] == max && (!clamps || max > 0 || max == 0), "{x:?}"),
                    None => assert!(clamps && max <= 0, "{x:?}"),
                }
            }
        }
    }

    /// The order permutes whole items and the elements inside each.
    #[test]
    fn order_keeps_windows_together_and_covers_every_element() {
        let m = draw(1_000, 9, false, 30);
        for window in m.order.chunks(9) {
            assert!(window.iter().all(|&q| q / 9 == window[0] / 9));
        }
        let mut sorted = m.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..9_000).collect::<Vec<u32>>());
        let in_place = m.order.chunks(9).filter(|w| w.windows(2).all(|p| p[0] < p[1])).count();
        assert!(in_place < 5, "{in_place} windows left in order");
    }
}
