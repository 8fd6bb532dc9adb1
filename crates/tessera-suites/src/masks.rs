//! The masks both Serpens suites put on a nonlinear layer's inputs before the deciding party
//! sees them (PROTOCOLS.md 3.3 and 4.3, *masks*).
//!
//! A ReLU element or a max-pool window (an *item*) is decided from *comparisons*
//! ([`Comparison`]): every pair of a window (its argmax) and, where the layer clamps at zero,
//! every element (its sign), encoded so that no compared value `v` is ever zero (`2x_a + 1`;
//! `2(x_a − x_b) ± 1` with a secret tie-breaking order). Each comparison gets its own
//! multiplicative mask `k ≥ 1` with `log2 k` uniform in `[0, κ − 1]` (signs) or `[0, κ − 2]`
//! (pairs) and an offset `e` uniform in `[0, k)`; each element a truncation mask `R` uniform in
//! `[0, 2^(ℓx+σ))`; and an order permutes the items and the elements inside each. The deciding
//! party sees `z = k·v + e` per comparison and `w = x + R` per element:
//!
//! * `z < 0` exactly when `v < 0` (`k·v + e ≤ −k + k − 1` for `v ≤ −1`), so signs and window
//!   maxima are decided exactly, and no `z` is zero: ties and zero inputs do not show;
//! * `z` is not a multiple of `v`: every `k` in range fits every `z` (`v = ⌊z / k⌋`), so the gcd
//!   of a window or the factors of `z` say nothing about `k`;
//! * `log2 |z| ≈ log2 |v| + log2 k` is blurred by a uniform term of `κ − 1` or `κ − 2` bits (a
//!   `k` uniform in `[1, 2^κ]` would sit within two bits of `2^κ` most of the time and hide
//!   almost nothing);
//! * no two values share a `k`: with one `k` per window, two equal elements give values that
//!   differ by `e_a − e_b`, spread over `k`, and a value the attacker knows (a blank
//!   background's response) pins `k` — either gives the window's `k` and then its elements.
//!
//! With `|x| < 2^ℓx` and `κ + ℓx + 1 ≤ ⌊log2 t⌋`, `|z| < 2^(κ+ℓx) ≤ t/2`: `z` never wraps.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_core::RngCore;
use tessera_field::zt;
use zeroize::Zeroize;

/// A multiplicative mask `k ∈ [1, 2^bits]` with `log2 k` uniform in `[0, bits]`: `k = ⌊2^u⌋`
/// for `u` uniform in `[0, bits]` at 52-bit resolution.
pub(crate) fn multiplicative<R: RngCore + ?Sized>(rng: &mut R, bits: u32) -> u64 {
    let u = (rng.next_u64() >> 12) as f64 / (1u64 << 52) as f64 * bits as f64;
    (u.exp2() as u64).clamp(1, 1 << bits)
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
///
/// No compared value is ever zero, so neither ties nor zeros show: a sign compares `2·x_a + 1`
/// (zero counts as positive, which gives the same output), and a pair compares
/// `2·(x_a − x_b) ± 1`, the `±1` the sign of `τ_a − τ_b` for `τ` a secret uniform order of the
/// window's elements (it breaks ties; a larger value still compares larger).
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

    /// The part of the compared value that is linear in the elements `x` of an item, in `Z_t`
    /// (`2·x_a` or `2·(x_a − x_b)`): what each share-holder computes on its share.
    #[inline]
    pub fn linear(self, x: impl Fn(usize) -> u64) -> u64 {
        let v = match self {
            Comparison::Sign(a) => x(a as usize),
            Comparison::Pair(a, b) => zt::sub(x(a as usize), x(b as usize)),
        };
        zt::add(v, v)
    }

    /// The multiplier of the first element in [`Comparison::linear`] (a pair's second element
    /// has its negation).
    pub const SCALE: u64 = 2;

    /// The constant part of the compared value, added once, in `Z_t`: `1` for a sign, and for a
    /// pair `±1`, the sign of `τ_a − τ_b` in the item's tie-breaking order `tie`.
    #[inline]
    pub fn constant(self, tie: impl Fn(usize) -> u64) -> u64 {
        match self {
            Comparison::Sign(_) => 1,
            Comparison::Pair(a, b) => {
                if tie(a as usize) > tie(b as usize) {
                    1
                } else {
                    zt::neg(1)
                }
            }
        }
    }

    /// Bits of its multiplicative mask: `κ − 1` for a sign (`|2x + 1| < 2^(ℓx+1)`) and `κ − 2`
    /// for a pair (`|2(x_a − x_b) ± 1| < 2^(ℓx+2)`), so `|k·v + e| < 2^(κ+ℓx)` for both.
    pub fn mask_bits(self, kappa: u32) -> u32 {
        match self {
            Comparison::Sign(_) => kappa - 1,
            Comparison::Pair(..) => kappa - 2,
        }
    }
}

/// Decides one item from its masked comparisons `z` (signed, in [`Comparison::of_item`]'s
/// order): the element holding the maximum, or `None` where the layer clamps and that maximum
/// is negative (a zero maximum is selected; its output is zero all the same). Exact: `z < 0`
/// exactly when the compared value is negative.
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
    /// Per position, its element's place in the item's secret tie-breaking order `τ` (empty
    /// for element-wise items, which have no pairs).
    pub tie: Vec<u8>,
    /// Offset per comparison, uniform in `[0, k)`.
    pub e: Vec<u64>,
    /// Truncation mask per position, uniform in `[0, 2^r_bits)`.
    pub r: Vec<u64>,
}

/// What a layer's masks look like: items of `arity` elements (signs compared where `clamps`),
/// multiplicative masks of [`Comparison::mask_bits`] for `kappa`, truncation masks below
/// `2^r_bits`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MaskShape {
    /// Elements per item.
    pub arity: usize,
    /// Whether every element's sign is compared too (a fused ReLU).
    pub clamps: bool,
    /// Bits of the multiplicative masks (before [`Comparison::mask_bits`]).
    pub kappa: u32,
    /// Bits of the truncation masks.
    pub r_bits: u32,
}

impl ComparisonMasks {
    /// Draws the masks of `items` items of the given `shape`.
    pub fn draw<R: RngCore + ?Sized>(src: MaskSources<'_, R>, items: usize, shape: MaskShape) -> Self {
        let order = element_order(src.order, items, shape.arity);
        Self::with_order(order, src.k, src.e, src.r, shape)
    }

    /// The masks of the items that `order` lists (`order.len() / arity` items of `arity`
    /// elements, in the order the deciding party receives them), each stream from its own
    /// source: for an order that the masking party does not draw itself (serpens2's
    /// permutation correlation, or the natural order of its comparison layout).
    pub fn with_order<R: RngCore + ?Sized>(
        order: Vec<u32>,
        k_src: &mut R,
        e_src: &mut R,
        r_src: &mut R,
        shape: MaskShape,
    ) -> Self {
        let MaskShape { arity, clamps, kappa, r_bits } = shape;
        let items = order.len() / arity;
        let comparisons = Comparison::of_item(arity, clamps);
        let bits: Vec<u32> = comparisons.iter().map(|c| c.mask_bits(kappa)).collect();
        let k: Vec<u64> = (0..items).flat_map(|_| bits.iter()).map(|&b| multiplicative(k_src, b)).collect();
        let e = k.iter().map(|&k| e_src.random_range(0..k)).collect();
        // Only pairs read the tie-breaking order: none for element-wise items.
        let mut tie = Vec::with_capacity(if arity > 1 { items * arity } else { 0 });
        if arity > 1 {
            let mut places: Vec<u8> = (0..arity as u8).collect();
            for _ in 0..items {
                places.shuffle(k_src);
                tie.extend_from_slice(&places);
            }
            places.zeroize();
        }
        let r = (0..items * arity).map(|_| r_src.next_u64() >> (64 - r_bits)).collect();
        Self { arity, comparisons, order, k, tie, e, r }
    }

    /// What the masker adds once to comparison `i` of item `p`, beside `k` times the linear
    /// part: `k · constant + e`.
    pub fn offset(&self, p: usize, i: usize) -> u64 {
        let slot = p * self.comparisons.len() + i;
        let constant = self.comparisons[i].constant(|a| self.tie[p * self.arity + a] as u64);
        apply(self.k[slot], constant, self.e[slot])
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
        self.tie.zeroize();
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
        ComparisonMasks::draw(src, items, MaskShape { arity, clamps, kappa, r_bits: 59 })
    }

    /// `log2 k` fills `[0, κ]` evenly: each of its eight equal bins holds about an eighth.
    #[test]
    fn log2_of_k_is_uniform() {
        // A sign's mask has κ − 1 bits.
        let kappa = 39;
        let m = draw(80_000, 1, true, kappa + 1);
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
            let m = ComparisonMasks::draw(src, 2_000, MaskShape { arity, clamps, kappa: 30, r_bits: 59 });
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
                        let v = cmp.linear(|a| zt::from_i64(x[a]));
                        zt::to_i64(zt::add(zt::mul(m.k[item * c + i], v), m.offset(item, i)))
                    })
                    .collect();
                // No compared value is zero: neither ties nor zeros show.
                assert!(z.iter().all(|&z| z != 0), "{x:?}: {z:?}");
                let max = *x.iter().max().unwrap();
                match decide(&z, arity, clamps) {
                    Some(best) => assert!(x[best] == max && (!clamps || max >= 0), "{x:?}"),
                    None => assert!(clamps && max < 0, "{x:?}"),
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
