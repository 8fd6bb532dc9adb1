//! Depthwise convolution, where every filter reads one input channel (a grouped convolution with
//! one channel per group). No im2col and no matrix product (a single-filter product would leave
//! its tiles mostly idle): the rows of the channel's zero-padded planes of every image are split
//! into row phases (padded row `y` to phase `y mod s_h` at `y / s_h`, whole rows moved at once)
//! and stacked, so each tap reads every output row of every image as one contiguous run: one
//! vector loop per tap. Sums are taken at every column and every `s_w`-th is kept: splitting the
//! columns into phases as well, value by value, measured no faster and took more code.
//! Positions past the output's rows and columns are summed and dropped.

use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use super::conv::ConvGeometry;
use super::matmul::GemmScalar;

/// `prod = W ∗ images` for a convolution whose filter `o` reads only input channel
/// `o / (out_channels / input.c)`: `weights` are `out_channels × kh × kw`; image `i` is
/// `image(i)`, and its outputs go to columns `i · P ..` of row `o` of `prod`
/// (`out_channels × (images · P)`). Every product is added in a fixed order, so exact inputs
/// (the limbs of the `Z_t` kernel) give exact sums whatever the thread count.
pub(crate) fn depthwise<'a, T: GemmScalar + Zeroize>(
    g: &ConvGeometry,
    weights: &[T],
    images: usize,
    image: impl Fn(usize) -> &'a [T] + Sync,
    threads: usize,
    prod: &mut [T],
) {
    let out = g.output().expect("geometry checked at construction");
    let s = g.input;
    let per_channel = g.out_channels / s.c;
    let [kh, kw] = g.window.kernel;
    let [sh, sw] = g.window.stride;
    let [pt, pl, pb, pr] = g.window.pads;
    let (hq, wp) = ((s.h + pt + pb).div_ceil(sh), s.w + pl + pr);
    // One phase of every image, stacked, and summed in whole runs of `RUN` (past the last
    // image, sums of nothing but padding, dropped); the slack covers the furthest tap's reads
    // past the end.
    let stacked = (images * hq * wp).next_multiple_of(RUN);
    let phase_len = stacked + ((kh - 1) / sh + 1) * wp;
    // Where tap `(ty, tx)` reads the output at position 0.
    let offsets: Vec<usize> = (0..kh * kw).map(|t| (t / kw % sh) * phase_len + (t / kw / sh) * wp + t % kw).collect();
    let n = images * out.plane();
    let channel = |scratch: &mut Scratch<T>, (c, filters): (usize, &mut [T])| {
        let Scratch { phases, acc } = scratch;
        for i in 0..images {
            let plane = &image(i)[c * s.plane()..][..s.plane()];
            // Padded row `py` goes to row phase `py mod sh` at `py / sh`, counted along (a
            // division per row cost a quarter of a small layer).
            let (mut phase, mut row) = (pt % sh, pt / sh);
            for line in plane.chunks(s.w) {
                let at = phase * phase_len + i * hq * wp + row * wp + pl;
                super::copy_short(&mut phases[at..][..s.w], line);
                phase += 1;
                if phase == sh {
                    (phase, row) = (0, row + 1);
                }
            }
        }
        for (k, row) in filters.chunks_mut(n.max(1)).enumerate() {
            let taps = &weights[(c * per_channel + k) * kh * kw..][..kh * kw];
            sum_taps(acc, phases, taps, &offsets);
            for (i, outputs) in row.chunks_mut(out.plane()).enumerate() {
                for (oy, dst) in outputs.chunks_mut(out.w).enumerate() {
                    let sums = &acc[i * hq * wp + oy * wp..];
                    if sw == 1 {
                        super::copy_short(dst, &sums[..out.w]);
                    } else {
                        dst.iter_mut().zip(sums.iter().step_by(sw)).for_each(|(d, &v)| *d = v);
                    }
                }
            }
        }
    };
    // The phases hold the input's values (a share's limbs) and are wiped when dropped; the
    // padding, which no image writes, stays zero from one channel to the next.
    let scratch = || Scratch {
        phases: Zeroizing::new(vec![T::ZERO; sh * phase_len]),
        acc: Zeroizing::new(vec![T::ZERO; stacked]),
    };
    // Each channel's filters' rows of `prod`.
    let by_channel = &mut prod[..g.out_channels * n];
    // Waking a second thread costs more than it saves below a few million multiply-adds.
    if threads > 1 && g.out_channels * n * kh * kw >= 4 << 20 {
        by_channel.par_chunks_mut((per_channel * n).max(1)).enumerate().for_each_init(scratch, channel);
    } else {
        let mut one = scratch();
        by_channel.chunks_mut((per_channel * n).max(1)).enumerate().for_each(|item| channel(&mut one, item));
    }
}

/// One thread's buffers: a channel's stacked phase planes, and one filter's sums over them.
struct Scratch<T: Zeroize> {
    /// The `s_h · s_w` phases of the channel's padded planes, each holding every image.
    phases: Zeroizing<Vec<T>>,
    /// One filter's sums at every phase-plane position.
    acc: Zeroizing<Vec<T>>,
}

/// `acc = Σ_t taps[t] · src[offsets[t] ..][.. acc.len()]`, in tap order, in the CPU's widest
/// vectors (the workspace builds for baseline x86-64, whose loops are 128-bit).
fn sum_taps<T: GemmScalar>(acc: &mut [T], src: &[T], taps: &[T], offsets: &[usize]) {
    crate::vector::vectorized(
        #[inline(always)]
        || sum_taps_body(acc, src, taps, offsets),
    )
}

/// The loops of [`sum_taps`], inlined into each build of it: runs of [`RUN`] sums (`acc` holds
/// whole runs) stay in registers across every tap and are stored once.
#[inline(always)]
fn sum_taps_body<T: GemmScalar>(acc: &mut [T], src: &[T], taps: &[T], offsets: &[usize]) {
    debug_assert!(acc.len().is_multiple_of(RUN), "whole runs of sums");
    for (r, run) in acc.chunks_exact_mut(RUN).enumerate() {
        let mut sums = [T::ZERO; RUN];
        for (&w, &at) in taps.iter().zip(offsets) {
            let x: &[T; RUN] = src[at + r * RUN..][..RUN].try_into().expect("a run of inputs");
            sums.iter_mut().zip(x).for_each(|(a, &x)| *a += w * x);
        }
        run.copy_from_slice(&sums);
    }
}

/// Sums [`sum_taps`] keeps in registers: four 512-bit vectors of `f32`, eight of `f64`.
const RUN: usize = 64;
