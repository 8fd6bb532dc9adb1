//! Plaintexts (`Z_t` vectors in SIMD slots or in coefficients) and ciphertexts, with the few operations the suites
//! need: ciphertext ± plaintext, ciphertext × plaintext, ciphertext + ciphertext, and
//! modulus switching. Every level mismatch is a typed error (fhe asserts instead).

use std::fmt;
use std::sync::Arc;

use fhe::bfv::{self, BfvParameters, Encoding};
use fhe_traits::FheEncoder;

use crate::error::{HeError, Result};
use crate::params::HeParams;

/// A vector of up to `N` elements of `Z_t`, in SIMD slots or in coefficients, at one level.
pub struct Plaintext {
    pub(crate) inner: bfv::Plaintext,
    pub(crate) params: Arc<BfvParameters>,
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext(level {}, values redacted)", self.inner.level())
    }
}

impl Plaintext {
    /// Encodes `values` (each below `t`, at most `N`; missing slots are zero) at `level`.
    pub fn encode(params: &HeParams, values: &[u64], level: usize) -> Result<Self> {
        check_values(params, values, level)?;
        let inner = bfv::Plaintext::try_encode(values, Encoding::simd_at_level(level), params.bfv())?;
        Ok(Self { inner, params: params.bfv().clone() })
    }

    /// Encodes `values` as the coefficients of the plaintext polynomial (coefficient `i` holds
    /// `values[i]`; missing ones are zero) at `level`: the encoding in which a product with a
    /// plaintext is a negacyclic polynomial product, e.g. a convolution.
    pub fn encode_coefficients(params: &HeParams, values: &[u64], level: usize) -> Result<Self> {
        check_values(params, values, level)?;
        let inner = bfv::Plaintext::try_encode(values, Encoding::poly_at_level(level), params.bfv())?;
        Ok(Self { inner, params: params.bfv().clone() })
    }

    /// The level.
    pub fn level(&self) -> usize {
        self.inner.level()
    }
}

fn check_values(params: &HeParams, values: &[u64], level: usize) -> Result<()> {
    if values.len() > params.degree() {
        return Err(HeError::Encoding(format!("{} values for {} slots", values.len(), params.degree())));
    }
    if values.iter().any(|&v| v >= params.t()) {
        return Err(HeError::Encoding("a value outside Z_t".into()));
    }
    if level > params.return_level() {
        return Err(HeError::Level(format!("no level {level}")));
    }
    Ok(())
}

/// A BFV ciphertext of `N` slots. Fresh secret-key encryptions keep the seed of `c1`, so they
/// travel at half size.
#[derive(Clone, Debug)]
pub struct Ciphertext {
    pub(crate) inner: bfv::Ciphertext,
    pub(crate) seed: Option<[u8; 32]>,
    pub(crate) level: usize,
    pub(crate) params: Arc<BfvParameters>,
}

impl Ciphertext {
    /// The level (number of primes dropped).
    pub fn level(&self) -> usize {
        self.level
    }

    /// Whether `c1` is still the expansion of a seed (no operation applied yet).
    pub fn is_seeded(&self) -> bool {
        self.seed.is_some()
    }

    /// fhe asserts that operands share one parameter instance and one level; here both are
    /// typed errors.
    fn compatible(&self, params: &Arc<BfvParameters>, level: usize, what: &str) -> Result<()> {
        if !Arc::ptr_eq(&self.params, params) {
            return Err(HeError::Level(format!("{what} from another parameter instance")));
        }
        if self.level() == level {
            Ok(())
        } else {
            Err(HeError::Level(format!("{what} at level {level}, ciphertext at level {}", self.level())))
        }
    }

    /// `self += pt` slot-wise.
    pub fn add_plain(&mut self, pt: &Plaintext) -> Result<()> {
        self.compatible(&pt.params, pt.level(), "plaintext")?;
        self.inner += &pt.inner;
        self.seed = None;
        Ok(())
    }

    /// `self −= pt` slot-wise.
    pub fn sub_plain(&mut self, pt: &Plaintext) -> Result<()> {
        self.compatible(&pt.params, pt.level(), "plaintext")?;
        self.inner -= &pt.inner;
        self.seed = None;
        Ok(())
    }

    /// `self ⊙= pt` slot-wise.
    pub fn mul_plain(&mut self, pt: &Plaintext) -> Result<()> {
        self.compatible(&pt.params, pt.level(), "plaintext")?;
        self.inner *= &pt.inner;
        self.seed = None;
        Ok(())
    }

    /// `self += other` slot-wise.
    pub fn add(&mut self, other: &Ciphertext) -> Result<()> {
        self.compatible(&other.params, other.level(), "ciphertext")?;
        self.inner += &other.inner;
        self.seed = None;
        Ok(())
    }

    /// Modulus switching down to `level` (scales the noise down with the modulus).
    pub fn switch_to(&mut self, level: usize) -> Result<()> {
        if level < self.level() {
            return Err(HeError::Level(format!("cannot switch up from {} to {level}", self.level())));
        }
        self.inner.switch_to_level(level)?;
        self.level = level;
        self.seed = None;
        Ok(())
    }
}
