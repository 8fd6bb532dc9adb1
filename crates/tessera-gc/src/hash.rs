//! The tweakable circular-correlation-robust hash of the garbling scheme, from fixed-key AES.
//!
//! `H(x, i) = π(σ(x) ⊕ i) ⊕ σ(x)`, with `π` AES-128 under a fixed public key and
//! `σ(x_L ‖ x_R) = (x_L ⊕ x_R) ‖ x_L` a linear orthomorphism: the `MMO^σ` construction of
//! Guo, Katz, Wang and Yu, "Efficient and secure multiparty computation from fixed-key block
//! ciphers" (IEEE S&P 2020, eprint 2019/074), with the tweak XORed into the permutation input.
//! One AES call per hash; the `aes` crate picks AES-NI at run time where the CPU has it.
//!
//! Every tweak is used for one gate (or one output wire) of one instance under one `Δ`;
//! the callers make them unique ([`crate::garble`], [`crate::decode`]).

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};

use crate::block::Block;

/// The fixed public AES key: the first 16 bytes of the binary expansion of π's fraction.
const FIXED_KEY: [u8; 16] =
    [0x24, 0x3f, 0x6a, 0x88, 0x85, 0xa3, 0x08, 0xd3, 0x13, 0x19, 0x8a, 0x2e, 0x03, 0x70, 0x73, 0x44];

/// How many blocks are encrypted per AES call (AES-NI pipelines eight at a time).
const BATCH: usize = 64;

/// The hash `H(x, i)`; cheap to construct (one key schedule).
#[derive(Clone)]
pub struct Tccr {
    aes: Aes128,
}

impl Default for Tccr {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Tccr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tccr(fixed-key AES-128)")
    }
}

/// `σ(x_L ‖ x_R) = (x_L ⊕ x_R) ‖ x_L`, with `x_L` the high 64 bits.
#[inline]
fn sigma(x: u128) -> u128 {
    let hi = x >> 64;
    let lo = x & u128::from(u64::MAX);
    ((hi ^ lo) << 64) | hi
}

impl Tccr {
    /// The hash under the fixed key.
    pub fn new() -> Self {
        Self { aes: Aes128::new(&FIXED_KEY.into()) }
    }

    /// `H(x, i)` for one block.
    pub fn hash(&self, x: Block, tweak: u128) -> Block {
        let mut b = [x];
        self.hash_many(&mut b, &[tweak]);
        b[0]
    }

    /// Replaces each `xs[k]` by `H(xs[k], tweaks[k])`, batching the AES calls.
    ///
    /// # Panics
    /// If the slices differ in length (a caller bug).
    pub fn hash_many(&self, xs: &mut [Block], tweaks: &[u128]) {
        assert_eq!(xs.len(), tweaks.len(), "one tweak per block");
        let mut s = [0u128; BATCH];
        let mut buf = [aes::Block::default(); BATCH];
        for (chunk, tw) in xs.chunks_mut(BATCH).zip(tweaks.chunks(BATCH)) {
            let n = chunk.len();
            for k in 0..n {
                s[k] = sigma(chunk[k].0);
                buf[k] = (s[k] ^ tw[k]).to_le_bytes().into();
            }
            self.aes.encrypt_blocks(&mut buf[..n]);
            for k in 0..n {
                let y: [u8; 16] = buf[k].into();
                chunk[k] = Block(u128::from_le_bytes(y) ^ s[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_is_an_orthomorphism_on_samples() {
        // σ is linear and σ(x) ⊕ x = x_R ‖ (x_L ⊕ x_R) is again a bijection; check both on samples.
        let xs = [1u128, 2, 3 << 64, u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210];
        for &a in &xs {
            for &b in &xs {
                assert_eq!(sigma(a ^ b), sigma(a) ^ sigma(b));
            }
            let lo = a & u128::from(u64::MAX);
            let hi = a >> 64;
            assert_eq!(sigma(a) ^ a, (lo << 64) | (hi ^ lo));
        }
    }

    #[test]
    fn batched_hash_equals_single_hashes_and_tweaks_matter() {
        let h = Tccr::new();
        let mut xs: Vec<Block> =
            (0..150u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))).collect();
        let tweaks: Vec<u128> = (0..150u128).collect();
        let single: Vec<Block> = xs.iter().zip(&tweaks).map(|(&x, &t)| h.hash(x, t)).collect();
        h.hash_many(&mut xs, &tweaks);
        assert_eq!(xs, single);
        assert_ne!(h.hash(Block(5), 0), h.hash(Block(5), 1));
    }
}
