//! Tessera's HE layer: BFV (through the `fhe` crate) over the field `Z_t` the suites share.
//!
//! * [`HeParams`]: the parameter set, checked against the HE standard's 128-bit table, with
//!   `t` below every ciphertext prime and the noise budget of the suites' deepest computation
//!   (one ciphertext × plaintext product, modulus switching, 40 bits of flooding, wire
//!   rounding) verified when the set is built.
//! * [`SecretKey`], [`PublicKey`]: key pairs; secret-key encryptions are seeded so they travel
//!   at half size; [`PublicKey::rerandomize`] gives circuit privacy to returned ciphertexts.
//! * [`Plaintext`], [`Ciphertext`]: `Z_t` in SIMD slots or coefficients, and the operations on
//!   them.
//! * [`ConvPacking`]: convolutions and FC layers on ciphertexts, in coefficient encoding.
//! * [`Form`]: the exact-size wire forms.
//! * [`collective`]: multiparty BFV, a key shared by several parties with smudged joint
//!   decryption.

pub mod ciphertext;
pub mod collective;
pub mod error;
pub mod keys;
pub mod linear;
pub mod params;
pub mod wire;

pub use ciphertext::{Ciphertext, Plaintext};
pub use collective::{DecryptionRequest, DecryptionShare, Smudging};
pub use error::{HeError, Result};
pub use keys::{PublicKey, SecretKey};
pub use linear::{Addend, ConvPacking, SHARE_DIGIT_BITS};
pub use params::{HeParams, NOISE, NoiseLayout};
pub use wire::Form;
