//! The prime field `Z_t`.
//!
//! Elements are `u64` in canonical form `[0, t)`. `t = 2^61 − δ` with a small `δ`, so a
//! product of two elements reduces with two folds of `2^61 ≡ δ` instead of a 128-bit division.
//! The signed representative of `a` lies in `[−(t−1)/2, (t−1)/2]`.

use rand_core::{CryptoRng, RngCore};

/// The plaintext prime `t = 2^61 − 2031615 = 2305843009211662337`, `t ≡ 1 (mod 2^16)`.
pub const T: u64 = 2_305_843_009_211_662_337;
/// `2^61 − t`.
const DELTA: u64 = (1 << 61) - T;
const MASK61: u64 = (1 << 61) - 1;
/// `(t − 1) / 2`: the largest positive signed representative.
pub const HALF: u64 = (T - 1) / 2;
/// `⌊log2 t⌋`: every integer below `2^LOG2_T` is a field element.
pub const LOG2_T: u32 = 60;
/// The largest power of two dividing `t − 1`: BFV batching works for ring degrees `N` with
/// `2N` dividing this.
pub const TWO_ADICITY: u32 = 16;

/// `a + b mod t`.
#[inline(always)]
pub fn add(a: u64, b: u64) -> u64 {
    let s = a + b;
    if s >= T { s - T } else { s }
}

/// `a − b mod t`.
#[inline(always)]
pub fn sub(a: u64, b: u64) -> u64 {
    if a >= b { a - b } else { a + T - b }
}

/// `−a mod t`.
#[inline(always)]
pub fn neg(a: u64) -> u64 {
    if a == 0 { 0 } else { T - a }
}

/// Reduces any `x < 2^122` modulo `t`.
#[inline(always)]
pub fn reduce_u128(x: u128) -> u64 {
    let y = (x >> 61) * DELTA as u128 + (x as u64 & MASK61) as u128; // < 2^83
    let z = ((y >> 61) as u64) * DELTA + (y as u64 & MASK61); // < 2^61 + 2^43 < 2t
    if z >= T { z - T } else { z }
}

/// Reduces a signed `|x| < 2^122` modulo `t`.
#[inline(always)]
pub fn reduce_i128(x: i128) -> u64 {
    let r = reduce_u128(x.unsigned_abs());
    if x < 0 { neg(r) } else { r }
}

/// `a · b mod t`.
#[inline(always)]
pub fn mul(a: u64, b: u64) -> u64 {
    reduce_u128(a as u128 * b as u128)
}

/// `a · 2^k mod t`: for `k < 40` a shift and one fold of `2^61 ≡ δ`, no 128-bit product (the
/// residual additions' rescaling multiplies by `2^f_w`).
#[inline(always)]
pub fn mul_pow2(a: u64, k: u32) -> u64 {
    if k >= 40 {
        return mul(a, pow_vt(2, u64::from(k)));
    }
    shift_fold(a, k)
}

/// `a · 2^k mod t` for `k < 40`, without a branch.
#[inline(always)]
fn shift_fold(a: u64, k: u32) -> u64 {
    // a = hi · 2^(61−k) + r: a · 2^k ≡ hi · δ + r · 2^k, with hi · δ < 2^60 and r · 2^k < 2^61.
    let z = (a >> (61 - k)) * DELTA + ((a << k) & MASK61);
    if z >= T { z - T } else { z }
}

/// `a[i] · 2^k + b[i] mod t` over the shorter of the two (a residual addition whose branch `a`
/// is lifted to product scale), vectorized.
pub fn mul_pow2_add(a: &[u64], k: u32, b: &[u64]) -> Vec<u64> {
    crate::vector::vectorized(
        #[inline(always)]
        || {
            let mut out = Vec::with_capacity(a.len().min(b.len()));
            if k >= 40 {
                out.extend(a.iter().zip(b).map(|(&p, &q)| add(mul_pow2(p, k), q)));
            } else {
                out.extend(a.iter().zip(b).map(|(&p, &q)| add(shift_fold(p, k), q)));
            }
            out
        },
    )
}

/// The field element of a signed integer.
#[inline(always)]
pub fn from_i64(v: i64) -> u64 {
    let r = v % T as i64;
    if r < 0 { (r + T as i64) as u64 } else { r as u64 }
}

/// The signed representative of `a`, in `[−(t−1)/2, (t−1)/2]`.
#[inline(always)]
pub fn to_i64(a: u64) -> i64 {
    if a > HALF { a as i64 - T as i64 } else { a as i64 }
}

/// Bits of the low digit in [`share_digits`].
pub const SHARE_DIGIT_BITS: u32 = 31;

/// The balanced base-`2^31` digits `(lo, hi)` of `a` (`a ≡ lo + 2^31·hi`, `|lo| ≤ 2^30`,
/// `|hi| ≤ 2^29`): how a weight *share*, uniform in `Z_t`, enters products built for small
/// signed weights (exact kernels, HE plaintexts) two digits at a time.
#[inline(always)]
pub fn share_digits(a: u64) -> (i64, i64) {
    let centered = to_i64(a);
    let hi = (centered + (1 << (SHARE_DIGIT_BITS - 1))) >> SHARE_DIGIT_BITS;
    (centered - (hi << SHARE_DIGIT_BITS), hi)
}

/// `a^e mod t`, variable time in the public exponent.
pub fn pow_vt(mut a: u64, mut e: u64) -> u64 {
    let mut r = 1;
    while e > 0 {
        if e & 1 == 1 {
            r = mul(r, a);
        }
        a = mul(a, a);
        e >>= 1;
    }
    r
}

/// `a^−1 mod t` (Fermat), `None` for zero.
pub fn inv(a: u64) -> Option<u64> {
    (a != 0).then(|| pow_vt(a, T - 2))
}

/// The inverses of nonzero `values` with one exponentiation (Montgomery's batch trick: prefix
/// products, one inverse, then back); `None` if any value is zero.
pub fn inv_all(values: &[u64]) -> Option<Vec<u64>> {
    let mut prefix = Vec::with_capacity(values.len());
    let mut acc = 1u64;
    for &v in values {
        prefix.push(acc);
        acc = mul(acc, v);
    }
    let mut inv_acc = inv(acc)?;
    let mut out = vec![0u64; values.len()];
    for i in (0..values.len()).rev() {
        out[i] = mul(inv_acc, prefix[i]);
        inv_acc = mul(inv_acc, values[i]);
    }
    Some(out)
}

/// A uniform element of `Z_t` (rejection sampling on 61 random bits).
pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> u64 {
    loop {
        let x = rng.next_u64() >> 3;
        if x < T {
            return x;
        }
    }
}

/// `n` uniform elements of `Z_t`.
pub fn random_vec<R: RngCore + CryptoRng + ?Sized>(rng: &mut R, n: usize) -> Vec<u64> {
    (0..n).map(|_| random(rng)).collect()
}

/// `dst[i] += src[i] mod t`.
pub fn add_assign(dst: &mut [u64], src: &[u64]) {
    debug_assert_eq!(dst.len(), src.len());
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = add(*d, s));
}

/// `dst[i] −= src[i] mod t`.
pub fn sub_assign(dst: &mut [u64], src: &[u64]) {
    debug_assert_eq!(dst.len(), src.len());
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = sub(*d, s));
}

/// `dst[i] *= c mod t`.
pub fn scale_assign(dst: &mut [u64], c: u64) {
    dst.iter_mut().for_each(|d| *d = mul(*d, c));
}

/// `Σ a[i] · b[i] mod t` over the shorter of the two.
///
/// Both operands (canonical, below `t`) are split into limbs small enough that every product
/// and every sum of a block of [`DOT_BLOCK`] of them fits 64-bit lanes, which vectorize: `a`
/// into 31 + 30 bits, `b` into three 21-bit limbs. No branch depends on the values (the verify
/// client's checks take secret activations).
pub fn dot(a: &[u64], b: &[u64]) -> u64 {
    dot_limbs(
        a,
        b,
        #[inline(always)]
        |p| [p & ((1 << DOT_LOW) - 1), p >> DOT_LOW],
    )
}

/// `Σ (a[i] + shift) · b[i] mod t` over the shorter of the two, for `a` whose shifted elements
/// `a[i] + shift mod t` lie below `2^32` (values within `±shift` of zero, `shift < 2^31`): each is
/// one limb, half the multiplications of [`dot`]. An element outside that range is read as its
/// shifted value's low 32 bits: callers establish the range (by construction, or by testing
/// the values first). No branch depends on the values.
pub fn dot_shifted(a: &[u64], shift: u64, b: &[u64]) -> u64 {
    dot_limbs(
        a,
        b,
        #[inline(always)]
        move |p| [add(p, shift) & u64::from(u32::MAX)],
    )
}

/// `Σ a[i] · b[i] mod t` with `a[i] = Σ_j 2^(31 j) split(a[i])[j]`, each limb below `2^32`.
#[inline(always)]
fn dot_limbs<const N: usize>(a: &[u64], b: &[u64], split: impl Fn(u64) -> [u64; N] + Copy) -> u64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    crate::vector::vectorized(
        #[inline(always)]
        || {
            let mut sum = 0;
            for (x, y) in a.chunks(DOT_BLOCK).zip(b.chunks(DOT_BLOCK)) {
                sum = add(sum, dot_block(x, y, split));
            }
            sum
        },
    )
}

/// Terms per block of [`dot`]: a product of a limb below `2^32` and one of `2^21` is below
/// `2^53`, so a block's sums of them stay below `2^63`.
const DOT_BLOCK: usize = 1 << 10;
/// Bits of the low limb of `a` in [`dot`] (the high limb has the other 30).
const DOT_LOW: u32 = 31;
/// Bits of a limb of `b` in [`dot`].
const DOT_LIMB: u32 = 21;

/// `Σ x[i] · y[i] mod t` over at most [`DOT_BLOCK`] terms, on limbs: `x` as `split` gives them
/// (limb `j` weighs `2^(31 j)`), `y` in three 21-bit limbs.
#[inline(always)]
fn dot_block<const N: usize>(x: &[u64], y: &[u64], split: impl Fn(u64) -> [u64; N]) -> u64 {
    let limb = (1u64 << DOT_LIMB) - 1;
    // sums[j][k]: limb j of x times limb k of y.
    let mut sums = [[0u64; 3]; N];
    for (&p, &q) in x.iter().zip(y) {
        let p = split(p);
        let q = [q & limb, (q >> DOT_LIMB) & limb, q >> (2 * DOT_LIMB)];
        for (row, &pj) in sums.iter_mut().zip(&p) {
            for (s, &qk) in row.iter_mut().zip(&q) {
                *s += pj * qk;
            }
        }
    }
    // Σ_k 2^(21k) Σ_j 2^(31j) sums[j][k]; each inner sum is below 2^94.
    let [r0, r1, r2] = [0, 1, 2].map(|k| {
        reduce_u128(
            sums.iter().enumerate().fold(0u128, |acc, (j, row)| acc + ((row[k] as u128) << (DOT_LOW as usize * j))),
        )
    });
    add(add(r0, mul_pow2(r1, DOT_LIMB)), mul_pow2(r2, 2 * DOT_LIMB))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_digits_are_balanced_and_recombine() {
        let mut rng = crate::seed::os_rng();
        let edge = [0, 1, T - 1, HALF, HALF + 1, (1 << 30) - 1, 1 << 30, T - (1 << 30)];
        for a in edge.into_iter().chain((0..10_000).map(|_| random(&mut rng))) {
            let (lo, hi) = share_digits(a);
            assert!(lo.unsigned_abs() <= 1 << 30 && hi.unsigned_abs() <= 1 << 29, "{a}: {lo}, {hi}");
            assert_eq!(add(from_i64(lo), mul_pow2(from_i64(hi), SHARE_DIGIT_BITS)), a);
        }
    }
    use proptest::prelude::*;

    #[test]
    fn batch_inverses_match_single_ones() {
        let values = [1, 2, 3, T - 1, HALF, 123_456_789];
        let inverses = inv_all(&values).unwrap();
        for (v, i) in values.iter().zip(&inverses) {
            assert_eq!(Some(*i), inv(*v));
            assert_eq!(mul(*v, *i), 1);
        }
        assert_eq!(inv_all(&[5, 0, 7]), None);
        assert_eq!(inv_all(&[]), Some(vec![]));
    }

    #[test]
    fn dot_matches_the_product_by_product_sum() {
        let naive = |a: &[u64], b: &[u64]| a.iter().zip(b).fold(0, |acc, (&p, &q)| add(acc, mul(p, q)));
        // All at T − 1: the largest products, so every lazy chunk sums to its maximum.
        for n in [0, 1, 31, 32, 33, 64, 1000] {
            let top = vec![T - 1; n];
            assert_eq!(dot(&top, &top), naive(&top, &top), "n = {n}");
        }
        let a: Vec<u64> = (0..777u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % T).collect();
        let b: Vec<u64> = (0..777u64).map(|i| (T - 1 - i * i) % T).collect();
        assert_eq!(dot(&a, &b), naive(&a, &b));
        assert_eq!(dot(&a, &b[..500]), naive(&a[..500], &b[..500]));
    }

    /// Lengths around every multiple of the lazy chunk, with every element at `t − 1` (each
    /// product at its maximum), at `2^61 − 1`-adjacent values and mixed: the lazy reduction
    /// equals the product-by-product sum, and equals the exact integer sum mod `t`.
    #[test]
    fn dot_matches_naive_sums_around_chunk_boundaries() {
        let naive = |a: &[u64], b: &[u64]| a.iter().zip(b).fold(0, |acc, (&p, &q)| add(acc, mul(p, q)));
        let exact = |a: &[u64], b: &[u64]| {
            a.iter().zip(b).fold(0u128, |acc, (&p, &q)| (acc + p as u128 * q as u128) % T as u128) as u64
        };
        let lengths = (0..=8)
            .flat_map(|k| [32 * k, 32 * k + 1])
            .chain((1..=8).map(|k| 32 * k - 1))
            .chain([1023, 1024, 1025, 4097]);
        for n in lengths {
            let top = vec![T - 1; n];
            let alt: Vec<u64> = (0..n).map(|i| if i % 2 == 0 { T - 1 } else { T - 2 }).collect();
            let half = vec![HALF + 1; n];
            for (a, b) in [(&top, &top), (&top, &alt), (&alt, &half), (&half, &half)] {
                assert_eq!(dot(a, b), naive(a, b), "n = {n}");
                assert_eq!(dot(a, b), exact(a, b), "n = {n}");
            }
        }
    }

    /// Small signed values, at the edges of `[−2^31, 2^31)`, against the largest elements,
    /// around the block length; and the same with single values far outside it.
    #[test]
    fn dot_of_small_values_matches_the_naive_sum() {
        let naive = |a: &[u64], b: &[u64]| a.iter().zip(b).fold(0, |acc, (&p, &q)| add(acc, mul(p, q)));
        let edges = [-(1i64 << 31), (1 << 31) - 1, -1, 0, 1, -(1 << 30), 12_345];
        for n in [1, 1023, 1024, 1025, 3000] {
            let a: Vec<u64> = (0..n).map(|i| from_i64(edges[i % edges.len()])).collect();
            let b: Vec<u64> = (0..n)
                .map(|i| if i % 3 == 0 { T - 1 } else { (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % T })
                .collect();
            assert_eq!(dot(&a, &b), naive(&a, &b), "n = {n}");
            // Values outside it run the same limbs.
            for outside in [1i64 << 31, -(1 << 31) - 1, HALF as i64] {
                let mut mixed = a.clone();
                mixed[n / 2] = from_i64(outside);
                assert_eq!(dot(&mixed, &b), naive(&mixed, &b), "n = {n}, {outside}");
            }
        }
    }

    /// Values at both ends of `±(2^31 − 1)` and zero, shifted by the largest and a small
    /// shift, against the largest elements and random ones, around the block length: the
    /// shifted dot equals the product-by-product sum of the shifted values.
    #[test]
    fn shifted_dot_matches_the_naive_sum_of_the_shifted_values() {
        let naive = |a: &[u64], b: &[u64]| a.iter().zip(b).fold(0, |acc, (&p, &q)| add(acc, mul(p, q)));
        for shift in [(1u64 << 31) - 1, 5, 0] {
            let s = shift as i64;
            let edges = [-s, s, 0, -s / 2, 1.min(s), -(1.min(s))];
            for n in [1, 1023, 1024, 1025, 3000] {
                let a: Vec<u64> = (0..n).map(|i| from_i64(edges[i % edges.len()])).collect();
                let b: Vec<u64> = (0..n)
                    .map(|i| if i % 3 == 0 { T - 1 } else { (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % T })
                    .collect();
                let shifted: Vec<u64> = a.iter().map(|&v| add(v, shift)).collect();
                assert!(shifted.iter().all(|&v| v < 1 << 32));
                assert_eq!(dot_shifted(&a, shift, &b), naive(&shifted, &b), "n = {n}, shift {shift}");
                let top = vec![T - 1; n];
                assert_eq!(dot_shifted(&a, shift, &top), naive(&shifted, &top), "n = {n}, shift {shift}");
            }
        }
    }

    #[test]
    fn lifted_additions_match_the_element_by_element_ones() {
        let a: Vec<u64> = (0..1000u64)
            .map(|i| if i % 7 == 0 { T - 1 - i } else { i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % T })
            .collect();
        let b: Vec<u64> = a.iter().rev().copied().collect();
        for k in [0, 1, 9, 39, 40, 45] {
            let out = mul_pow2_add(&a, k, &b);
            let expected: Vec<u64> = a.iter().zip(&b).map(|(&p, &q)| add(mul(p, pow_vt(2, u64::from(k))), q)).collect();
            assert_eq!(out, expected, "k = {k}");
        }
    }

    #[test]
    fn multiplying_by_a_power_of_two_equals_the_product() {
        for a in [0, 1, 2, HALF, HALF + 1, T - 1, T - 2, 1 << 60, (1 << 60) + 12345, MASK61 % T] {
            for k in [0, 1, 9, 12, 20, 39, 40, 63] {
                assert_eq!(mul_pow2(a, k), mul(a, pow_vt(2, u64::from(k))), "{a} · 2^{k}");
            }
        }
    }

    fn elem() -> impl Strategy<Value = u64> {
        prop_oneof![0..T, Just(0), Just(1), Just(T - 1), Just(HALF), Just(HALF + 1)]
    }

    #[test]
    fn constants_are_right() {
        assert_eq!(T, (1u64 << 61) - 2_031_615);
        assert_eq!((T - 1) % (1 << TWO_ADICITY), 0);
        assert_ne!((T - 1) % (1 << (TWO_ADICITY + 1)), 0);
        const { assert!(T >= 1 << LOG2_T && T < 1 << (LOG2_T + 1)) };
        // t is prime: Fermat for a few bases plus the field-law tests below.
        for base in [2u64, 3, 5, 7, 11, 13, 1_000_003] {
            assert_eq!(pow_vt(base, T - 1), 1);
        }
    }

    proptest! {
        #[test]
        fn ops_match_u128(a in elem(), b in elem()) {
            let (a128, b128, t128) = (a as u128, b as u128, T as u128);
            prop_assert_eq!(add(a, b) as u128, (a128 + b128) % t128);
            prop_assert_eq!(sub(a, b) as u128, (a128 + t128 - b128) % t128);
            prop_assert_eq!(mul(a, b) as u128, a128 * b128 % t128);
            prop_assert_eq!(add(a, neg(a)), 0);
        }

        #[test]
        fn field_laws(a in elem(), b in elem(), c in elem()) {
            prop_assert_eq!(add(a, b), add(b, a));
            prop_assert_eq!(mul(a, b), mul(b, a));
            prop_assert_eq!(add(add(a, b), c), add(a, add(b, c)));
            prop_assert_eq!(mul(mul(a, b), c), mul(a, mul(b, c)));
            prop_assert_eq!(mul(a, add(b, c)), add(mul(a, b), mul(a, c)));
            if a != 0 {
                prop_assert_eq!(mul(a, inv(a).unwrap()), 1);
            }
        }

        #[test]
        fn reduce_matches_u128(x in any::<u128>()) {
            let x = x >> 6;
            prop_assert_eq!(reduce_u128(x) as u128, x % T as u128);
            let s = x as i128 * if x & 1 == 0 { 1 } else { -1 };
            prop_assert_eq!(reduce_i128(s) as i128, s.rem_euclid(T as i128));
        }

        #[test]
        fn signed_lift_round_trips(v in -(HALF as i64)..=(HALF as i64)) {
            prop_assert_eq!(to_i64(from_i64(v)), v);
        }
    }
}
