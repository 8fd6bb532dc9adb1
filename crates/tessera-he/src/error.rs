//! Errors of the HE layer.

/// What can go wrong with parameters, keys, ciphertexts and their encodings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeError {
    /// The plaintext modulus is not below every ciphertext prime: fhe would decrypt garbage
    /// without saying so.
    #[error("plaintext modulus {t} is not below ciphertext prime {q} (index {index})")]
    PlaintextModulusTooLarge {
        /// The plaintext modulus.
        t: u64,
        /// The offending ciphertext prime.
        q: u64,
        /// Its index in the chain.
        index: usize,
    },
    /// `t` does not allow SIMD batching at this ring degree (`t` prime, `t ≡ 1 mod 2N`).
    #[error("plaintext modulus {t} does not batch at ring degree {degree} (needs a prime t ≡ 1 mod 2N)")]
    NoBatching {
        /// The plaintext modulus.
        t: u64,
        /// The ring degree.
        degree: usize,
    },
    /// The ciphertext modulus is too large for 128-bit security at this degree.
    #[error("log2 q = {log_q} exceeds the {max_log_q} bits allowed at N = {degree} for 128-bit security")]
    Insecure {
        /// Ring degree.
        degree: usize,
        /// Bits of the ciphertext modulus.
        log_q: u32,
        /// The HE standard's bound.
        max_log_q: u32,
    },
    /// The parameters leave no room for the deepest computation plus flooding.
    #[error("noise budget: {0}")]
    NoiseBudget(String),
    /// More values than slots, or values outside `Z_t`.
    #[error("cannot encode: {0}")]
    Encoding(String),
    /// A layer that does not fit the packing, or operands that do not match it.
    #[error("packing: {0}")]
    Packing(String),
    /// Two operands at different levels, or an operation the level does not allow.
    #[error("level mismatch: {0}")]
    Level(String),
    /// A received ciphertext or key whose bytes are malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An error inside the BFV library.
    #[error("BFV: {0}")]
    Library(String),
}

impl From<fhe::Error> for HeError {
    fn from(e: fhe::Error) -> Self {
        HeError::Library(e.to_string())
    }
}

impl From<fhe_math::Error> for HeError {
    fn from(e: fhe_math::Error) -> Self {
        HeError::Library(e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, HeError>;
