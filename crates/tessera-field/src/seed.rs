//! Per-query seeds and the KDF that expands them (PROTOCOLS.md section 1, "Randomness").
//!
//! Parties that share a [`Seed`] derive the same ChaCha20 stream for a given layer and
//! [`Purpose`]; different layers or purposes give independent streams (BLAKE3 in key-derivation
//! mode, with a fixed context string and the purpose label and layer index as input).

use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore, SeedableRng};
use zeroize::{Zeroize, ZeroizeOnDrop};

const KDF_CONTEXT: &str = "tessera 2026-11 per-query randomness v1";

/// What a derived stream is used for; each purpose has its own domain label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Multiplicative masks `k` of a nonlinear layer.
    MultiplicativeMask,
    /// The truncation mask `R` of a nonlinear layer.
    TruncationMask,
    /// The permutation `π` of a nonlinear layer.
    Permutation,
    /// Re-shares derived from a pairwise seed.
    Reshare,
    /// Shares of the user's input.
    InputShare,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::MultiplicativeMask => b"multiplicative-mask",
            Purpose::TruncationMask => b"truncation-mask",
            Purpose::Permutation => b"permutation",
            Purpose::Reshare => b"reshare",
            Purpose::InputShare => b"input-share",
        }
    }
}

/// A 256-bit secret seed. Opaque `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// A fresh seed from a CSPRNG.
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// A seed received over an authenticated channel.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The seed's bytes, to send to a party entitled to it.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The stream for `purpose` in layer `layer`.
    pub fn derive(&self, purpose: Purpose, layer: u32) -> ChaCha20Rng {
        let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
        h.update(&self.0);
        let label = purpose.label();
        h.update(&(label.len() as u32).to_le_bytes());
        h.update(label);
        h.update(&layer.to_le_bytes());
        ChaCha20Rng::from_seed(*h.finalize().as_bytes())
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// A CSPRNG keyed from the operating system.
pub fn os_rng() -> ChaCha20Rng {
    ChaCha20Rng::from_os_rng()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_separated_and_reproducible() {
        let s = Seed::from_bytes([9; 32]);
        let a = s.derive(Purpose::Permutation, 3).next_u64();
        assert_eq!(a, s.derive(Purpose::Permutation, 3).next_u64());
        assert_ne!(a, s.derive(Purpose::Permutation, 4).next_u64());
        assert_ne!(a, s.derive(Purpose::TruncationMask, 3).next_u64());
        assert_ne!(a, Seed::from_bytes([8; 32]).derive(Purpose::Permutation, 3).next_u64());
    }

    #[test]
    fn fresh_seeds_differ_and_debug_is_redacted() {
        let mut rng = os_rng();
        let (a, b) = (Seed::random(&mut rng), Seed::random(&mut rng));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Seed(..)");
    }
}
