//! Base OT: Chou and Orlandi, "The simplest protocol for oblivious transfer" (LATINCRYPT 2015,
//! eprint 2015/267), over the Ristretto group of Curve25519 (`curve25519-dalek`).
//!
//! The sender draws `y` and sends `S = y·B`; for choice `c_i` the receiver draws `x_i` and sends
//! `R_i = c_i·S + x_i·B`. The sender's keys are `k_i^0 = KDF(i, S, R_i, y·R_i)` and
//! `k_i^1 = KDF(i, S, R_i, y·(R_i − S))`; the receiver's is `k_i^{c_i} = KDF(i, S, R_i, x_i·S)`.
//! The KDF is BLAKE3 in key-derivation mode. Semi-honest security under CDH in the random-oracle
//! model. Scalars come from 64 CSPRNG bytes reduced modulo the group order, so no `rand_core`
//! version is shared with the curve crate.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_TABLE;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::block::Block;
use crate::error::{GcError, Message, Result};

const KDF_CONTEXT: &str = "tessera-gc 2026 Chou-Orlandi base OT key v1";

/// Bytes of one compressed point.
pub const POINT_BYTES: usize = 32;

fn random_scalar<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> Scalar {
    let mut wide = Zeroizing::new([0u8; 64]);
    rng.fill_bytes(&mut *wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn kdf(i: usize, s: &[u8], r: &[u8], p: &RistrettoPoint) -> Block {
    let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
    h.update(&(i as u64).to_le_bytes());
    h.update(s);
    h.update(r);
    let mut shared = Zeroizing::new(p.compress().to_bytes());
    h.update(&*shared);
    shared.zeroize();
    let mut out = [0u8; 16];
    h.finalize_xof().fill(&mut out);
    Block::from_bytes(out)
}

/// Decodes point `index` of `message`, refusing invalid encodings and the identity.
fn decode_point(bytes: &[u8], index: usize) -> Result<RistrettoPoint> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| GcError::InvalidPoint { index })?;
    match CompressedRistretto(arr).decompress() {
        Some(p) if p != RistrettoPoint::identity() => Ok(p),
        _ => Err(GcError::InvalidPoint { index }),
    }
}

/// The base-OT sender after sending `S`. Its scalar is wiped on drop.
pub struct BaseSender {
    y: Scalar,
    s: RistrettoPoint,
    s_bytes: [u8; 32],
}

impl Drop for BaseSender {
    fn drop(&mut self) {
        self.y.zeroize();
    }
}

impl std::fmt::Debug for BaseSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BaseSender(..)")
    }
}

impl BaseSender {
    /// Draws `y`; returns the state and the message `S`.
    pub fn new<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> (Self, [u8; 32]) {
        let y = random_scalar(rng);
        let s = &y * RISTRETTO_BASEPOINT_TABLE;
        let s_bytes = s.compress().to_bytes();
        (Self { y, s, s_bytes }, s_bytes)
    }

    /// Both keys of each of the `count` OTs, from the receiver's message (`count` points).
    pub fn finish(self, message: &[u8], count: usize) -> Result<Zeroizing<Vec<[Block; 2]>>> {
        if message.len() != count * POINT_BYTES {
            return Err(GcError::WrongLength {
                message: Message::BaseReceiver,
                expected: count * POINT_BYTES,
                actual: message.len(),
            });
        }
        let mut keys = Zeroizing::new(Vec::with_capacity(count));
        let ys = self.y * self.s;
        for (i, rb) in message.chunks_exact(POINT_BYTES).enumerate() {
            let r = decode_point(rb, i)?;
            let yr = self.y * r;
            keys.push([kdf(i, &self.s_bytes, rb, &yr), kdf(i, &self.s_bytes, rb, &(yr - ys))]);
        }
        Ok(keys)
    }
}

/// The base-OT receiver: from the sender's `S` and its choices, its message (one point per
/// choice) and its keys.
pub fn receive<R: RngCore + CryptoRng + ?Sized>(
    choices: &[bool],
    sender_message: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, Zeroizing<Vec<Block>>)> {
    if sender_message.len() != POINT_BYTES {
        return Err(GcError::WrongLength {
            message: Message::BaseSender,
            expected: POINT_BYTES,
            actual: sender_message.len(),
        });
    }
    let s = decode_point(sender_message, 0)?;
    let mut message = Vec::with_capacity(choices.len() * POINT_BYTES);
    let mut keys = Zeroizing::new(Vec::with_capacity(choices.len()));
    for (i, &c) in choices.iter().enumerate() {
        let mut x = random_scalar(rng);
        // c·S + x·B with a constant-time scalar multiplication by the bit c.
        let r = Scalar::from(u8::from(c)) * s + &x * RISTRETTO_BASEPOINT_TABLE;
        let rb = r.compress().to_bytes();
        keys.push(kdf(i, sender_message, &rb, &(x * s)));
        x.zeroize();
        message.extend_from_slice(&rb);
    }
    Ok((message, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn receiver_gets_the_chosen_key_only() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let choices: Vec<bool> = (0..40).map(|_| rng.random()).collect();
        let (sender, s) = BaseSender::new(&mut rng);
        let (msg, got) = receive(&choices, &s, &mut rng).unwrap();
        let keys = sender.finish(&msg, choices.len()).unwrap();
        for ((k, &c), g) in keys.iter().zip(&choices).zip(got.iter()) {
            assert_eq!(k[usize::from(c)], *g);
            assert_ne!(k[usize::from(!c)], *g);
        }
    }

    #[test]
    fn malformed_points_are_typed_errors() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(10);
        assert!(matches!(receive(&[true], &[0u8; 31], &mut rng), Err(GcError::WrongLength { .. })));
        assert!(matches!(receive(&[true], &[0u8; 32], &mut rng), Err(GcError::InvalidPoint { index: 0 })));
        assert!(matches!(receive(&[true], &[0xffu8; 32], &mut rng), Err(GcError::InvalidPoint { index: 0 })));
        let (sender, _) = BaseSender::new(&mut rng);
        let mut bad = vec![0u8; 64];
        bad[32..].fill(0xff);
        assert!(matches!(sender.finish(&bad, 2), Err(GcError::InvalidPoint { index: 0 })));
    }
}
