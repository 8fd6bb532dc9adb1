//! Fast exact kernels over `Z_t`, their `f32` twins for the plaintext engine, and naive
//! references to test both against.
//!
//! A convolution is an im2col followed by a matrix product ([`conv`]). Over `Z_t` the product is
//! exact through floating point: weights are small integers, the field operand is split into
//! centered limbs small enough that every `f64` dot product stays below `2^53` ([`limbs`]), and
//! the limb products are recombined modulo `t`. Where the CPU has AVX-512 VNNI and the limbs
//! fit, narrower limbs go through exact `i32` sums instead ([`dot16`]). Results are exact
//! integers, hence bit-identical for any thread count and either path.

#[cfg(target_arch = "x86_64")]
pub mod avx512;
pub mod conv;
mod depthwise;
#[cfg(target_arch = "x86_64")]
mod depthwise_f32;
#[cfg(target_arch = "x86_64")]
mod dot16;
pub mod geometry;
pub mod im2col;
pub mod limbs;
pub mod matmul;
pub mod pool;
pub mod reference;
pub mod shapes;
pub mod team;

/// Multiply-adds below which a kernel runs on the calling thread alone: a hand-off to the
/// kernels' spinning helpers costs about a microsecond; waking rayon's parked workers (where
/// there are no helpers) costs more than a few million multiply-adds save.
#[cfg(target_arch = "x86_64")]
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 18;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const PARALLEL_MIN_MACS: usize = 4 << 20;

/// Task `t`'s share of `units` split into `tasks` contiguous ranges of near-equal length.
pub(crate) fn share(t: usize, tasks: usize, units: usize) -> std::ops::Range<usize> {
    t * units / tasks..(t + 1) * units / tasks
}

/// Elements below which a pass over memory (padding, an epilogue) runs on the calling thread
/// alone: a hand-off costs about what a thread copies of a few thousand.
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 1 << 13;

/// Runs `part(units, rows)` over ranges of units that cover `0..data.len() / per_unit`, one per
/// thread, where `rows` is the range's `per_unit` elements per unit of `data`: on the calling
/// thread and, for `threads > 1`, the kernels' helpers (see [`team`]); one after another on the
/// calling thread when another caller holds them.
pub(crate) fn split_rows<T: Send>(
    threads: usize,
    data: &mut [T],
    per_unit: usize,
    part: impl Fn(std::ops::Range<usize>, &mut [T]) + Sync,
) {
    debug_assert!(per_unit > 0 && data.len().is_multiple_of(per_unit), "whole units of data");
    let units = data.len() / per_unit.max(1);
    let tasks = threads.clamp(1, units.max(1)).min(1 + data.len() / PARALLEL_MIN_ELEMENTS);
    if tasks == 1 {
        return part(0..units, data);
    }
    let mut rest = data;
    let rows: Vec<std::sync::Mutex<&mut [T]>> = (0..tasks)
        .map(|t| {
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(share(t, tasks, units).len() * per_unit);
            rest = tail;
            std::sync::Mutex::new(mine)
        })
        .collect();
    let task = |_: usize, t: usize| {
        let mut rows = rows[t].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        part(share(t, tasks, units), &mut rows);
    };
    if !team::run(threads, tasks, &task) {
        (0..tasks).for_each(|t| task(0, t));
    }
}

/// `dst.copy_from_slice(src)` for the short runs the kernels move (an im2col panel row, an image
/// row into or out of padded scratch): fixed-size chunks compile to inline vector moves instead
/// of a `memcpy` call per run.
#[inline(always)]
pub(crate) fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let s: &[T; 8] = s.try_into().expect("chunks of 8");
        let d: &mut [T; 8] = d.try_into().expect("chunks of 8");
        *d = *s;
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

pub use conv::{ConvF32, ConvGeometry, ConvKernel, Epilogue, conv2d_zt, conv2d_zt_within};
pub use geometry::{ImageShape, Window2d};
