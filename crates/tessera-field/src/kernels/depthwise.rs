//! Depthwise convolution, where every filter reads one input channel (a grouped convolution with
//! one channel per group): one vector loop per tap over a zero-padded copy of the channel, no
//! im2col and no matrix product (whose tiles a single-filter product would leave mostly idle).

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
    let (hp, wp) = (s.h + pt + pb, s.w + pl + pr);
    // Outputs are summed along whole rows of the zero-padded plane, one vector loop per tap:
    // every output row at once when rows are consecutive (stride 1 down), else row by row.
    // Positions between the strided columns, and past the last one, are summed and dropped.
    let runs: Vec<(usize, usize)> =
        if sh == 1 { vec![(0, out.h * wp)] } else { (0..out.h).map(|oy| (oy * sh * wp, wp)).collect() };
    let longest = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let n = images * out.plane();
    let filter = |(o, row): (usize, &mut [T])| {
        let taps = &weights[o * kh * kw..][..kh * kw];
        let channel = o / per_channel;
        // The padded plane, with slack for the last tap's reads past its end; both buffers hold
        // the input's values (a share's limbs), wiped when dropped.
        let mut padded = Zeroizing::new(vec![T::ZERO; hp * wp + kw]);
        let mut acc = Zeroizing::new(vec![T::ZERO; longest]);
        for (i, y) in row.chunks_mut(out.plane()).enumerate() {
            let plane = &image(i)[channel * s.plane()..][..s.plane()];
            for (line, dst) in plane.chunks(s.w).zip(padded[pt * wp..].chunks_mut(wp)) {
                dst[pl..pl + s.w].copy_from_slice(line);
            }
            for (r, &(start, len)) in runs.iter().enumerate() {
                let acc = &mut acc[..len];
                acc.fill(T::ZERO);
                for (t, &w) in taps.iter().enumerate() {
                    let src = &padded[start + (t / kw) * wp + t % kw..][..len];
                    acc.iter_mut().zip(src).for_each(|(a, &x)| *a += w * x);
                }
                // The run's rows: all of them (stride 1 down), or row `r`.
                let rows = if sh == 1 { 0..out.h } else { r..r + 1 };
                for (k, oy) in rows.enumerate() {
                    let at = &acc[k * wp..];
                    y[oy * out.w..][..out.w].iter_mut().enumerate().for_each(|(ox, y)| *y = at[ox * sw]);
                }
            }
        }
    };
    // Waking a second thread costs more than it saves below a few million multiply-adds.
    if threads > 1 && g.out_channels * n * kh * kw >= 4 << 20 {
        prod[..g.out_channels * n].par_chunks_mut(n.max(1)).enumerate().for_each(filter);
    } else {
        prod[..g.out_channels * n].chunks_mut(n.max(1)).enumerate().for_each(filter);
    }
}
