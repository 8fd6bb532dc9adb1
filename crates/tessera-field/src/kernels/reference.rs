//! Naive reference kernels: the oracles the fast kernels are tested and benchmarked against.

use super::conv::ConvGeometry;
use crate::zt;

/// Calls `f(output index, weight index, input index)` (indices within one image) for every tap
/// of a convolution of `groups` groups: filter `o` reads the `C / groups` channels of group
/// `o / (O / groups)`, its weights `O × C/groups × kh × kw`.
fn for_each_tap(g: &ConvGeometry, groups: usize, mut f: impl FnMut(usize, usize, usize)) {
    let out = g.output().expect("valid geometry");
    let [kh, kw] = g.window.kernel;
    let (per_group, channels) = (out.c / groups, g.input.c / groups);
    for o in 0..out.c {
        for oy in 0..out.h {
            for ox in 0..out.w {
                for c in 0..channels {
                    let ic = o / per_group * channels + c;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * g.window.stride[0] + ky) as isize - g.window.pads[0] as isize;
                            let ix = (ox * g.window.stride[1] + kx) as isize - g.window.pads[1] as isize;
                            if iy < 0 || ix < 0 || iy as usize >= g.input.h || ix as usize >= g.input.w {
                                continue;
                            }
                            let wi = ((o * channels + c) * kh + ky) * kw + kx;
                            let xi = (ic * g.input.h + iy as usize) * g.input.w + ix as usize;
                            f((o * out.h + oy) * out.w + ox, wi, xi);
                        }
                    }
                }
            }
        }
    }
}

/// Convolution of `groups` groups over `Z_t` with 128-bit accumulation, one multiply-add at a
/// time.
pub fn conv2d_zt(g: &ConvGeometry, groups: usize, weights: &[i64], input: &[u64], batch: usize) -> Vec<u64> {
    let out_len = g.output().expect("valid geometry").len();
    let mut out = vec![0u64; batch * out_len];
    for b in 0..batch {
        let x = &input[b * g.input.len()..];
        let y = &mut out[b * out_len..];
        for_each_tap(g, groups, |oi, wi, xi| {
            y[oi] = zt::add(y[oi], zt::reduce_i128(weights[wi] as i128 * zt::to_i64(x[xi]) as i128));
        });
    }
    out
}

/// Convolution of `groups` groups over `f32`, accumulated in `f64`.
pub fn conv2d_f32(g: &ConvGeometry, groups: usize, weights: &[f32], input: &[f32], batch: usize) -> Vec<f32> {
    let out_len = g.output().expect("valid geometry").len();
    let mut acc = vec![0f64; batch * out_len];
    for b in 0..batch {
        let x = &input[b * g.input.len()..];
        let y = &mut acc[b * out_len..];
        for_each_tap(g, groups, |oi, wi, xi| y[oi] += weights[wi] as f64 * x[xi] as f64);
    }
    acc.into_iter().map(|v| v as f32).collect()
}
