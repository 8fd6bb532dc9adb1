//! Key pairs. Each party that owns data under HE holds a [`SecretKey`]; its [`PublicKey`] lets a
//! peer re-randomize ciphertexts it returns (circuit privacy).
//!
//! Encryption with the secret key is done here rather than by fhe, because fhe keeps the seed of
//! `c1` private: the seed is what lets a fresh ciphertext travel at half size.

use std::fmt;
use std::sync::Arc;

use fhe::bfv::{self, Encoding};
use fhe::proto::bfv::SecretKey as SecretKeyProto;
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::{FheDecoder, FheDecrypter, Serialize};
use num_bigint::BigUint;
use prost::Message;
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::ciphertext::{Ciphertext, Plaintext};
use crate::error::{HeError, Result};
use crate::params::{HeParams, VARIANCE};
use crate::wire::write_returned;

/// A BFV secret key, with its polynomial in NTT form at every level. Redacted in `Debug`,
/// wiped on drop.
pub struct SecretKey {
    params: HeParams,
    key: bfv::SecretKey,
    /// `s` at level `l`, NTT form.
    s: Vec<Poly>,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.s.iter_mut().for_each(Zeroize::zeroize);
    }
}

impl SecretKey {
    /// A fresh key from `rng` (a CSPRNG), coefficients centered binomial of variance 10.
    pub fn generate<R: RngCore + CryptoRng>(params: &HeParams, rng: &mut R) -> Result<Self> {
        let key = bfv::SecretKey::random(params.bfv(), rng);
        // fhe exposes the coefficients only through its serialization.
        let mut bytes = Zeroizing::new(key.to_bytes());
        let mut proto = SecretKeyProto::decode(bytes.as_slice())
            .map_err(|e| HeError::Library(format!("secret key encoding: {e}")))?;
        bytes.zeroize();
        let coeffs = Zeroizing::new(std::mem::take(&mut proto.coeffs));
        let mut s = Vec::new();
        for level in 0..=params.return_level() {
            let mut p =
                Poly::try_convert_from(coeffs.as_slice(), params.context(level)?, false, Representation::PowerBasis)?;
            p.change_representation(Representation::Ntt);
            s.push(p);
        }
        Ok(Self { params: params.clone(), key, s })
    }

    /// The parameters.
    pub fn params(&self) -> &HeParams {
        &self.params
    }

    pub(crate) fn s_at(&self, level: usize) -> Result<&Poly> {
        self.s.get(level).ok_or_else(|| HeError::Level(format!("no key at level {level}")))
    }

    /// `(c0, c1) = (e − a·s + Δ·m, a)` with `a` expanded from a fresh 32-byte seed.
    fn encrypt_poly<R: RngCore + CryptoRng>(
        &self,
        pt: Option<&Plaintext>,
        level: usize,
        rng: &mut R,
    ) -> Result<Ciphertext> {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        self.encrypt_seeded(pt, level, seed, rng)
    }

    /// `(c0, c1) = (e − a·s + Δ·m, a)` with `a` expanded from `seed`.
    pub(crate) fn encrypt_seeded<R: RngCore + CryptoRng>(
        &self,
        pt: Option<&Plaintext>,
        level: usize,
        seed: [u8; 32],
        rng: &mut R,
    ) -> Result<Ciphertext> {
        let ctx = self.params.context(level)?;
        let a = Poly::random_from_seed(ctx, Representation::Ntt, seed);
        let mut b = Poly::small(ctx, Representation::Ntt, VARIANCE, rng)?;
        b -= &Zeroizing::new(&a * self.s_at(level)?);
        let mut inner = bfv::Ciphertext::new(vec![b, a], self.params.bfv())?;
        if let Some(pt) = pt {
            inner += &pt.inner;
        }
        Ok(Ciphertext { inner, seed: Some(seed), level, params: self.params.bfv().clone() })
    }

    /// A fresh, seeded encryption of `pt` (at its level).
    pub fn encrypt<R: RngCore + CryptoRng>(&self, pt: &Plaintext, rng: &mut R) -> Result<Ciphertext> {
        self.encrypt_poly(Some(pt), pt.level(), rng)
    }

    /// Encodes and encrypts `values` at level 0.
    pub fn encrypt_values<R: RngCore + CryptoRng>(&self, values: &[u64], rng: &mut R) -> Result<Ciphertext> {
        let pt = Plaintext::encode(&self.params, values, 0)?;
        self.encrypt(&pt, rng)
    }

    /// The public key: a fresh encryption of zero, kept at level 0 and at the return level.
    pub fn public_key<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Result<PublicKey> {
        PublicKey::from_zero(&self.params, self.encrypt_poly(None, 0, rng)?)
    }

    /// Decrypts and decodes all `N` slots.
    pub fn decrypt(&self, ct: &Ciphertext) -> Result<Zeroizing<Vec<u64>>> {
        let pt = self.key.try_decrypt(&ct.inner)?;
        Ok(Zeroizing::new(Vec::<u64>::try_decode(&pt, Encoding::simd())?))
    }

    /// Decrypts a ciphertext of a coefficient-encoded plaintext: all `N` coefficients.
    pub fn decrypt_coefficients(&self, ct: &Ciphertext) -> Result<Zeroizing<Vec<u64>>> {
        let pt = self.key.try_decrypt(&ct.inner)?;
        Ok(Zeroizing::new(Vec::<u64>::try_decode(&pt, Encoding::poly_at_level(ct.level()))?))
    }

    /// `log2 ‖c0 + c1·s − Δ·m‖∞`: the noise of `ct` in bits (diagnostics and tests only; the
    /// party that owns the key may always compute it).
    pub fn noise_bits(&self, ct: &Ciphertext) -> Result<u64> {
        let level = ct.level();
        let pt = self.key.try_decrypt(&ct.inner)?;
        let ctx = self.params.context(level)?;
        let mut phase = ct.inner[0].clone();
        phase += &(&ct.inner[1] * self.s_at(level)?);
        let zero = Poly::zero(ctx, Representation::Ntt);
        let mut message = bfv::Ciphertext::new(vec![zero.clone(), zero], self.params.bfv())?;
        message += &pt;
        phase -= &message[0];
        phase.change_representation(Representation::PowerBasis);
        let q: &BigUint = ctx.modulus();
        Ok(Vec::<BigUint>::from(&phase).iter().map(|c| c.bits().min((q - c).bits())).max().unwrap_or(0))
    }
}

/// A public key: an encryption of zero `(p0, p1) = (e − a·s, a)`. It lets its holder
/// re-randomize a ciphertext under this key, with flooding noise, before returning it.
#[derive(Clone, Debug)]
pub struct PublicKey {
    params: HeParams,
    /// Level 0, seeded: what travels.
    fresh: Ciphertext,
    /// The same key switched to the return level.
    at_return: Ciphertext,
}

impl PublicKey {
    /// The key from its level-0 encryption of zero.
    pub(crate) fn from_zero(params: &HeParams, fresh: Ciphertext) -> Result<Self> {
        if fresh.level() != 0 || !fresh.is_seeded() {
            return Err(HeError::Malformed { what: "public key", reason: "not a fresh level-0 ciphertext".into() });
        }
        let mut at_return = fresh.clone();
        at_return.switch_to(params.return_level())?;
        Ok(Self { params: params.clone(), fresh, at_return })
    }

    /// The parameters.
    pub(crate) fn params(&self) -> &HeParams {
        &self.params
    }

    /// The key as sent: a seeded level-0 ciphertext.
    pub fn as_ciphertext(&self) -> &Ciphertext {
        &self.fresh
    }

    /// Seals `ct` for its return to the key owner and appends it in the returned wire form:
    /// switches it to the return level, adds a fresh public-key encryption of zero
    /// `(u·p0 + E, u·p1 + e)` with `u, e` small and `E` uniform in `±2^flood_bits`, and rounds
    /// it. Afterwards `c1` is independent of how `ct` was computed and the flooding hides the
    /// computation's noise (which must stay below `2^mask_noise_bits`) to statistical distance
    /// `2^−(flood − mask)`; the usual small `e1` on `c0` would vanish in `E`, so it is left out.
    /// Everything runs in the power basis once `ct` is there: two inverse transforms for the
    /// fresh encryption of zero are all it adds.
    pub fn seal<R: RngCore + CryptoRng>(&self, ct: &Ciphertext, rng: &mut R, out: &mut Vec<u8>) -> Result<()> {
        let level = self.params.return_level();
        if ct.level() > level {
            return Err(HeError::Level(format!("a ciphertext at level {} is below the return level", ct.level())));
        }
        if !Arc::ptr_eq(&ct.params, self.params.bfv()) {
            return Err(HeError::Level("a ciphertext from another parameter instance".into()));
        }
        let ctx = self.params.context(level)?;
        let mut c = [ct.inner[0].clone(), ct.inner[1].clone()];
        for p in &mut c {
            p.change_representation(Representation::PowerBasis);
            for _ in ct.level()..level {
                p.switch_down()?;
            }
        }
        let u = Zeroizing::new(Poly::small(ctx, Representation::Ntt, VARIANCE, rng)?);
        let mut r0 = u.as_ref() * &self.at_return.inner[0];
        let mut r1 = u.as_ref() * &self.at_return.inner[1];
        r0.change_representation(Representation::PowerBasis);
        r1.change_representation(Representation::PowerBasis);
        let shift = 63 - self.params.noise().flood_bits;
        let flood: Zeroizing<Vec<i64>> =
            Zeroizing::new((0..self.params.degree()).map(|_| (rng.next_u64() as i64) >> shift).collect());
        r0 += &Poly::try_convert_from(flood.as_slice(), ctx, false, Representation::PowerBasis)?;
        let mut e = Poly::small(ctx, Representation::PowerBasis, VARIANCE, rng)?;
        r1 += &e;
        e.zeroize();
        c[0] += &r0;
        c[1] += &r1;
        write_returned(&self.params, [&c[0], &c[1]], out);
        c.iter_mut().for_each(Zeroize::zeroize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use tessera_field::{seed::os_rng, zt};

    use super::*;
    use crate::wire::Form;

    fn random_values(n: usize) -> Vec<u64> {
        let mut rng = os_rng();
        (0..n).map(|_| zt::random(&mut rng)).collect()
    }

    /// The deepest computation a masker performs on a ciphertext it returns: a fresh
    /// encryption, `+ pt`, `× pt` with full-range plaintexts, modulus switching; then
    /// re-randomization with flooding and the rounded wire form. The mask-dependent noise stays
    /// under the layout's bound, flooding lifts it by at least 40 bits, and the result still
    /// decrypts exactly.
    #[test]
    fn noise_budget_of_the_deepest_computation_with_flooding() {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let sk = SecretKey::generate(&params, &mut rng).unwrap();
        let pk = PublicKey::read(&params, &{
            let mut b = Vec::new();
            sk.public_key(&mut rng).unwrap().write(&params, &mut b).unwrap();
            b
        })
        .unwrap();
        let n = params.degree();
        let noise = params.noise();
        for _ in 0..3 {
            let (x, y, k) = (random_values(n), random_values(n), random_values(n));
            let mut ct = sk.encrypt_values(&x, &mut rng).unwrap();
            assert!(sk.noise_bits(&ct).unwrap() <= 16);
            ct.add_plain(&Plaintext::encode(&params, &y, 0).unwrap()).unwrap();
            ct.mul_plain(&Plaintext::encode(&params, &k, 0).unwrap()).unwrap();
            let product = sk.noise_bits(&ct).unwrap();
            assert!(product as f64 + 2.0 < params.decryption_limit_bits(0), "product noise {product}");
            let mut switched = ct.clone();
            switched.switch_to(params.return_level()).unwrap();
            let mask_noise = sk.noise_bits(&switched).unwrap();
            assert!(mask_noise <= noise.mask_noise_bits as u64, "mask-dependent noise 2^{mask_noise}");
            // Unsealed but rounded: the wire rounding alone stays far below the flooding.
            let mut wire = Vec::new();
            switched.write(&params, Form::Returned, &mut wire).unwrap();
            let rounded = sk.noise_bits(&Ciphertext::read(&params, Form::Returned, &wire).unwrap()).unwrap();
            wire.clear();
            pk.seal(&ct, &mut rng, &mut wire).unwrap();
            assert_eq!(wire.len(), Form::Returned.size(&params));
            let back = Ciphertext::read(&params, Form::Returned, &wire).unwrap();
            let total = sk.noise_bits(&back).unwrap();
            assert!(total >= mask_noise + 40, "sealed 2^{total} over 2^{mask_noise}");
            assert!((total as f64) + 1.0 < params.decryption_limit_bits(params.return_level()), "total 2^{total}");
            eprintln!("noise bits: product {product}, switched {mask_noise}, rounded {rounded}, sealed {total}");
            let expected: Vec<u64> = x.iter().zip(&y).zip(&k).map(|((&x, &y), &k)| zt::mul(zt::add(x, y), k)).collect();
            assert_eq!(*sk.decrypt(&back).unwrap(), expected);
        }
    }

    /// The flooding noise is what the key owner sees: two sealings of the same ciphertext
    /// differ in `c1` and in noise, and its size does not depend on the masks.
    #[test]
    fn sealed_ciphertexts_are_fresh() {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let sk = SecretKey::generate(&params, &mut rng).unwrap();
        let pk = sk.public_key(&mut rng).unwrap();
        let ct = sk.encrypt_values(&random_values(16), &mut rng).unwrap();
        let sealed = |ct: &Ciphertext| {
            let mut wire = Vec::new();
            pk.seal(ct, &mut os_rng(), &mut wire).unwrap();
            Ciphertext::read(&params, Form::Returned, &wire).unwrap()
        };
        let (a, b) = (sealed(&ct), sealed(&ct));
        let mut plain = ct.clone();
        plain.switch_to(params.return_level()).unwrap();
        assert_ne!(a.inner[1], b.inner[1]);
        assert_ne!(a.inner[1], plain.inner[1]);
        let flood = params.noise().flood_bits as u64;
        // Flooding plus the wire rounding of c0 (2^57) and c1 (≈ 2^55 after the secret).
        for c in [&a, &b] {
            let bits = sk.noise_bits(c).unwrap();
            assert!((flood..=flood + 2).contains(&bits), "noise 2^{bits}");
        }
        assert_eq!(sk.decrypt(&a).unwrap(), sk.decrypt(&b).unwrap());
    }

    #[test]
    fn seeded_ciphertexts_round_trip_at_half_size() {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let sk = SecretKey::generate(&params, &mut rng).unwrap();
        let x = random_values(1000);
        let ct = sk.encrypt_values(&x, &mut rng).unwrap();
        let mut wire = Vec::new();
        ct.write(&params, Form::Seeded, &mut wire).unwrap();
        assert_eq!(wire.len(), 32 + 3 * 8192 * 62 / 8);
        let back = Ciphertext::read(&params, Form::Seeded, &wire).unwrap();
        assert_eq!(&sk.decrypt(&back).unwrap()[..1000], &x[..]);
        assert!(sk.decrypt(&back).unwrap()[1000..].iter().all(|&v| v == 0));
        // An operated-on ciphertext has no seed any more.
        let mut changed = ct.clone();
        changed.mul_plain(&Plaintext::encode(&params, &x, 0).unwrap()).unwrap();
        assert!(matches!(changed.write(&params, Form::Seeded, &mut Vec::new()), Err(HeError::Level(_))));
        assert_eq!(format!("{sk:?}"), "SecretKey(redacted)");
    }

    #[test]
    fn malformed_ciphertexts_and_mismatches_are_typed_errors() {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let sk = SecretKey::generate(&params, &mut rng).unwrap();
        let ct = sk.encrypt_values(&[1, 2, 3], &mut rng).unwrap();
        let mut wire = Vec::new();
        ct.write(&params, Form::Seeded, &mut wire).unwrap();
        for bad in [&wire[..wire.len() - 1], &[][..], &wire[..100]] {
            assert!(matches!(Ciphertext::read(&params, Form::Seeded, bad), Err(HeError::Malformed { .. })));
        }
        let mut above = wire.clone();
        above[32..40].fill(0xff);
        assert!(matches!(Ciphertext::read(&params, Form::Seeded, &above), Err(HeError::Malformed { .. })));
        let mut garbled = wire.clone();
        rng.fill(&mut garbled[40..80]);
        // Garbled residues below their primes are a valid (wrong) ciphertext, never a panic.
        let _ = Ciphertext::read(&params, Form::Seeded, &garbled);
        let returned = vec![0xffu8; Form::Returned.size(&params)];
        assert!(matches!(Ciphertext::read(&params, Form::Returned, &returned), Err(HeError::Malformed { .. })));
        assert!(matches!(PublicKey::read(&params, &wire[1..]), Err(HeError::Malformed { .. })));
        let mut low = ct.clone();
        low.switch_to(1).unwrap();
        let pt = Plaintext::encode(&params, &[5], 0).unwrap();
        assert!(matches!(low.mul_plain(&pt), Err(HeError::Level(_))));
        assert!(matches!(low.switch_to(0), Err(HeError::Level(_))));
        assert!(matches!(ct.write(&params, Form::Returned, &mut Vec::new()), Err(HeError::Level(_))));
        assert!(matches!(Plaintext::encode(&params, &[zt::T], 0), Err(HeError::Encoding(_))));
        assert!(matches!(Plaintext::encode(&params, &vec![0; 8193], 0), Err(HeError::Encoding(_))));
    }
}
