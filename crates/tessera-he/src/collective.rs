//! Multiparty BFV: one key shared by several parties, none of whom can decrypt alone.
//!
//! * **Key generation** over a common random polynomial `a`, expanded from a 32-byte seed one
//!   party draws and every party receives. Party `i` keeps its own [`SecretKey`] `s_i` and
//!   publishes `p0_i = e_i − a·s_i` ([`SecretKey::public_key_share`]). The collective key
//!   `(Σ p0_i, a)` ([`PublicKey::collective`]) is a public key for `s = Σ s_i` with error
//!   `e = Σ e_i`; anyone encrypts under it with [`PublicKey::encrypt`].
//! * **Decryption** by a designated *combiner* that holds the ciphertext `(c0, c1)`: it sends
//!   `c1` to every other holder ([`DecryptionRequest`]); holder `i` returns
//!   `h_i = c1·s_i + E_i` with `E_i` uniform in `[−2^b, 2^b)` ([`SecretKey::decryption_share`]);
//!   the combiner adds its own `c1·s_0` and every `h_i` to `c0` and rounds
//!   ([`SecretKey::combine`]). Without one holder's share the phase misses `c1·s_i`, a uniformly
//!   random polynomial for anyone who does not know `s_i`: the result is garbage.
//! * **Smudging** ([`Smudging`]): `b` is [`SMUDGING_BITS`] above a proven worst-case bound on
//!   the ciphertext's noise. The combiner, even together with every holder but one, sees that
//!   noise under the remaining holder's `E_i`, at statistical distance at most `2^−40` per
//!   coefficient (`N·2^−40` per ciphertext); the sum of all `E_i` still leaves the phase
//!   decryptable, which [`Smudging::over`] checks against `q/(2t)` at the ciphertext's level.
//!
//! **Worst-case bounds.** Secrets, errors and encryption randomness are centered binomial of
//! variance 10, so every coefficient lies in `[−20, 20]` ([`SMALL_BOUND`]); the negacyclic
//! product of polynomials with coefficient bounds `x` and `y` has coefficients of at most
//! `N·x·y`. [`fresh_noise_bound`] and [`switched_noise_bound`] give the bounds of a fresh
//! public-key encryption and of a modulus switch under a key of `holders` shares; products
//! with plaintext kernels are bounded by [`ConvPacking`](crate::ConvPacking).
//!
//! Semi-honest parties: a party that chose its key share after seeing the others' (a rogue
//! key) or returned a wrong decryption share is not detected.
//!
//! fhe 0.1.1 has a multiparty module, but its shares cannot leave one process (no
//! serialization) and its decryption shares carry no smudging noise, hence this module on
//! fhe's polynomial API.

use fhe::bfv;
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use rand_core::{CryptoRng, RngCore};
use zeroize::{Zeroize, Zeroizing};

use crate::ciphertext::{Ciphertext, Plaintext};
use crate::error::{HeError, Result};
use crate::keys::{PublicKey, SecretKey};
use crate::params::{HeParams, VARIANCE};
use crate::wire::{read_residues, residues_size, write_residues};

/// Bound on every coefficient of a secret, error or encryption-randomness polynomial: the
/// support of the centered binomial distribution of variance 10.
pub const SMALL_BOUND: f64 = 2.0 * VARIANCE as f64;

/// Bits by which a decryption share's smudging noise exceeds the ciphertext's noise bound.
pub const SMUDGING_BITS: u32 = 40;

/// Worst-case noise of a fresh [`PublicKey::encrypt`] under a collective key of `holders`
/// shares: `e·v + e1 + e2·s`, with `‖e‖∞, ‖s‖∞ ≤ 20·holders` and `‖v‖∞, ‖e1‖∞, ‖e2‖∞ ≤ 20`,
/// plus `½` for the rounding of the scaled message.
pub fn fresh_noise_bound(params: &HeParams, holders: usize) -> f64 {
    let n = params.degree() as f64;
    let key = SMALL_BOUND * holders as f64;
    2.0 * n * key * SMALL_BOUND + SMALL_BOUND + 0.5
}

/// Worst-case noise after switching a ciphertext of noise at most `noise` from `level` to
/// `level + 1` under a key of `holders` shares: `noise / q_dropped` plus the rounding of `c0`
/// and of `c1` times the secret, `(1 + N·‖s‖∞) / 2`.
pub fn switched_noise_bound(params: &HeParams, level: usize, noise: f64, holders: usize) -> f64 {
    let moduli = params.bfv().moduli();
    let dropped = moduli[moduli.len() - 1 - level] as f64;
    noise / dropped + (1.0 + params.degree() as f64 * SMALL_BOUND * holders as f64) / 2.0
}

/// The smudging noise of decryption shares: uniform in `[−2^bits, 2^bits)` per coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smudging {
    bits: u32,
}

impl Smudging {
    /// Smudging [`SMUDGING_BITS`] above `noise_bits` (a proven bound on the noise of the
    /// ciphertexts to decrypt, at `level`), for `holders` key holders (the combiner included,
    /// whose own share carries none). Refused when the phase would no longer decrypt.
    pub fn over(params: &HeParams, level: usize, noise_bits: f64, holders: usize) -> Result<Self> {
        let bits = noise_bits.max(0.0).ceil() as u32 + SMUDGING_BITS;
        let limit = params.decryption_limit_bits(level);
        let total = (noise_bits.exp2() + (holders.saturating_sub(1) as f64) * (bits as f64).exp2()).log2();
        if bits > 62 || total + 1.0 > limit {
            return Err(HeError::NoiseBudget(format!(
                "noise 2^{noise_bits:.1} smudged by 2^{bits} from {} holders reaches 2^{total:.1}; level {level} \
                 decrypts below 2^{limit:.1}",
                holders.saturating_sub(1)
            )));
        }
        Ok(Self { bits })
    }

    /// `b`: the noise is uniform in `[−2^b, 2^b)`.
    pub fn bits(&self) -> u32 {
        self.bits
    }
}

/// What the combiner sends every other key holder to decrypt a ciphertext: its `c1`.
#[derive(Clone, Debug)]
pub struct DecryptionRequest {
    level: usize,
    c1: Poly,
}

/// A key holder's answer to a [`DecryptionRequest`]: `c1·s_i + E_i`, smudged.
#[derive(Clone, Debug)]
pub struct DecryptionShare {
    level: usize,
    h: Poly,
}

impl DecryptionRequest {
    /// The request for `ct`.
    pub fn of(ct: &Ciphertext) -> Self {
        let mut c1 = ct.inner[1].clone();
        c1.change_representation(Representation::Ntt);
        Self { level: ct.level(), c1 }
    }

    /// The level of the ciphertext it belongs to.
    pub fn level(&self) -> usize {
        self.level
    }

    /// The encoded size of a request at `level`.
    pub fn size(params: &HeParams, level: usize) -> usize {
        residues_size(params, level)
    }

    /// Appends the request.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_residues(&self.c1, out);
    }

    /// Reads a request at `level` from exactly [`DecryptionRequest::size`] bytes.
    pub fn read(params: &HeParams, level: usize, bytes: &[u8]) -> Result<Self> {
        Ok(Self { level, c1: read_residues(params, level, Representation::Ntt, "decryption request", bytes)? })
    }
}

impl DecryptionShare {
    /// The encoded size of a share at `level`.
    pub fn size(params: &HeParams, level: usize) -> usize {
        residues_size(params, level)
    }

    /// Appends the share.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_residues(&self.h, out);
    }

    /// Reads a share at `level` from exactly [`DecryptionShare::size`] bytes.
    pub fn read(params: &HeParams, level: usize, bytes: &[u8]) -> Result<Self> {
        Ok(Self { level, h: read_residues(params, level, Representation::Ntt, "decryption share", bytes)? })
    }
}

impl SecretKey {
    /// This party's share of a collective public key over the common polynomial `a`
    /// expanded from `seed`: `(e_i − a·s_i, a)`, itself a valid public key for `s_i` alone.
    pub fn public_key_share<R: RngCore + CryptoRng>(&self, seed: [u8; 32], rng: &mut R) -> Result<PublicKey> {
        PublicKey::from_zero(self.params(), self.encrypt_seeded(None, 0, seed, rng)?)
    }

    /// This party's decryption share of the ciphertext `request` comes from:
    /// `c1·s_i + E_i`, `E_i` uniform in `[−2^b, 2^b)` from `rng`.
    pub fn decryption_share<R: RngCore + CryptoRng>(
        &self,
        request: &DecryptionRequest,
        smudging: Smudging,
        rng: &mut R,
    ) -> Result<DecryptionShare> {
        let level = request.level;
        let ctx = self.params().context(level)?;
        let shift = 63 - smudging.bits;
        let noise: Zeroizing<Vec<i64>> =
            Zeroizing::new((0..self.params().degree()).map(|_| (rng.next_u64() as i64) >> shift).collect());
        let mut e = Poly::try_convert_from(noise.as_slice(), ctx, false, Representation::PowerBasis)?;
        e.change_representation(Representation::Ntt);
        let mut h = &request.c1 * self.s_at(level)?;
        h += &e;
        e.zeroize();
        Ok(DecryptionShare { level, h })
    }

    /// Decrypts `ct` (a coefficient-encoded plaintext, all `N` coefficients) as the combiner:
    /// its own key share applied to `c1`, plus every other holder's `shares`.
    pub fn combine(&self, ct: &Ciphertext, shares: &[&DecryptionShare]) -> Result<Zeroizing<Vec<u64>>> {
        let level = ct.level();
        if let Some(s) = shares.iter().find(|s| s.level != level) {
            return Err(HeError::Level(format!(
                "a decryption share at level {} for a level-{level} ciphertext",
                s.level
            )));
        }
        let mut c0 = ct.inner[0].clone();
        c0.change_representation(Representation::Ntt);
        for s in shares {
            c0 += &s.h;
        }
        let mut c1 = ct.inner[1].clone();
        c1.change_representation(Representation::Ntt);
        let phase = Ciphertext {
            inner: bfv::Ciphertext::new(vec![c0, c1], self.params().bfv())?,
            seed: None,
            level,
            params: self.params().bfv().clone(),
        };
        self.decrypt_coefficients(&phase)
    }
}

impl PublicKey {
    /// The collective public key of the holders whose [`SecretKey::public_key_share`]s these
    /// are: `(Σ p0_i, a)`. Every share must be over the same common polynomial.
    pub fn collective(params: &HeParams, shares: &[PublicKey]) -> Result<Self> {
        let first = shares
            .first()
            .ok_or_else(|| HeError::Malformed { what: "collective public key", reason: "no key shares".into() })?;
        let seed = first.as_ciphertext().seed;
        if shares.iter().any(|s| s.as_ciphertext().seed != seed) {
            return Err(HeError::Malformed {
                what: "collective public key",
                reason: "key shares over different common polynomials".into(),
            });
        }
        let mut sum = first.as_ciphertext().clone();
        for s in &shares[1..] {
            sum.inner[0] += &s.as_ciphertext().inner[0];
        }
        PublicKey::from_zero(params, sum)
    }

    /// A fresh public-key encryption of `pt` (level 0): `(p0·v + e1 + Δ·m, p1·v + e2)` with
    /// `v, e1, e2` small from `rng`.
    pub fn encrypt<R: RngCore + CryptoRng>(&self, pt: &Plaintext, rng: &mut R) -> Result<Ciphertext> {
        let key = self.as_ciphertext();
        if pt.level() != 0 || !std::sync::Arc::ptr_eq(&pt.params, &key.params) {
            return Err(HeError::Level(
                "public-key encryption takes level-0 plaintexts of the key's parameters".into(),
            ));
        }
        let ctx = self.params().context(0)?;
        let v = Zeroizing::new(Poly::small(ctx, Representation::Ntt, VARIANCE, rng)?);
        let mut c0 = v.as_ref() * &key.inner[0];
        let mut c1 = v.as_ref() * &key.inner[1];
        let mut e1 = Poly::small(ctx, Representation::Ntt, VARIANCE, rng)?;
        let mut e2 = Poly::small(ctx, Representation::Ntt, VARIANCE, rng)?;
        c0 += &e1;
        c1 += &e2;
        e1.zeroize();
        e2.zeroize();
        let mut inner = bfv::Ciphertext::new(vec![c0, c1], self.params().bfv())?;
        inner += &pt.inner;
        Ok(Ciphertext { inner, seed: None, level: 0, params: key.params.clone() })
    }
}

#[cfg(test)]
mod tests {
    use num_bigint::BigUint;
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};
    use tessera_field::{seed::os_rng, zt};

    use super::*;
    use crate::linear::{Addend, ConvPacking, SHARE_DIGIT_BITS};
    use crate::wire::Form;

    const HOLDERS: usize = 3;

    struct Holders {
        params: HeParams,
        keys: Vec<SecretKey>,
        public: PublicKey,
    }

    fn holders() -> Holders {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let keys: Vec<SecretKey> = (0..HOLDERS).map(|_| SecretKey::generate(&params, &mut rng).unwrap()).collect();
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        // Each share travels as a public key does.
        let shares: Vec<PublicKey> = keys
            .iter()
            .map(|k| {
                let mut wire = Vec::new();
                k.public_key_share(seed, &mut rng).unwrap().write(&params, &mut wire).unwrap();
                PublicKey::read(&params, &wire).unwrap()
            })
            .collect();
        let public = PublicKey::collective(&params, &shares).unwrap();
        Holders { params, keys, public }
    }

    impl Holders {
        /// Holder 0 combines; the others answer over the wire.
        fn decrypt(&self, ct: &Ciphertext, smudging: Smudging, answering: &[usize]) -> Zeroizing<Vec<u64>> {
            let (level, mut wire) = (ct.level(), Vec::new());
            DecryptionRequest::of(ct).write(&mut wire);
            let request = DecryptionRequest::read(&self.params, level, &wire).unwrap();
            let shares: Vec<DecryptionShare> = answering
                .iter()
                .map(|&i| {
                    let mut out = Vec::new();
                    self.keys[i].decryption_share(&request, smudging, &mut os_rng()).unwrap().write(&mut out);
                    assert_eq!(out.len(), DecryptionShare::size(&self.params, level));
                    DecryptionShare::read(&self.params, level, &out).unwrap()
                })
                .collect();
            self.keys[0].combine(ct, &shares.iter().collect::<Vec<_>>()).unwrap()
        }

        /// `log2 ‖c0 + c1·Σ s_i − Δ·m‖∞` for the coefficients `m` of `ct`'s plaintext.
        fn noise_bits(&self, ct: &Ciphertext, plain: &[u64]) -> u64 {
            let level = ct.level();
            let ctx = self.params.context(level).unwrap();
            let mut phase = ct.inner[0].clone();
            phase.change_representation(Representation::Ntt);
            let mut c1 = ct.inner[1].clone();
            c1.change_representation(Representation::Ntt);
            for k in &self.keys {
                phase += &(&c1 * k.s_at(level).unwrap());
            }
            let zero = Poly::zero(ctx, Representation::Ntt);
            let mut message = bfv::Ciphertext::new(vec![zero.clone(), zero], self.params.bfv()).unwrap();
            message += &Plaintext::encode_coefficients(&self.params, plain, level).unwrap().inner;
            phase -= &message[0];
            phase.change_representation(Representation::PowerBasis);
            let q: &BigUint = ctx.modulus();
            Vec::<BigUint>::from(&phase).iter().map(|c| c.bits().min((q - c).bits())).max().unwrap_or(0)
        }
    }

    fn random_values(n: usize) -> Vec<u64> {
        let mut rng = os_rng();
        (0..n).map(|_| zt::random(&mut rng)).collect()
    }

    #[test]
    fn the_collective_key_decrypts_with_every_share_and_only_then() {
        let h = holders();
        let mut rng = os_rng();
        let n = h.params.degree();
        let m = random_values(n);
        let mut ct = h.public.encrypt(&Plaintext::encode_coefficients(&h.params, &m, 0).unwrap(), &mut rng).unwrap();
        let fresh = h.noise_bits(&ct, &m) as f64;
        let bound = fresh_noise_bound(&h.params, HOLDERS);
        assert!(fresh <= bound.log2(), "fresh noise 2^{fresh}");
        ct.switch_to(1).unwrap();
        let switched = switched_noise_bound(&h.params, 0, bound, HOLDERS).log2();
        assert!(h.noise_bits(&ct, &m) as f64 <= switched);
        let smudging = Smudging::over(&h.params, 1, switched, HOLDERS).unwrap();
        assert_eq!(*h.decrypt(&ct, smudging, &[1, 2]), m);
        // Any holder missing: about every coefficient wrong.
        for missing in [&[1][..], &[2], &[]] {
            let wrong = h.decrypt(&ct, smudging, missing);
            let equal = wrong.iter().zip(&m).filter(|(a, b)| a == b).count();
            assert!(equal < 4, "{equal} of {n} coefficients right without a share");
        }
        // The combiner's own key cannot stand in for another holder's.
        let request = DecryptionRequest::of(&ct);
        let own = h.keys[0].decryption_share(&request, smudging, &mut rng).unwrap();
        let other = h.keys[1].decryption_share(&request, smudging, &mut rng).unwrap();
        assert_ne!(*h.keys[0].combine(&ct, &[&own, &other]).unwrap(), m);
    }

    /// The computation the gateway decrypts in suite seco, on a real layer geometry: three
    /// encrypted mask shares summed, two holders each multiply in a uniform weight share (as
    /// balanced base-2^31 digits) and subtract a uniform mask, switch to level 1, and the sum
    /// is decrypted jointly. The measured noise stays under the proven bound at every step,
    /// the smudged phase carries at least 2^40 times that bound, and the result is exact.
    #[test]
    fn weight_share_products_stay_under_the_bound_and_decrypt_smudged() {
        let h = holders();
        let mut rng = os_rng();
        let geometry = ConvGeometry {
            input: ImageShape::new(8, 10, 10),
            out_channels: 6,
            window: Window2d { kernel: [3, 3], stride: [1, 1], pads: [1, 1, 1, 1] },
        };
        let packing = ConvPacking::plan(&h.params, geometry).unwrap();
        let out = geometry.output().unwrap();
        let u_shares: Vec<Vec<u64>> = (0..HOLDERS).map(|_| random_values(geometry.input.len())).collect();
        let u: Vec<u64> = (0..geometry.input.len()).map(|i| u_shares.iter().fold(0, |s, v| zt::add(s, v[i]))).collect();
        let scale = 1u64 << SHARE_DIGIT_BITS;
        // Every holder encrypts its share and 2^31 times it; the sums are what the weight
        // holders receive.
        let mut sums: [Option<Vec<Ciphertext>>; 2] = [None, None];
        for share in &u_shares {
            for (which, factor) in [1, scale].into_iter().enumerate() {
                let scaled: Vec<u64> = share.iter().map(|&x| zt::mul(x, factor)).collect();
                let cts: Vec<Ciphertext> = packing
                    .encode_input(&h.params, &scaled)
                    .unwrap()
                    .iter()
                    .map(|pt| h.public.encrypt(pt, &mut rng).unwrap())
                    .collect();
                sums[which] = Some(match sums[which].take() {
                    None => cts,
                    Some(mut acc) => {
                        acc.iter_mut().zip(&cts).for_each(|(a, c)| a.add(c).unwrap());
                        acc
                    }
                });
            }
        }
        let [plain_sum, scaled_sum] = sums.map(|s| s.unwrap());
        // Over the wire in full form, as the gateway forwards them.
        let relay = |cts: &[Ciphertext]| -> Vec<Ciphertext> {
            let form = Form::Full { level: 0 };
            cts.iter()
                .map(|ct| {
                    let mut w = Vec::new();
                    ct.write(&h.params, form, &mut w).unwrap();
                    assert_eq!(w.len(), form.size(&h.params));
                    Ciphertext::read(&h.params, form, &w).unwrap()
                })
                .collect()
        };
        let (plain_sum, scaled_sum) = (relay(&plain_sum), relay(&scaled_sum));
        let input_bound = HOLDERS as f64 * fresh_noise_bound(&h.params, HOLDERS);
        let weights: Vec<Vec<u64>> = (0..2).map(|_| random_values(geometry.out_channels * geometry.terms())).collect();
        let masks: Vec<Vec<u64>> = (0..2).map(|_| random_values(out.len())).collect();
        let product_bound = packing.share_product_noise_bound(input_bound);
        let switched_bound = switched_noise_bound(&h.params, 0, product_bound, HOLDERS);
        let mut total: Option<Vec<Ciphertext>> = None;
        for (w, s) in weights.iter().zip(&masks) {
            let minus_s: Vec<u64> = s.iter().map(|&v| zt::neg(v)).collect();
            let mut products = packing
                .evaluate_share(&h.params, &plain_sum, &scaled_sum, w, Addend::PerOutput(&minus_s), &mut rng)
                .unwrap();
            for ct in &mut products {
                ct.switch_to(1).unwrap();
            }
            total = Some(match total.take() {
                None => products,
                Some(mut acc) => {
                    acc.iter_mut().zip(&products).for_each(|(a, c)| a.add(c).unwrap());
                    acc
                }
            });
        }
        let total = total.unwrap();
        let noise_bound = (2.0 * switched_bound).log2();
        let smudging = Smudging::over(&h.params, 1, noise_bound, HOLDERS).unwrap();
        let mut results = Vec::new();
        for ct in &total {
            let coefficients = h.decrypt(ct, smudging, &[1, 2]);
            let noise = h.noise_bits(ct, &coefficients) as f64;
            assert!(noise <= noise_bound, "noise 2^{noise} above the bound 2^{noise_bound:.1}");
            eprintln!("switched noise 2^{noise} (bound 2^{noise_bound:.1}), smudging 2^{}", smudging.bits());
            results.push(coefficients);
        }
        let got = packing.decode_output(&results).unwrap();
        let combined: Vec<u64> = weights[0].iter().zip(&weights[1]).map(|(&a, &b)| zt::add(a, b)).collect();
        let expected: Vec<u64> = reference_conv(&geometry, &u, &combined)
            .iter()
            .enumerate()
            .map(|(i, &y)| zt::sub(zt::sub(y, masks[0][i]), masks[1][i]))
            .collect();
        assert_eq!(got, expected);
        assert!(smudging.bits() as f64 >= noise_bound + SMUDGING_BITS as f64);
    }

    /// `Σ w[o][c][i][j]·x[c][y·s + i − top][x·s + j − left]` over `Z_t`.
    fn reference_conv(g: &ConvGeometry, x: &[u64], w: &[u64]) -> Vec<u64> {
        let out = g.output().unwrap();
        let [kh, kw] = g.window.kernel;
        let [top, left, ..] = g.window.pads;
        let mut y = vec![0u64; out.len()];
        for o in 0..g.out_channels {
            for (oy, ox) in (0..out.h).flat_map(|a| (0..out.w).map(move |b| (a, b))) {
                let mut acc = 0;
                for c in 0..g.input.c {
                    for (i, j) in (0..kh).flat_map(|a| (0..kw).map(move |b| (a, b))) {
                        let (yy, xx) = (
                            (oy * g.window.stride[0] + i) as isize - top as isize,
                            (ox * g.window.stride[1] + j) as isize - left as isize,
                        );
                        if yy < 0 || xx < 0 || yy >= g.input.h as isize || xx >= g.input.w as isize {
                            continue;
                        }
                        let v = x[(c * g.input.h + yy as usize) * g.input.w + xx as usize];
                        acc = zt::add(acc, zt::mul(v, w[((o * g.input.c + c) * kh + i) * kw + j]));
                    }
                }
                y[(o * out.h + oy) * out.w + ox] = acc;
            }
        }
        y
    }

    #[test]
    fn smudging_is_refused_where_it_would_break_decryption() {
        let params = HeParams::standard().unwrap();
        // Level 1 decrypts below about 2^61.9: a noise bound of 2^19 leaves room for two
        // holders' 2^59, one of 2^21 does not.
        assert_eq!(Smudging::over(&params, 1, 19.0, 3).unwrap().bits(), 59);
        assert!(matches!(Smudging::over(&params, 1, 21.0, 3), Err(HeError::NoiseBudget(_))));
        assert!(matches!(Smudging::over(&params, 0, 90.0, 3), Err(HeError::NoiseBudget(_))));
    }

    #[test]
    fn malformed_shares_and_mismatched_keys_are_typed_errors() {
        let h = holders();
        let mut rng = os_rng();
        let ct = h.public.encrypt(&Plaintext::encode_coefficients(&h.params, &[1, 2], 0).unwrap(), &mut rng).unwrap();
        let mut wire = Vec::new();
        DecryptionRequest::of(&ct).write(&mut wire);
        assert!(matches!(DecryptionRequest::read(&h.params, 0, &wire[1..]), Err(HeError::Malformed { .. })));
        assert!(matches!(DecryptionRequest::read(&h.params, 1, &wire), Err(HeError::Malformed { .. })));
        let mut above = wire.clone();
        above[..8].fill(0xff);
        assert!(matches!(DecryptionShare::read(&h.params, 0, &above), Err(HeError::Malformed { .. })));
        assert!(DecryptionShare::read(&h.params, 7, &wire).is_err());
        let smudging = Smudging::over(&h.params, 1, 19.0, HOLDERS).unwrap();
        let request = DecryptionRequest::read(&h.params, 0, &wire).unwrap();
        let share = h.keys[1].decryption_share(&request, smudging, &mut rng).unwrap();
        let mut low = ct.clone();
        low.switch_to(1).unwrap();
        assert!(matches!(h.keys[0].combine(&low, &[&share]), Err(HeError::Level(_))));
        assert!(matches!(Smudging::over(&h.params, 0, 30.0, HOLDERS), Err(HeError::NoiseBudget(_))));
        // Key shares over different common polynomials do not combine.
        let other = h.keys[1].public_key_share([7; 32], &mut rng).unwrap();
        let first = h.keys[0].public_key_share([8; 32], &mut rng).unwrap();
        assert!(matches!(PublicKey::collective(&h.params, &[first, other]), Err(HeError::Malformed { .. })));
        assert!(matches!(PublicKey::collective(&h.params, &[]), Err(HeError::Malformed { .. })));
        assert!(matches!(
            h.public.encrypt(&Plaintext::encode_coefficients(&h.params, &[1], 1).unwrap(), &mut rng),
            Err(HeError::Level(_))
        ));
        let mut full = Vec::new();
        assert!(matches!(ct.write(&h.params, Form::Full { level: 1 }, &mut full), Err(HeError::Level(_))));
        ct.write(&h.params, Form::Full { level: 0 }, &mut full).unwrap();
        assert!(matches!(
            Ciphertext::read(&h.params, Form::Full { level: 0 }, &full[2..]),
            Err(HeError::Malformed { .. })
        ));
    }
}
