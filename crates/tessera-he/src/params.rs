//! The BFV parameter set: ring degree, ciphertext primes, plaintext modulus `t` (Tessera's
//! field), and the noise budget of the deepest computation the suites perform, flooding and
//! ciphertext compression included. Every check that fhe 0.1.1 leaves out is made here.

use std::fmt;
use std::sync::Arc;

use fhe::bfv::{BfvParameters, BfvParametersBuilder};
use fhe_math::rq::Context;
use fhe_math::zq::primes::generate_prime;
use tessera_field::zt;

use crate::error::{HeError, Result};

/// Largest `log2 q` for 128-bit classical security per ring degree: the HE standard's table
/// (Albrecht et al., "Homomorphic Encryption Security Standard", 2018, Table 1, secrets from
/// the error distribution or ternary; the rows are equal at these degrees).
const HE_STANDARD_128: [(usize, u32); 6] =
    [(1024, 27), (2048, 54), (4096, 109), (8192, 218), (16384, 438), (32768, 881)];

/// Centered-binomial variance of secrets and errors (fhe's default; σ ≈ 3.2).
pub const VARIANCE: usize = 10;

/// Noise layout of the ciphertexts a masker returns, all at the return level (two primes):
/// the mask-dependent noise left after the few ciphertext × plaintext products a masker sums and
/// modulus switching
/// (`MASK_NOISE_BITS`, a bound the tests check), flooding noise uniform in `±2^FLOOD_BITS`, and
/// the rounding of `c0` and `c1` to multiples of `2^C0_DROP_BITS` and `2^C1_DROP_BITS` on the
/// wire. Their sum must stay below `q_L / (2t)`, the decryption limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseLayout {
    /// Bound on the mask-dependent noise of a returned ciphertext before flooding (bits).
    pub mask_noise_bits: u32,
    /// Flooding noise (bits): uniform in `[−2^b, 2^b]`.
    pub flood_bits: u32,
    /// Low bits of `c0` dropped on the wire.
    pub c0_drop_bits: u32,
    /// Low bits of `c1` dropped on the wire (their error is multiplied by the secret).
    pub c1_drop_bits: u32,
}

impl NoiseLayout {
    /// Statistical distance bits of the flooding: `flood_bits − mask_noise_bits`.
    pub fn smudging_bits(&self) -> u32 {
        self.flood_bits.saturating_sub(self.mask_noise_bits)
    }

    /// A high-probability bound (bits) on the total noise of a returned ciphertext: mask noise,
    /// flooding, `c0` rounding, and `c1` rounding times the secret (a sum of `N` terms of
    /// variance `2^(2(d−1))/3 · VARIANCE`, bounded at 7.5 standard deviations, a tail below
    /// `2^−40` per coefficient).
    pub fn total_bits(&self, degree: usize) -> f64 {
        let c1_std = ((self.c1_drop_bits - 1) as f64).exp2() * ((degree * VARIANCE) as f64 / 3.0).sqrt();
        let total = (self.mask_noise_bits as f64).exp2()
            + (self.flood_bits as f64).exp2()
            + ((self.c0_drop_bits - 1) as f64).exp2()
            + 7.5 * c1_std;
        total.log2()
    }
}

/// The standard layout. The mask-dependent noise after `m` full-range ciphertext × plaintext
/// products summed and the switch to two primes is at most
/// `m·N·(‖e‖∞ + ½)·t / q_3 + (1 + N·‖s‖∞)/2` (worst case, `‖e‖∞, ‖s‖∞ ≤ 20` for the centered
/// binomial of variance 10; `fhe` lifts plaintext coefficients to `[0, t)`, so `t`, not `t/2`):
/// `2^17.34` for one product, `2^18.67` for the four of a 2 × 2 max pool, bounded here by `2^19`;
/// flooding at `2^60` leaves at least 41 bits of smudging per coefficient.
pub const NOISE: NoiseLayout = NoiseLayout { mask_noise_bits: 19, flood_bits: 60, c0_drop_bits: 57, c1_drop_bits: 47 };

/// BFV parameters over `Z_t`, validated, shared by every key and ciphertext of a deployment.
#[derive(Clone)]
pub struct HeParams {
    bfv: Arc<BfvParameters>,
    noise: NoiseLayout,
}

impl fmt::Debug for HeParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeParams")
            .field("degree", &self.degree())
            .field("moduli", &self.bfv.moduli())
            .field("t", &self.bfv.plaintext())
            .field("noise", &self.noise)
            .finish()
    }
}

impl HeParams {
    /// Tessera's set: `N = 8192`, three 62-bit primes (`log2 q = 186 ≤ 218`, 128-bit secure),
    /// `t = 2^61 − 2031615` (prime, `≡ 1 mod 2^16`: `N` SIMD slots).
    pub fn standard() -> Result<Self> {
        Self::new(8192, &[62, 62, 62], zt::T, NOISE)
    }

    /// Builds and checks a parameter set: security against the HE standard, `t` below every
    /// ciphertext prime, SIMD batching, and the noise layout of the suites at the last level.
    pub fn new(degree: usize, moduli_bits: &[usize], t: u64, noise: NoiseLayout) -> Result<Self> {
        let log_q: u32 = moduli_bits.iter().map(|&b| b as u32).sum();
        let max_log_q = HE_STANDARD_128
            .iter()
            .find(|(n, _)| *n == degree)
            .map(|&(_, b)| b)
            .ok_or_else(|| HeError::Encoding(format!("unsupported ring degree {degree}")))?;
        if log_q > max_log_q {
            return Err(HeError::Insecure { degree, log_q, max_log_q });
        }
        if !fhe_util::is_prime(t) || t % (2 * degree as u64) != 1 {
            return Err(HeError::NoBatching { t, degree });
        }
        if moduli_bits.len() < 2 {
            return Err(HeError::NoiseBudget("at least two ciphertext primes are needed".into()));
        }
        let moduli = ntt_primes(moduli_bits, degree)?;
        // fhe builds (and panics inside) before anyone could compare t with the primes.
        if let Some((index, &q)) = moduli.iter().enumerate().find(|(_, q)| **q <= t) {
            return Err(HeError::PlaintextModulusTooLarge { t, q, index });
        }
        let bfv = BfvParametersBuilder::new()
            .set_degree(degree)
            .set_plaintext_modulus(t)
            .set_moduli(&moduli)
            .set_variance(VARIANCE)
            .build_arc()?;
        if noise.flood_bits > 62 || !(4..=64).contains(&noise.c0_drop_bits) || !(4..=64).contains(&noise.c1_drop_bits) {
            return Err(HeError::NoiseBudget(format!("unusable noise layout {noise:?}")));
        }
        let params = Self { bfv, noise };
        let limit = params.decryption_limit_bits(params.return_level());
        let total = noise.total_bits(degree);
        if total + 1.0 > limit {
            return Err(HeError::NoiseBudget(format!(
                "returned ciphertexts carry up to 2^{total:.1} of noise, the return level decrypts below 2^{limit:.1}"
            )));
        }
        if noise.smudging_bits() < 40 {
            return Err(HeError::NoiseBudget(format!("only {} bits of smudging", noise.smudging_bits())));
        }
        Ok(params)
    }

    /// The fhe parameters.
    pub fn bfv(&self) -> &Arc<BfvParameters> {
        &self.bfv
    }

    /// Ring degree `N` (slots per ciphertext).
    pub fn degree(&self) -> usize {
        self.bfv.degree()
    }

    /// The plaintext modulus.
    pub fn t(&self) -> u64 {
        self.bfv.plaintext()
    }

    /// The noise layout of returned ciphertexts.
    pub fn noise(&self) -> NoiseLayout {
        self.noise
    }

    /// The level with two primes left: where returned ciphertexts travel (one prime cannot hold
    /// a 61-bit `t` with any noise).
    pub fn return_level(&self) -> usize {
        self.bfv.moduli().len() - 2
    }

    /// The ring context at `level`.
    pub fn context(&self, level: usize) -> Result<&Arc<Context>> {
        Ok(self.bfv.context_at_level(level)?)
    }

    /// `log2 (q_level / (2t))`: ciphertexts at `level` decrypt correctly while their noise stays
    /// below this.
    pub fn decryption_limit_bits(&self, level: usize) -> f64 {
        let primes = self.bfv.moduli().len() - level;
        let log_q: f64 = self.bfv.moduli()[..primes].iter().map(|&q| (q as f64).log2()).sum();
        log_q - (self.t() as f64).log2() - 1.0
    }

    /// Bits of the ciphertext modulus at `level`.
    pub fn modulus_bits(&self, level: usize) -> u32 {
        let primes = self.bfv.moduli().len() - level;
        self.bfv.moduli()[..primes].iter().map(|&q| 64 - q.leading_zeros()).sum()
    }
}

/// Distinct NTT-friendly primes (`≡ 1 mod 2N`) of the given sizes, each the largest below
/// `2^bits` not taken yet: deterministic, so every party derives the same chain.
fn ntt_primes(bits: &[usize], degree: usize) -> Result<Vec<u64>> {
    let mut primes: Vec<u64> = Vec::with_capacity(bits.len());
    for &b in bits {
        if !(10..=62).contains(&b) {
            return Err(HeError::Encoding(format!("ciphertext primes of {b} bits")));
        }
        let mut upper = 1u64 << b;
        let prime = loop {
            let p = generate_prime(b, 2 * degree as u64, upper)
                .ok_or_else(|| HeError::Encoding(format!("not enough {b}-bit NTT primes")))?;
            if !primes.contains(&p) {
                break p;
            }
            upper = p;
        };
        primes.push(prime);
    }
    Ok(primes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_set_is_secure_and_batches() {
        let p = HeParams::standard().unwrap();
        assert_eq!(p.degree(), 8192);
        assert_eq!(p.modulus_bits(0), 186);
        assert!(p.bfv().moduli().iter().all(|&q| q > zt::T && q < 1 << 62));
        assert_eq!(p.return_level(), 1);
        assert!(p.decryption_limit_bits(1) > 61.9);
        assert!(NOISE.total_bits(8192) + 1.0 < p.decryption_limit_bits(1));
        assert_eq!(NOISE.smudging_bits(), 41);
    }

    #[test]
    fn bad_sets_are_refused_with_the_reason() {
        // Over the 218 bits of N = 8192.
        assert!(matches!(
            HeParams::new(8192, &[62, 62, 62, 40], zt::T, NOISE),
            Err(HeError::Insecure { log_q: 226, max_log_q: 218, .. })
        ));
        // t above a ciphertext prime: fhe alone would decrypt garbage.
        assert!(matches!(
            HeParams::new(8192, &[62, 55, 62], zt::T, NOISE),
            Err(HeError::PlaintextModulusTooLarge { index: 1, .. })
        ));
        // Not ≡ 1 mod 2N.
        assert!(matches!(HeParams::new(8192, &[62, 62, 62], 1_000_000_007, NOISE), Err(HeError::NoBatching { .. })));
        // Less than 40 bits of smudging, or more noise than the last level can hold.
        let weak = NoiseLayout { flood_bits: 50, ..NOISE };
        assert!(matches!(HeParams::new(8192, &[62, 62, 62], zt::T, weak), Err(HeError::NoiseBudget(_))));
        let loud = NoiseLayout { c1_drop_bits: 56, ..NOISE };
        assert!(matches!(HeParams::new(8192, &[62, 62, 62], zt::T, loud), Err(HeError::NoiseBudget(_))));
        for broken in [
            NoiseLayout { c0_drop_bits: 0, ..NOISE },
            NoiseLayout { c1_drop_bits: 2, ..NOISE },
            NoiseLayout { flood_bits: 63, ..NOISE },
        ] {
            assert!(matches!(HeParams::new(8192, &[62, 62, 62], zt::T, broken), Err(HeError::NoiseBudget(_))));
        }
    }
}
