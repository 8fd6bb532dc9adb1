//! Per-query seeds and the KDF that expands them (PROTOCOLS.md section 1, "Randomness").
//!
//! Parties that share a [`Seed`] derive the same AES-128-CTR stream for a given layer and
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
    /// The offsets `e ∈ [0, k)` added to `k ⊙ x` in a nonlinear layer.
    Offset,
    /// A holder's zero-sum re-randomizer of its masked message `k ⊙ x_j` (one per holder).
    Rerandomizer,
    /// A holder's zero-sum re-randomizer of its truncation-masked message `x_j + R` (one per
    /// holder, independent of [`Purpose::Rerandomizer`]).
    TruncationRerandomizer,
    /// The pad `α` of a permutation correlation (known to the party that does not know `π`).
    CorrelationPad,
    /// The share `β` of a permutation correlation (known to the party that does not know `π`).
    CorrelationShare,
    /// A one-time pad over an output share sent to its recipient through another party.
    OutputPad,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::MultiplicativeMask => b"multiplicative-mask",
            Purpose::TruncationMask => b"truncation-mask",
            Purpose::Permutation => b"permutation",
            Purpose::Reshare => b"reshare",
            Purpose::InputShare => b"input-share",
            Purpose::Offset => b"offset",
            Purpose::Rerandomizer => b"rerandomizer",
            Purpose::TruncationRerandomizer => b"truncation-rerandomizer",
            Purpose::CorrelationPad => b"correlation-pad",
            Purpose::CorrelationShare => b"correlation-share",
            Purpose::OutputPad => b"output-pad",
        }
    }
}

/// A 256-bit secret seed. Opaque `Debug`, wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Seed([u8; 32]);

impl Seed {
    /// A fresh seed from a CSPRNG.
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        // Filled in place: no separate local copy of the bytes.
        let mut seed = Self([0; 32]);
        rng.fill_bytes(&mut seed.0);
        seed
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
    pub fn derive(&self, purpose: Purpose, layer: u32) -> MaskStream {
        self.derive_with(purpose, layer, &[])
    }

    /// The stream for `purpose` in layer `layer` that belongs to party (or part) `index`:
    /// independent of every other index's and of [`Seed::derive`]'s.
    pub fn derive_indexed(&self, purpose: Purpose, layer: u32, index: u32) -> MaskStream {
        self.derive_with(purpose, layer, &index.to_le_bytes())
    }

    /// The KDF input is length-prefixed label, layer, then the optional index: injective, since
    /// its total length tells whether an index follows. The hasher (which holds the seed) and
    /// the derived key and IV are wiped once the stream is keyed.
    fn derive_with(&self, purpose: Purpose, layer: u32, index: &[u8]) -> MaskStream {
        let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
        h.update(&self.0);
        let label = purpose.label();
        h.update(&(label.len() as u32).to_le_bytes());
        h.update(label);
        h.update(&layer.to_le_bytes());
        h.update(index);
        let mut key_iv = h.finalize();
        h.zeroize();
        let stream = MaskStream::new(key_iv.as_bytes());
        key_iv.zeroize();
        stream
    }
}

/// An AES-128-CTR keystream (key and IV from the KDF): the CSPRNG behind every derived mask,
/// share and permutation. AES runs on the CPU's AES instructions, several times faster than
/// ChaCha20 in software, and masks are the bulk of the randomness a query consumes.
pub struct MaskStream {
    cipher: ctr::Ctr128BE<aes::Aes128>,
    buffer: Box<[u8; STREAM_BUFFER]>,
    used: usize,
}

const STREAM_BUFFER: usize = 4096;

impl MaskStream {
    fn new(key_iv: &[u8; 32]) -> Self {
        use aes::cipher::KeyIvInit;
        let (key, iv) = key_iv.split_at(16);
        let cipher = ctr::Ctr128BE::<aes::Aes128>::new(key.into(), iv.into());
        Self { cipher, buffer: Box::new([0; STREAM_BUFFER]), used: STREAM_BUFFER }
    }

    fn refill(&mut self) {
        use aes::cipher::StreamCipher;
        self.buffer.fill(0);
        self.cipher.apply_keystream(&mut self.buffer[..]);
        self.used = 0;
    }
}

impl RngCore for MaskStream {
    fn next_u32(&mut self) -> u32 {
        if self.used + 4 > STREAM_BUFFER {
            self.refill();
        }
        let v = u32::from_le_bytes(self.buffer[self.used..self.used + 4].try_into().expect("4 bytes"));
        self.used += 4;
        v
    }

    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > STREAM_BUFFER {
            self.refill();
        }
        let v = u64::from_le_bytes(self.buffer[self.used..self.used + 8].try_into().expect("8 bytes"));
        self.used += 8;
        v
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let mut done = 0;
        while done < dst.len() {
            if self.used == STREAM_BUFFER {
                self.refill();
            }
            let n = (dst.len() - done).min(STREAM_BUFFER - self.used);
            dst[done..done + n].copy_from_slice(&self.buffer[self.used..self.used + n]);
            self.used += n;
            done += n;
        }
    }
}

impl CryptoRng for MaskStream {}

impl Drop for MaskStream {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

impl std::fmt::Debug for MaskStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MaskStream(..)")
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// A CSPRNG keyed from the operating system.
pub fn os_rng() -> SecretRng {
    SecretRng::from_os_rng()
}

/// ChaCha20 whose state (key, counter and buffered output) is overwritten on drop, with
/// redacted `Debug`: what [`os_rng`] returns, and the generator of masks, shares and keys.
pub struct SecretRng(ChaCha20Rng);

impl SeedableRng for SecretRng {
    type Seed = [u8; 32];

    fn from_seed(seed: Self::Seed) -> Self {
        Self(ChaCha20Rng::from_seed(seed))
    }
}

impl RngCore for SecretRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

impl CryptoRng for SecretRng {}

impl Drop for SecretRng {
    fn drop(&mut self) {
        // rand_chacha 0.9 keeps its state private and does not implement `Zeroize`: overwrite
        // it with the all-zero seed's (an empty output buffer), and keep the stores from being
        // optimized away as dead.
        self.0 = ChaCha20Rng::from_seed([0; 32]);
        std::hint::black_box(&mut self.0);
    }
}

impl std::fmt::Debug for SecretRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretRng(..)")
    }
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
        let h2 = s.derive_indexed(Purpose::Rerandomizer, 3, 2).next_u64();
        assert_eq!(h2, s.derive_indexed(Purpose::Rerandomizer, 3, 2).next_u64());
        assert_ne!(h2, s.derive_indexed(Purpose::Rerandomizer, 3, 3).next_u64());
        assert_ne!(h2, s.derive_indexed(Purpose::TruncationRerandomizer, 3, 2).next_u64());
        assert_ne!(h2, s.derive(Purpose::Rerandomizer, 3).next_u64());
    }

    #[test]
    fn fresh_seeds_differ_and_debug_is_redacted() {
        let mut rng = os_rng();
        let (a, b) = (Seed::random(&mut rng), Seed::random(&mut rng));
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "Seed(..)");
    }

    #[test]
    fn secret_rng_is_chacha20_with_redacted_debug() {
        let (mut a, mut b) = (SecretRng::from_seed([7; 32]), ChaCha20Rng::from_seed([7; 32]));
        assert_eq!((a.next_u32(), a.next_u64()), (b.next_u32(), b.next_u64()));
        let (mut x, mut y) = ([0u8; 100], [0u8; 100]);
        a.fill_bytes(&mut x);
        b.fill_bytes(&mut y);
        assert_eq!(x, y);
        assert_eq!(format!("{a:?}"), "SecretRng(..)");
        assert_eq!(format!("{:?}", os_rng()), "SecretRng(..)");
    }
}
