//! n-of-n additive secret sharing over `Z_t` (PROTOCOLS.md section 1).
//!
//! `x = Σ x_j mod t` with `x_1 … x_(n−1)` uniform from a CSPRNG and `x_n = x − Σ`: any `n − 1`
//! shares are independent of `x` (perfect hiding).

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{FieldError, Result};
use crate::zt;

/// One party's additive share of a vector over `Z_t`. Its `Debug` shows only the length, and
/// its memory is wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Share(Vec<u64>);

impl Share {
    /// Wraps share values received from a peer or computed locally.
    pub fn from_vec(values: Vec<u64>) -> Self {
        Self(values)
    }

    /// The share's values.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    /// The share's values, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        &mut self.0
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the share is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share").field("len", &self.0.len()).finish_non_exhaustive()
    }
}

/// Splits `secret` into `parties` additive shares.
pub fn share<R: RngCore + CryptoRng + ?Sized>(secret: &[u64], parties: usize, rng: &mut R) -> Result<Vec<Share>> {
    if parties < 2 {
        return Err(FieldError::TooFewParties { parties });
    }
    let mut last = secret.to_vec();
    let mut shares = Vec::with_capacity(parties);
    for _ in 1..parties {
        let s = zt::random_vec(rng, secret.len());
        zt::sub_assign(&mut last, &s);
        shares.push(Share(s));
    }
    shares.push(Share(last));
    Ok(shares)
}

/// Opens a sharing: the sum of all shares. Call it only where the protocol reveals the value.
pub fn reveal(shares: &[Share]) -> Result<Vec<u64>> {
    let first = shares.first().ok_or(FieldError::TooFewParties { parties: 0 })?;
    let mut sum = vec![0; first.len()];
    for s in shares {
        if s.len() != sum.len() {
            return Err(FieldError::ShareMismatch { expected: sum.len(), actual: s.len() });
        }
        zt::add_assign(&mut sum, s.as_slice());
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    proptest! {
        #[test]
        fn share_then_reveal(secret in proptest::collection::vec(0..zt::T, 0..64), parties in 2usize..9, seed: u64) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let shares = share(&secret, parties, &mut rng).unwrap();
            prop_assert_eq!(shares.len(), parties);
            prop_assert_eq!(reveal(&shares).unwrap(), secret);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = Share::from_vec(vec![123_456_789, 42]);
        let d = format!("{s:?}");
        assert!(!d.contains("123456789") && d.contains("len: 2"), "{d}");
    }

    #[test]
    fn shares_look_uniform() {
        // Shares of an all-zero secret: each bit of the first share is 1 about half the time.
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let shares = share(&vec![0; 20_000], 2, &mut rng).unwrap();
        for bit in 0..60 {
            let ones = shares[0].as_slice().iter().filter(|&&v| v >> bit & 1 == 1).count() as f64;
            let chi2 = (ones - 10_000.0).powi(2) / 5_000.0;
            assert!(chi2 < 20.0, "bit {bit}: chi2 {chi2}");
        }
    }

    #[test]
    fn mismatched_shares_are_refused() {
        let r = reveal(&[Share::from_vec(vec![1, 2]), Share::from_vec(vec![1])]);
        assert_eq!(r, Err(FieldError::ShareMismatch { expected: 2, actual: 1 }));
        assert_eq!(
            share(&[1], 1, &mut ChaCha20Rng::seed_from_u64(0)).unwrap_err(),
            FieldError::TooFewParties { parties: 1 }
        );
    }
}
