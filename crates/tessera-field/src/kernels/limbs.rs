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
        let half = 1i64 << (self.bits - 1);
        let mask = (1i64 << self.bits) - 1;
        for (i, &a) in src.iter().enumerate() {
            let mut x = zt::to_i64(a);
            for l in 0..self.count - 1 {
                let lo = ((x + half) & mask) - half;
                dst[l * n + i] = lo as f64;
                x = (x - lo) >> self.bits;
            }
            dst[(self.count - 1) * n + i] = x as f64;
        }
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
