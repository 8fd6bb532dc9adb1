//! Centered limb decomposition of `Z_t` operands for exact products in `f64`.
//!
//! `f64` represents every integer up to `2^53` exactly. For weights `|w| ≤ W` and `K` terms, a
//! signed operand split into limbs `|l| ≤ 2^(b−1)` keeps `Σ w·l` within `K · W · 2^(b−1)`, so `b`
//! is chosen as large as that bound allows (with one spare bit); typically `W ≤ 2^11`, `K ≤ 1024`
//! give `b = 32` and two limbs per 61-bit element, i.e. two `f64` GEMMs per `Z_t` GEMM.

use crate::zt;

/// How a field element is cut into limbs for one weight matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimbPlan {
    bits: u32,
    count: usize,
}

impl LimbPlan {
    /// The widest limbs that keep a dot product of `terms` products with `|w| ≤ max_abs_weight`
    /// exact in `f64`.
    pub fn for_product(max_abs_weight: u64, terms: usize) -> Self {
        let wk = (max_abs_weight.max(1) as u128) * terms.max(1) as u128;
        let log = 128 - (wk - 1).leading_zeros(); // ⌈log2 wk⌉
        let bits = 53u32.saturating_sub(log).clamp(1, zt::LOG2_T + 1);
        let count = (zt::LOG2_T + 1).div_ceil(bits) as usize;
        Self { bits, count }
    }

    /// The same limbs for operands known to lie within `±bound` of zero: as few as cover them
    /// (one where `bound < 2^(b−1)`), the products as exact.
    pub fn within(self, bound: u64) -> Self {
        // The top limb takes what the centered lower ones leave: |x| < 2^(b·c − 1) keeps it
        // within ±2^(b−1) (rounded away by at most one half).
        let needed = (64 - bound.leading_zeros() + 1).div_ceil(self.bits) as usize;
        Self { count: needed.clamp(1, self.count), ..self }
    }

    /// Bits per limb.
    pub fn bits(&self) -> u32 {
        self.bits
    }

    /// Limbs per element.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Splits `src` into `count` limb planes, limb-major: limb `l` of `src[i]` goes to
    /// `dst[l · src.len() + i]`.
    pub fn split(&self, src: &[u64], dst: &mut [f64]) {
        let n = src.len();
        assert!(dst.len() >= n * self.count, "limb buffer too small");
        for (i, &a) in src.iter().enumerate() {
            self.limbs(a, |l, v| dst[l * n + i] = v as f64);
        }
    }

    /// Hands `put(l, limb)` each limb of `a`, centered: the lower ones within
    /// `[−2^(b−1), 2^(b−1))`, the top one what they leave (within `±(2^(b−2) + 1)` when the
    /// limbs cover 62 bits or more).
    #[inline(always)]
    pub fn limbs(&self, a: u64, mut put: impl FnMut(usize, i64)) {
        let mut x = zt::to_i64(a);
        for l in 0..self.count {
            put(l, self.take_limb(l, &mut x));
        }
    }

    /// Limb `l` of the centered value `x` began as, where `x` holds what limbs `0..l` left of
    /// it (limbs are taken in order, [`limbs`](Self::limbs)); `x` keeps what this one leaves.
    #[inline(always)]
    pub fn take_limb(&self, l: usize, x: &mut i64) -> i64 {
        if l + 1 == self.count {
            return *x;
        }
        let half = 1i64 << (self.bits - 1);
        let lo = ((*x + half) & ((1i64 << self.bits) - 1)) - half;
        *x = (*x - lo) >> self.bits;
        lo
    }

    /// The widest limbs (at most 16 bits, so they fit an `i16`) that keep a dot product of
    /// `terms` products with `|w| ≤ max_abs_weight` within `±2^30`: exact in the `i32` sums of
    /// the AVX-512 VNNI kernel ([`super::avx512::Dot16`]). `None` when that takes more than
    /// `max_count` limbs.
    pub fn for_i32_sums(max_abs_weight: u64, terms: usize, max_count: usize) -> Option<Self> {
        let wk = (max_abs_weight.max(1) as u128) * terms.max(1) as u128;
        let log = 128 - (wk - 1).leading_zeros(); // ⌈log2 wk⌉
        let bits = 31u32.checked_sub(log)?.min(16);
        // At least 62 bits in all: the top limb then stays within 2^(b−1) too.
        let count = 62u32.div_ceil(bits.max(1)) as usize;
        (bits >= 2 && count <= max_count).then_some(Self { bits, count })
    }

    /// Recombines whole rows of limb products into `out`: `limb_rows(l)` is the row of `c_l`
    /// values. The two-limb case (the usual one) runs in vectorizable 64-bit arithmetic.
    pub fn combine_rows<'a>(&self, limb_rows: impl Fn(usize) -> &'a [f64], out: &mut [u64]) {
        if self.count == 1 {
            // One limb: the product itself, an exact integer below 2^53 in magnitude.
            for (o, &c) in out.iter_mut().zip(limb_rows(0)) {
                *o = zt::from_i64(c as i64);
            }
            return;
        }
        if self.count != 2 {
            for (j, o) in out.iter_mut().enumerate() {
                *o = self.combine(|l| limb_rows(l)[j]);
            }
            return;
        }
        // c0 + c1·2^b with c1 = hi·2^(61−b) + lo: c1·2^b ≡ hi·δ + lo·2^b (mod t), since 2^61 ≡ δ.
        // |c0| < 2^53, |hi·δ| < 2^(b−8+21), 0 ≤ lo·2^b < 2^61: the sum fits in i64.
        let b = self.bits;
        let split = 61 - b;
        let delta = ((1u64 << 61) - zt::T) as i64;
        let (r0, r1) = (&limb_rows(0)[..out.len()], &limb_rows(1)[..out.len()]);
        for ((o, &c0), &c1) in out.iter_mut().zip(r0).zip(r1) {
            let (c0, c1) = (c0 as i64, c1 as i64);
            let hi = c1 >> split;
            let lo = c1 & ((1i64 << split) - 1);
            let s = c0 + hi * delta + (lo << b);
            let s = if s < 0 { s + zt::T as i64 } else { s };
            *o = if s >= zt::T as i64 { (s - zt::T as i64) as u64 } else { s as u64 };
        }
    }

    /// Recombines rows of limb products `c_l = value(limb_rows(l)[j])`, each within `±2^31` (the
    /// VNNI kernel's `i32` sums), into `out` modulo `t`, for limbs of at most 16 bits: Horner's
    /// rule from the top limb, each step folding the bits above `2^61` back as
    /// `δ = 2^61 − t`, so it stays in `i64` and vectorizes along the row.
    pub fn combine_sums<'a, T: Copy + 'a>(
        &self,
        limb_rows: impl Fn(usize) -> &'a [T],
        value: impl Fn(T) -> i64,
        out: &mut [u64],
    ) {
        assert!(self.bits <= 16, "limbs of at most 16 bits");
        let (b, split) = (self.bits, 61 - self.bits);
        let delta = ((1u64 << 61) - zt::T) as i64;
        let mask = (1i64 << split) - 1;
        let n = out.len();
        let t = zt::T as i64;
        crate::vector::vectorized(
            #[inline(always)]
            || {
                // The sums accumulate in `out` itself, as two's-complement i64: no buffer.
                for (o, &c) in out.iter_mut().zip(&limb_rows(self.count - 1)[..n]) {
                    *o = value(c) as u64;
                }
                for l in (0..self.count - 1).rev() {
                    // acc · 2^b = hi · 2^61 + lo · 2^b ≡ hi · δ + lo · 2^b: |hi · δ| < 2^(b+1+21)
                    // and 0 ≤ lo · 2^b < 2^61, so the sum stays within (−t, 2t).
                    for (o, &c) in out.iter_mut().zip(&limb_rows(l)[..n]) {
                        let a = *o as i64;
                        *o = ((a >> split) * delta + ((a & mask) << b) + value(c)) as u64;
                    }
                }
                for o in out.iter_mut() {
                    let a = *o as i64;
                    let a = a + (t & (a >> 63));
                    *o = (a - (t & ((t - 1 - a) >> 63))) as u64;
                }
            },
        );
    }

    /// Recombines the limb products `Σ_l c_l · 2^(b·l)` of one output modulo `t`; `limbs(l)`
    /// returns `c_l`, an exact integer below `2^53` in magnitude.
    #[inline(always)]
    pub fn combine(&self, limbs: impl Fn(usize) -> f64) -> u64 {
        let mut acc: i128 = 0;
        for l in 0..self.count {
            acc += (limbs(l) as i64 as i128) << (self.bits as usize * l);
        }
        zt::reduce_i128(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_weights_need_two_limbs() {
        let p = LimbPlan::for_product(1 << 11, 1024);
        assert_eq!((p.bits(), p.count()), (32, 2));
        assert_eq!(LimbPlan::for_product(1 << 20, 4096).count(), 3);
    }

    #[test]
    fn i32_sums_take_narrow_limbs() {
        // MiniONN-CIFAR's widest layer: |w| ≤ 295, 576 terms.
        let p = LimbPlan::for_i32_sums(295, 576, 6).unwrap();
        assert_eq!((p.bits(), p.count()), (13, 5));
        assert_eq!(LimbPlan::for_i32_sums(100, 256, 6).map(|p| (p.bits(), p.count())), Some((16, 4)));
        assert_eq!(LimbPlan::for_i32_sums(1 << 20, 4096, 6), None);
    }

    #[test]
    fn bounded_operands_need_fewer_limbs() {
        let p = LimbPlan::for_product(1 << 11, 1024);
        assert_eq!(p.within((1 << 31) - 1).count(), 1);
        assert_eq!(p.within(1 << 31).count(), 2);
        assert_eq!(p.within(u64::MAX).count(), 2);
        assert_eq!(p.within(0).count(), 1);
    }

    proptest! {
        /// Values within the bound a reduced plan was made for round-trip through its limbs, and
        /// every limb stays within the plan's width.
        #[test]
        fn bounded_split_combine_round_trips(raw in proptest::collection::vec(any::<i64>(), 1..32), bound_bits in 1u32..61, w in 1u64..1 << 20, k in 1usize..5000) {
            let bound = (1u64 << bound_bits) - 1;
            let plan = LimbPlan::for_product(w, k).within(bound);
            let values: Vec<u64> = raw.iter().map(|&r| zt::from_i64(r % (bound as i64 + 1))).collect();
            let mut limbs = vec![0.0; values.len() * plan.count()];
            plan.split(&values, &mut limbs);
            let mut rows = vec![0; values.len()];
            plan.combine_rows(|l| &limbs[l * values.len()..(l + 1) * values.len()], &mut rows);
            prop_assert_eq!(&rows, &values);
            for limb in &limbs {
                prop_assert!(limb.abs() <= (1u64 << (plan.bits() - 1)) as f64 + 1.0);
            }
        }

        /// Limbs for `i32` sums fit an `i16`, their dot products with the weights stay within
        /// `±2^30` at the extremes of both, and sums of that size recombine as `i128` does.
        #[test]
        fn i32_sum_limbs_fit_their_bound(values in proptest::collection::vec(0..zt::T, 1..32), sums in proptest::collection::vec(-(1i64 << 31)..=1 << 31, 8), w in 1u64..1 << 14, k in 1usize..5000) {
            if let Some(plan) = LimbPlan::for_i32_sums(w, k, 8) {
                let mut rows = vec![Vec::new(); plan.count()];
                for &v in &values {
                    plan.limbs(v, |l, limb| rows[l].push(limb));
                }
                let mut out = vec![0; values.len()];
                plan.combine_sums(|l| &rows[l], |c| c, &mut out);
                prop_assert_eq!(&out, &values);
                for &l in rows.iter().flatten() {
                    prop_assert!(i16::try_from(l).is_ok() && l.abs() <= 1 << (plan.bits() - 1));
                    prop_assert!((l.unsigned_abs() as u128) * (w as u128) * (k as u128) <= 1 << 30);
                }
                // Arbitrary sums at the i32 extremes, against the i128 recombination.
                // The last column is −1: a negative result with every upper limb zero.
                let extreme: Vec<Vec<i64>> =
                    (0..plan.count()).map(|l| vec![sums[l], -(1 << 31), (1 << 31) - 1, -i64::from(l == 0)]).collect();
                let mut out = vec![0; 4];
                plan.combine_sums(|l| &extreme[l], |c| c, &mut out);
                for (j, &o) in out.iter().enumerate() {
                    prop_assert_eq!(o, plan.combine(|l| extreme[l][j] as f64));
                }
            }
        }

        #[test]
        fn split_combine_round_trips(values in proptest::collection::vec(0..zt::T, 1..32), w in 1u64..1 << 20, k in 1usize..5000) {
            let plan = LimbPlan::for_product(w, k);
            let mut limbs = vec![0.0; values.len() * plan.count()];
            plan.split(&values, &mut limbs);
            let mut rows = vec![0; values.len()];
            plan.combine_rows(|l| &limbs[l * values.len()..(l + 1) * values.len()], &mut rows);
            prop_assert_eq!(&rows, &values);
            for (i, &v) in values.iter().enumerate() {
                prop_assert_eq!(plan.combine(|l| limbs[l * values.len() + i]), v);
                for l in 0..plan.count() {
                    prop_assert!(limbs[l * values.len() + i].abs() <= (1u64 << (plan.bits() - 1)) as f64 + 1.0);
                }
            }
        }
    }
}
