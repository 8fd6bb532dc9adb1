//! 128-bit blocks: wire labels, OT strings and the free-XOR offset `Δ`.
//!
//! A label's least significant bit is its *color* (point-and-permute): `Δ` has color 1, so the
//! two labels of a wire always have different colors.

use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 128-bit string. Opaque `Debug`: a block may be a secret label.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Block(pub(crate) u128);

impl zeroize::DefaultIsZeroes for Block {}

impl Block {
    /// The all-zero block.
    pub const ZERO: Block = Block(0);

    /// A uniformly random block.
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        Block(u128::from_le_bytes(b))
    }

    /// The block with these little-endian bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Block(u128::from_le_bytes(bytes))
    }

    /// The little-endian bytes of the block.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// The point-and-permute color: the least significant bit.
    #[inline]
    pub fn color(self) -> bool {
        self.0 & 1 == 1
    }

    /// `self` if `bit`, else zero, without a branch on `bit`.
    #[inline]
    pub fn and_bit(self, bit: bool) -> Block {
        Block(self.0 & 0u128.wrapping_sub(bit as u128))
    }

    /// The low 64 bits.
    #[inline]
    pub(crate) fn low64(self) -> u64 {
        self.0 as u64
    }
}

impl std::ops::BitXor for Block {
    type Output = Block;
    #[inline]
    fn bitxor(self, rhs: Block) -> Block {
        Block(self.0 ^ rhs.0)
    }
}

impl std::ops::BitXorAssign for Block {
    #[inline]
    fn bitxor_assign(&mut self, rhs: Block) {
        self.0 ^= rhs.0;
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Block(..)")
    }
}

/// The free-XOR offset `Δ` (color 1); also the OT-extension sender's secret `s`. Wiped on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Delta(Block);

impl Delta {
    /// A random `Δ` with color 1 (127 random bits).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Delta(Block(Block::random(rng).0 | 1))
    }

    /// The block `Δ`, for the garbler's own computations only.
    #[inline]
    pub fn block(&self) -> Block {
        self.0
    }

    /// Bit `i` of `Δ`.
    pub fn bit(&self, i: usize) -> bool {
        (self.0.0 >> i) & 1 == 1
    }
}

impl std::fmt::Debug for Delta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Delta(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delta_has_color_one_and_debug_is_opaque() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        for _ in 0..32 {
            let d = Delta::random(&mut rng);
            assert!(d.block().color());
            assert_eq!(format!("{d:?}"), "Delta(..)");
        }
        let b = Block::random(&mut rng);
        assert_eq!(format!("{b:?}"), "Block(..)");
        assert_eq!(Block::from_bytes(b.to_bytes()), b);
        assert_eq!(b.and_bit(true), b);
        assert_eq!(b.and_bit(false), Block::ZERO);
    }
}
