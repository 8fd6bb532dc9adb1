//! Fixed-point encoding (PROTOCOLS.md section 1).
//!
//! `encode(v) = round(v · 2^f) mod t`. Activations carry `f` fractional bits, weights `f_w`; a
//! linear layer's output is at *product scale* `2^(f+f_w)`, and the next nonlinear layer truncates
//! it back by `⌊x / 2^f_w⌋`. Every value revealed under a mask is bounded by `|x| < 2^ℓx` at product
//! scale; the masks then leave `σ = ⌊log2 t⌋ − ℓx − 1` bits of statistical security for a
//! truncation mask `R < 2^(ℓx+σ)` and room for a multiplicative mask `k ≤ 2^κ` with the same `κ = σ`.

use crate::error::{FieldError, Result};
use crate::zt;

/// Statistical security below which parameters are refused.
pub const MIN_STATISTICAL_SECURITY: u32 = 30;
/// Statistical security the calibration aims for.
pub const TARGET_STATISTICAL_SECURITY: u32 = 40;

/// Scales and bound of one model, validated once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPointParams {
    f: u32,
    f_w: u32,
    bound_bits: u32,
}

impl FixedPointParams {
    /// Validates `f` (activation fractional bits), `f_w` (weight fractional bits) and `ℓx` (the
    /// activation bound at product scale, in bits).
    pub fn new(f: u32, f_w: u32, bound_bits: u32) -> Result<Self> {
        let bad = |reason| Err(FieldError::InvalidFixedPoint { f, f_w, bound_bits, reason });
        if f == 0 || f_w == 0 {
            return bad("scales must be at least one bit");
        }
        if bound_bits <= f + f_w {
            return bad("the bound must exceed the product scale");
        }
        if bound_bits + MIN_STATISTICAL_SECURITY + 1 > zt::LOG2_T {
            return bad("the bound leaves less than 30 bits of statistical security");
        }
        Ok(Self { f, f_w, bound_bits })
    }

    /// Fractional bits of activations (`f`).
    pub fn f(&self) -> u32 {
        self.f
    }

    /// Fractional bits of weights (`f_w`).
    pub fn f_w(&self) -> u32 {
        self.f_w
    }

    /// Fractional bits at product scale (`f + f_w`).
    pub fn product_bits(&self) -> u32 {
        self.f + self.f_w
    }

    /// The activation bound `ℓx`: `|x| < 2^ℓx` at product scale.
    pub fn bound_bits(&self) -> u32 {
        self.bound_bits
    }

    /// Statistical security `σ` left by the bound: `ℓx + σ + 1 = ⌊log2 t⌋`.
    pub fn statistical_security(&self) -> u32 {
        zt::LOG2_T - self.bound_bits - 1
    }

    /// Bits of the multiplicative masks `k ∈ [1, 2^κ]`: `κ + ℓx + 1 = ⌊log2 t⌋`.
    pub fn mask_bits(&self) -> u32 {
        self.statistical_security()
    }
}

/// `round(v · 2^bits) mod t`; refuses values that need more than `⌊log2 t⌋ − 1` bits.
pub fn encode(v: f64, bits: u32) -> Result<u64> {
    if !v.is_finite() {
        return Err(FieldError::NonFinite);
    }
    let scaled = (v * (bits as f64).exp2()).round();
    let limit = ((zt::LOG2_T - 1) as f64).exp2();
    if scaled.abs() >= limit {
        return Err(FieldError::OutOfRange { bits: scaled.abs().log2().ceil() as u32, maximum: zt::LOG2_T - 1 });
    }
    Ok(zt::from_i64(scaled as i64))
}

/// The real value of `a` at scale `2^bits`.
pub fn decode(a: u64, bits: u32) -> f64 {
    zt::to_i64(a) as f64 / (bits as f64).exp2()
}

/// `⌊a / 2^bits⌋` on the signed representative: what a party that sees a masked value computes.
#[inline(always)]
pub fn truncate(a: u64, bits: u32) -> u64 {
    zt::from_i64(zt::to_i64(a) >> bits)
}

/// `a / 2^bits` rounded to the nearest integer (ties up) on the signed representative: the
/// truncation rule of the fixed-point reference. A masked-reveal truncation,
/// `⌊(x + R) / 2^bits⌋ − ⌊R / 2^bits⌋` with `R` uniform, rounds `x / 2^bits` stochastically
/// (down or up, unbiased), so it lies within one unit of this rule and its errors average out
/// instead of drifting.
#[inline(always)]
pub fn round_shift(a: u64, bits: u32) -> u64 {
    if bits == 0 {
        return a;
    }
    zt::from_i64((zt::to_i64(a) + (1 << (bits - 1))) >> bits)
}

/// Bits needed by the largest magnitude in `values` (signed representatives): `|x| < 2^bits`.
pub fn magnitude_bits(values: &[u64]) -> u32 {
    let max = values.iter().map(|&a| zt::to_i64(a).unsigned_abs()).max().unwrap_or(0);
    u64::BITS - max.leading_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn params_are_checked() {
        let p = FixedPointParams::new(8, 8, 19).unwrap();
        assert_eq!(p.statistical_security(), 40);
        assert_eq!(p.mask_bits(), 40);
        assert!(FixedPointParams::new(8, 8, 16).is_err());
        assert!(FixedPointParams::new(8, 8, 30).is_err());
        assert!(FixedPointParams::new(0, 8, 19).is_err());
    }

    #[test]
    fn encode_refuses_bad_values() {
        assert_eq!(encode(f64::NAN, 8), Err(FieldError::NonFinite));
        assert!(matches!(encode(1e30, 8), Err(FieldError::OutOfRange { .. })));
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(v in -1.0e6f64..1.0e6, bits in 0u32..30) {
            let a = encode(v, bits).unwrap();
            let back = decode(a, bits);
            prop_assert!((back - v).abs() <= 0.5 / (bits as f64).exp2() + 1e-9);
        }

        #[test]
        fn round_shift_is_nearest(v in -(1i64 << 50)..(1i64 << 50), bits in 0u32..20) {
            let r = zt::to_i64(round_shift(zt::from_i64(v), bits));
            prop_assert!(((v as f64 / (bits as f64).exp2()) - r as f64).abs() <= 0.5);
        }

        #[test]
        fn truncate_is_floor(v in -(1i64 << 50)..(1i64 << 50), bits in 0u32..20) {
            let t = zt::to_i64(truncate(zt::from_i64(v), bits));
            prop_assert_eq!(t, v.div_euclid(1 << bits));
        }
    }
}
