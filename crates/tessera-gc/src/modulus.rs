//! The plaintext modulus `t` the circuits work over: Tessera's `t` (tessera-field's `zt::T`) or,
//! for exhaustive tests, any small odd modulus.

use rand_core::{CryptoRng, RngCore};
use tessera_field::zt;

use crate::error::{GcError, Result};

/// An odd modulus `3 ≤ t < 2^62` with its bit length and `⌊t/2⌋`; validated once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulus {
    t: u64,
    bits: usize,
    half: u64,
}

impl Modulus {
    /// Validates `t`.
    pub fn new(t: u64) -> Result<Self> {
        if t < 3 || t.is_multiple_of(2) || t >= 1 << 62 {
            return Err(GcError::InvalidModulus { t });
        }
        Ok(Self { t, bits: (64 - t.leading_zeros()) as usize, half: (t - 1) / 2 })
    }

    /// Tessera's `t = 2^61 − 2031615`.
    pub fn tessera() -> Self {
        Self::new(zt::T).expect("zt::T is a valid modulus")
    }

    /// `t`.
    pub fn t(&self) -> u64 {
        self.t
    }

    /// The bit length `n` of `t` (`2^(n−1) < t < 2^n`).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// `⌊t/2⌋`: the largest non-negative value of the signed representative in `(−t/2, t/2]`.
    pub fn half(&self) -> u64 {
        self.half
    }

    /// `a + b mod t` for `a, b < t`.
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.t { s - self.t } else { s }
    }

    /// `a − b mod t` for `a, b < t`.
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b { a - b } else { a + self.t - b }
    }

    /// `−a mod t` for `a < t`.
    pub fn neg(&self, a: u64) -> u64 {
        self.sub(0, a)
    }

    /// `x mod t`.
    pub fn reduce_u128(&self, x: u128) -> u64 {
        if self.t == zt::T { zt::reduce_u128(x) } else { (x % u128::from(self.t)) as u64 }
    }

    /// The signed representative of `a` in `(−t/2, t/2]`.
    pub fn to_signed(&self, a: u64) -> i64 {
        if a > self.half { a as i64 - self.t as i64 } else { a as i64 }
    }

    /// A uniform element of `Z_t` (rejection sampling of `n`-bit strings).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(&self, rng: &mut R) -> u64 {
        let mask = (1u64 << self.bits) - 1;
        loop {
            let v = rng.next_u64() & mask;
            if v < self.t {
                return v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_and_arithmetic() {
        assert!(Modulus::new(4).is_err());
        assert!(Modulus::new(1).is_err());
        assert!(Modulus::new((1 << 62) + 1).is_err());
        let m = Modulus::new(13).unwrap();
        assert_eq!((m.bits(), m.half()), (4, 6));
        assert_eq!((m.add(7, 9), m.sub(3, 5), m.neg(0), m.to_signed(7), m.to_signed(6)), (3, 11, 0, -6, 6));
        let t = Modulus::tessera();
        assert_eq!((t.bits(), t.half()), (61, zt::HALF));
        assert_eq!(t.reduce_u128(u128::MAX), (u128::MAX % u128::from(zt::T)) as u64);
    }
}
