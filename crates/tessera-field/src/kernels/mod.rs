//! Fast exact kernels over `Z_t`, their `f32` twins for the plaintext engine, and naive
//! references to test both against.
//!
//! A convolution is an im2col followed by a matrix product ([`conv`]). Over `Z_t` the product is
//! exact through floating point: weights are small integers, the field operand is split into
//! centered limbs small enough that every `f64` dot product stays below `2^53` ([`limbs`]), and
//! the limb products are recombined modulo `t`. Results are exact integers, hence bit-identical
//! for any thread count.

#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod conv;
mod depthwise;
pub mod geometry;
pub mod im2col;
pub mod limbs;
pub mod matmul;
pub mod pool;
pub mod reference;
pub mod shapes;
#[cfg(target_arch = "x86_64")]
mod team;

/// Multiply-adds below which a kernel runs on the calling thread alone: a hand-off to the
/// kernels' spinning helpers costs about a microsecond; waking rayon's parked workers (where
/// there are no helpers) costs more than a few million multiply-adds save.
#[cfg(target_arch = "x86_64")]
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 18;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const PARALLEL_MIN_MACS: usize = 4 << 20;

pub use conv::{ConvGeometry, ConvKernel, conv2d_f32, conv2d_grouped_f32, conv2d_zt};
pub use geometry::{ImageShape, Window2d};
