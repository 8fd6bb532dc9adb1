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

    proptest! {
        #[test]
        fn split_combine_round_trips(values in proptest::collection::vec(0..zt::T, 1..32), w in 1u64..1 << 20, k in 1usize..5000) {
            let plan = LimbPlan::for_product(w, k);
            let mut limbs = vec![0.0; values.len() * plan.count()];
            plan.split(&values, &mut limbs);
            for (i, &v) in values.iter().enumerate() {
                prop_assert_eq!(plan.combine(|l| limbs[l * values.len() + i]), v);
                for l in 0..plan.count() {
                    prop_assert!(limbs[l * values.len() + i].abs() <= (1u64 << (plan.bits() - 1)) as f64 + 1.0);
                }
            }
        }
    }
}
