//! The masks both Serpens suites put on a nonlinear layer's inputs before the deciding party
//! sees them (PROTOCOLS.md 3.3 and 4.3, *masks*).
//!
//! Per item (a ReLU element, a max-pool window) a multiplicative mask `k ≥ 1` with `log2 k`
//! uniform in `[0, κ]`, per element an offset `e` uniform in `[0, k)` and a truncation mask `R`
//! uniform in `[0, 2^(ℓx+σ))`; and an order that permutes the items and the elements inside each
//! item. The deciding party sees `z = k·x + e` and `w = x + R`:
//!
//! * `z < 0` exactly when `x < 0`, and inside a window `x_a < x_b` implies `z_a < z_b` (one `k`
//!   per window; `k·x_a + e_a ≤ k·x_b − 1 < z_b`), so signs and window maxima are decided right;
//! * `z` is not a multiple of `x`: every `k` in range fits every `z` (`x = ⌊z / k⌋`), so the gcd
//!   of a window or the factors of `z` say nothing about `k`;
//! * `log2 |z| ≈ log2 |x| + log2 k` is blurred by a uniform `κ`-bit term (a `k` uniform in
//!   `[1, 2^κ]` would sit within two bits of `2^κ` most of the time and hide almost nothing).
//!
//! With `|x| < 2^ℓx` and `κ + ℓx + 1 ≤ ⌊log2 t⌋`, `|z| < 2^(κ+ℓx) ≤ t/2`: `z` never wraps.

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

/// The masks of one layer's items, in the order the deciding party receives them.
pub(crate) struct ItemMasks {
    /// Elements per item.
    pub arity: usize,
    /// `order[q]`: the element (over the flattened batch, `item · arity + e`) sent at position
    /// `q`. Items are permuted, and the elements inside each item.
    pub order: Vec<u32>,
    /// Multiplicative mask per position's item (`order[q] / arity` has `k[q / arity]`).
    pub k: Vec<u64>,
    /// Offset per position, uniform in `[0, k)`.
    pub e: Vec<u64>,
    /// Truncation mask per position, uniform in `[0, 2^r_bits)`.
    pub r: Vec<u64>,
}

/// Where each stream of an [`ItemMasks`] comes from: holders of one seed derive the same ones
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

impl ItemMasks {
    /// Draws the masks of `items` items of `arity` elements: `κ` bits of multiplicative mask,
    /// truncation masks below `2^r_bits`.
    pub fn draw<R: RngCore + ?Sized>(
        src: MaskSources<'_, R>,
        items: usize,
        arity: usize,
        kappa: u32,
        r_bits: u32,
    ) -> Self {
        let order = element_order(src.order, items, arity);
        Self::with_order(order, src.k, src.e, src.r, arity, kappa, r_bits)
    }

    /// The masks of the items that `order` lists (`order.len() / arity` items of `arity`
    /// elements, in the order the deciding party receives them), each stream from its own
    /// source: for an order that the masking party does not draw itself (serpens2's
    /// permutation correlation, or the identity of its comparison layout).
    pub fn with_order<R: RngCore + ?Sized>(
        order: Vec<u32>,
        k_src: &mut R,
        e_src: &mut R,
        r_src: &mut R,
        arity: usize,
        kappa: u32,
        r_bits: u32,
    ) -> Self {
        let items = order.len() / arity;
        let k: Vec<u64> = (0..items).map(|_| multiplicative(k_src, kappa)).collect();
        let e = k.iter().flat_map(|&k| std::iter::repeat_n(k, arity)).map(|k| e_src.random_range(0..k)).collect();
        let r = (0..items * arity).map(|_| r_src.next_u64() >> (64 - r_bits)).collect();
        Self { arity, order, k, e, r }
    }

    /// Items masked.
    pub fn items(&self) -> usize {
        self.k.len()
    }

    /// The mask pair `(k, e)` at position `q`.
    #[inline]
    pub fn affine(&self, q: usize) -> (u64, u64) {
        (self.k[q / self.arity], self.e[q])
    }
}

impl Drop for ItemMasks {
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

    fn draw(items: usize, arity: usize, kappa: u32) -> ItemMasks {
        let (mut a, mut b, mut c, mut d) = (os_rng(), os_rng(), os_rng(), os_rng());
        ItemMasks::draw(MaskSources { order: &mut a, k: &mut b, e: &mut c, r: &mut d }, items, arity, kappa, 59)
    }

    /// `log2 k` fills `[0, κ]` evenly: each of its eight equal bins holds about an eighth.
    #[test]
    fn log2_of_k_is_uniform() {
        let kappa = 40;
        let m = draw(80_000, 1, kappa);
        let mut bins = [0usize; 8];
        for &k in &m.k {
            assert!((1..=1u64 << kappa).contains(&k));
            bins[((k as f64).log2() / kappa as f64 * 8.0).min(7.0) as usize] += 1;
        }
        for b in bins {
            assert!((9_000..11_000).contains(&b), "{bins:?}");
        }
    }

    /// Offsets lie in `[0, k)`, keep signs and the strict order inside a window, and break exact
    /// divisibility.
    #[test]
    fn offsets_keep_sign_and_order_but_not_divisibility() {
        let m = draw(5_000, 4, 20);
        let mut divisible = 0;
        for q in 0..m.order.len() {
            let (k, e) = m.affine(q);
            assert!(e < k);
            for x in [-3i64, -1, 0, 1, 7] {
                let z = zt::to_i64(apply(k, zt::from_i64(x), e));
                assert_eq!(z < 0, x < 0);
                let next = zt::to_i64(apply(k, zt::from_i64(x + 1), m.e[q ^ 1]));
                assert!(z < next);
                assert_eq!(z.div_euclid(k as i64), x);
            }
            divisible += usize::from(k > 1 && zt::to_i64(apply(k, zt::from_i64(5), e)) % 5 == 0);
        }
        assert!(divisible < m.order.len() / 3, "{divisible} of {} divisible by 5", m.order.len());
    }

    /// The order permutes whole items and the elements inside each.
    #[test]
    fn order_keeps_windows_together_and_covers_every_element() {
        let m = draw(1_000, 9, 30);
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
