//! The seeds the user shares with each remote server, agreed by X25519 through the gateway.
//!
//! The user and a remote server each draw an ephemeral X25519 key per query; the gateway
//! relays the public keys (semi-honest, it relays them faithfully). The shared point, both
//! public keys and the query's session id go through BLAKE3's key derivation into one seed,
//! from which [`Seed::derive`] draws the streams: the remote server's share of the cut value
//! ([`Purpose::InputShare`]) and the pad over its logit share ([`Purpose::OutputPad`]).
//! Written here on `curve25519-dalek` (already the base OT's curve crate) rather than with
//! another crate, since the agreement is one clamped scalar multiplication.

use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::{CryptoRng, RngCore};
use tessera_field::Seed;
use tessera_net::SessionId;
use zeroize::Zeroizing;

const KDF_CONTEXT: &str = "tessera 2026-12 seco user-remote seed v1";

/// Bytes of an X25519 public key.
pub(crate) const PUBLIC_BYTES: usize = 32;

/// One party's ephemeral X25519 key for one query. `Debug` redacted; the scalar is wiped.
pub(crate) struct Ephemeral {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; PUBLIC_BYTES],
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ephemeral(redacted)")
    }
}

impl Ephemeral {
    /// A fresh key from `rng` (a CSPRNG).
    pub(crate) fn new<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(secret.as_mut());
        let public = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
        Self { secret, public }
    }

    /// The public key.
    pub(crate) fn public(&self) -> [u8; PUBLIC_BYTES] {
        self.public
    }

    /// The seed shared with the holder of `peer`, for query `session`; `user` and `remote` are
    /// the two public keys in that order (one of them this key's). `None` when `peer` is a
    /// point of small order (the shared point would be known to anyone).
    pub(crate) fn agree(
        &self,
        peer: [u8; PUBLIC_BYTES],
        session: SessionId,
        user: [u8; PUBLIC_BYTES],
        remote: [u8; PUBLIC_BYTES],
    ) -> Option<Seed> {
        let shared = Zeroizing::new(MontgomeryPoint(peer).mul_clamped(*self.secret).to_bytes());
        if shared.iter().all(|&b| b == 0) {
            return None;
        }
        let mut h = blake3::Hasher::new_derive_key(KDF_CONTEXT);
        h.update(shared.as_ref());
        h.update(&session.0);
        h.update(&user);
        h.update(&remote);
        let seed = Seed::from_bytes(*h.finalize().as_bytes());
        zeroize::Zeroize::zeroize(&mut h);
        Some(seed)
    }
}

#[cfg(test)]
mod tests {
    use tessera_field::seed::os_rng;

    use super::*;

    #[test]
    fn both_ends_agree_and_nobody_else_does() {
        let mut rng = os_rng();
        let (u, b, c) = (Ephemeral::new(&mut rng), Ephemeral::new(&mut rng), Ephemeral::new(&mut rng));
        let session = SessionId::random();
        let at_user = u.agree(b.public(), session, u.public(), b.public()).unwrap();
        let at_b = b.agree(u.public(), session, u.public(), b.public()).unwrap();
        assert_eq!(at_user, at_b);
        let with_c = u.agree(c.public(), session, u.public(), c.public()).unwrap();
        assert_ne!(at_user, with_c);
        // Another query, or the gateway's own key in the middle, gives another seed.
        assert_ne!(at_user, u.agree(b.public(), SessionId::random(), u.public(), b.public()).unwrap());
        assert_ne!(at_user, c.agree(b.public(), session, u.public(), b.public()).unwrap());
        // A small-order point is refused.
        assert!(u.agree([0; 32], session, u.public(), [0; 32]).is_none());
        assert_eq!(format!("{u:?}"), "Ephemeral(redacted)");
    }
}
