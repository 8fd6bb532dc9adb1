//! Arithmetic shared by every Tessera suite (PROTOCOLS.md section 1).
//!
//! * [`zt`]: the prime field `Z_t` with `t = 2^61 − 2031615`, `t ≡ 1 (mod 2^16)`, so BFV
//!   batching packs `N` elements per ciphertext for every ring degree up to 32768, and `t` sits
//!   below every 62-bit ciphertext prime.
//! * [`fixed`]: fixed-point encoding, the activation bound and the statistical security it leaves.
//! * [`share`]: n-of-n additive sharing, perfectly hiding.
//! * [`seed`]: per-query seeds expanded by a KDF with a domain label per layer and purpose.
//! * [`kernels`]: fast exact `Z_t` convolution, GEMM and pooling, with naive references.
//! * [`vector`]: element-wise loops compiled for the CPU's vector extensions.

pub mod error;
pub mod fixed;
pub mod kernels;
pub mod seed;
pub mod share;
pub mod vector;
pub mod zt;

pub use error::{FieldError, Result};
pub use fixed::FixedPointParams;
pub use seed::{Purpose, Seed};
pub use share::Share;
