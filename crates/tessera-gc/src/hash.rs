//! The tweakable circular-correlation-robust hash of the garbling scheme: `TMMO` over AES-128
//! under a key drawn fresh for every layer.
//!
//! `H(x, i) = π_K(π_K(x) ⊕ i) ⊕ π_K(x)`, with `π_K` AES-128 under the key `K`: the `TMMO`
//! construction of Guo, Katz, Wang and Yu, "Efficient and secure multiparty computation from
//! fixed-key block ciphers" (IEEE S&P 2020, eprint 2019/074, section 7.4), which they prove
//! tweakable circular correlation robust (TCCR) when `π_K` is a random permutation. The
//! garbler draws `K` from its CSPRNG for each layer ([`Tccr::random`]) and sends it to the
//! evaluator ([`Tccr::key`], [`Tccr::from_key`]): `K` is public, only fresh, so no table an
//! attacker computes before a layer starts applies to it. Two AES calls per hash, batched;
//! the `aes` crate picks AES-NI at run time where the CPU has it.
//!
//! In garbling, tweaks come only from this module's `and_tweak` and `output_tweak`, which pack
//! (domain, instance, index) into disjoint bit fields (bit 127 the domain, bits 64..127 the
//! instance, bits 0..64 the index): a tweak names one wire of one instance of the layer, so
//! under one key every tweak is used with one label pair `{L, L ⊕ Δ}` and nothing else. The
//! three-party OT links ([`crate::gmw::Mesh`]) hash under a key their sender draws per query and
//! link, with the link's OT counter as the tweak: again one tweak per pair `{q, q ⊕ Δ}`.

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};
use rand_core::{CryptoRng, RngCore};

use crate::block::Block;

/// Bytes of a hash key (what the garbler sends the evaluator per layer).
pub const KEY_BYTES: usize = 16;

/// How many blocks are encrypted per AES call (AES-NI pipelines eight at a time).
const BATCH: usize = 64;

/// The domain bit of output-decoding tweaks (gate tweaks have it clear).
const OUTPUT_DOMAIN: u128 = 1 << 127;

/// The tweak of the garbler half of AND gate `gate` (counted among the AND gates) of instance
/// `instance`; the evaluator half uses the tweak plus one.
///
/// Layout: bit 127 clear, the instance in bits 64..127, `2·gate` in bits 0..64.
#[inline]
pub(crate) fn and_tweak(instance: u64, gate: usize) -> u128 {
    debug_assert!(instance < 1 << 63 && (gate as u128) < 1 << 63, "tweak fields overflow");
    (u128::from(instance) << 64) | (2 * gate as u128)
}

/// The tweak of output wire `output` of instance `instance`.
///
/// Layout: bit 127 set, the instance in bits 64..127, the output in bits 0..64.
#[inline]
pub(crate) fn output_tweak(instance: u64, output: usize) -> u128 {
    debug_assert!(instance < 1 << 63 && (output as u128) < 1 << 64, "tweak fields overflow");
    OUTPUT_DOMAIN | (u128::from(instance) << 64) | output as u128
}

/// The hash `H(x, i)` under one layer's key.
#[derive(Clone)]
pub struct Tccr {
    aes: Aes128,
    key: [u8; KEY_BYTES],
    /// Every (tweak, input) hashed, for the tests that check tweak use.
    #[cfg(test)]
    log: Option<Log>,
}

/// Where a recording hash writes (tweak, input) pairs.
#[cfg(test)]
pub(crate) type Log = std::sync::Arc<std::sync::Mutex<Vec<(u128, Block)>>>;

impl std::fmt::Debug for Tccr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tccr(TMMO, AES-128 under a per-layer key)")
    }
}

impl Tccr {
    /// The hash under a fresh uniform key (the garbler, once per layer).
    pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = [0u8; KEY_BYTES];
        rng.fill_bytes(&mut key);
        Self::from_key(key)
    }

    /// The hash under `key` (the evaluator, with the key the garbler sent).
    pub fn from_key(key: [u8; KEY_BYTES]) -> Self {
        Self {
            aes: Aes128::new(&key.into()),
            key,
            #[cfg(test)]
            log: None,
        }
    }

    /// The key, to send to the evaluator.
    pub fn key(&self) -> [u8; KEY_BYTES] {
        self.key
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
        #[cfg(test)]
        if let Some(log) = &self.log {
            log.lock().expect("log lock").extend(tweaks.iter().copied().zip(xs.iter().copied()));
        }
        let mut buf = [aes::Block::default(); BATCH];
        for (chunk, tw) in xs.chunks_mut(BATCH).zip(tweaks.chunks(BATCH)) {
            let buf = &mut buf[..chunk.len()];
            for (b, x) in buf.iter_mut().zip(chunk.iter()) {
                *b = x.to_bytes().into();
            }
            self.aes.encrypt_blocks(buf);
            // The chunk holds π(x) from here on; the buffer π(x) ⊕ i.
            for ((b, x), &t) in buf.iter_mut().zip(chunk.iter_mut()).zip(tw) {
                *x = Block::from_bytes((*b).into());
                *b = (x.0 ^ t).to_le_bytes().into();
            }
            self.aes.encrypt_blocks(buf);
            for (b, x) in buf.iter().zip(chunk.iter_mut()) {
                *x ^= Block::from_bytes((*b).into());
            }
        }
    }

    /// The same hash, recording every (tweak, input) it is asked for into `log`.
    #[cfg(test)]
    pub(crate) fn recording(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// `TMMO` written out once per block, straight from the definition.
    fn tmmo(key: [u8; 16], x: u128, i: u128) -> u128 {
        let aes = Aes128::new(&key.into());
        let pi = |v: u128| {
            let mut b = aes::Block::from(v.to_le_bytes());
            aes.encrypt_block(&mut b);
            u128::from_le_bytes(b.into())
        };
        let y = pi(x);
        pi(y ^ i) ^ y
    }

    #[test]
    fn batched_hash_is_tmmo_and_tweaks_and_keys_matter() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let h = Tccr::random(&mut rng);
        let mut xs: Vec<Block> =
            (0..150u128).map(|i| Block(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))).collect();
        let tweaks: Vec<u128> = (0..150u128).map(|i| and_tweak(i as u64 / 3, i as usize % 3)).collect();
        let single: Vec<Block> = xs.iter().zip(&tweaks).map(|(&x, &t)| h.hash(x, t)).collect();
        let by_definition: Vec<Block> = xs.iter().zip(&tweaks).map(|(&x, &t)| Block(tmmo(h.key(), x.0, t))).collect();
        h.hash_many(&mut xs, &tweaks);
        assert_eq!(xs, single);
        assert_eq!(xs, by_definition);
        assert_ne!(h.hash(Block(5), 0), h.hash(Block(5), 1));
        let other = Tccr::random(&mut rng);
        assert_ne!(other.key(), h.key());
        assert_ne!(other.hash(Block(5), 0), h.hash(Block(5), 0));
        assert_eq!(Tccr::from_key(h.key()).hash(Block(5), 7), h.hash(Block(5), 7));
        assert_eq!(format!("{h:?}"), "Tccr(TMMO, AES-128 under a per-layer key)");
    }

    #[test]
    fn tweak_fields_are_disjoint() {
        let mut seen = std::collections::HashSet::new();
        for instance in [0u64, 1, 2, 1 << 22, (1 << 63) - 1] {
            for index in [0usize, 1, 180, 1 << 40] {
                for t in [and_tweak(instance, index), and_tweak(instance, index) + 1, output_tweak(instance, index)] {
                    assert!(seen.insert(t), "tweak {t:#x} repeats");
                }
            }
        }
        assert_eq!(output_tweak(3, 5) >> 127, 1);
        assert_eq!(and_tweak(3, 5) >> 127, 0);
    }
}
