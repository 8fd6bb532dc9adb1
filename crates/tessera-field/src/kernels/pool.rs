//! Pooling over sliding windows, per channel. Positions in the zero padding are skipped, which is
//! what max pooling means and what a sum pool gets from adding zeros.

use rayon::prelude::*;

use super::geometry::{ImageShape, Window2d};
use crate::zt;

/// Window reads below which a pool runs on the calling thread: handing a small pool to the
/// thread pool (and waking its workers) costs more than it saves.
const PARALLEL_MIN_READS: usize = 1 << 18;

/// Folds `fold` over every window of every channel of `batch` images into `out`
/// (`batch × c × oh × ow`). Every window must hold at least one input position.
pub fn pool<T: Copy + Send + Sync>(
    src: &[T],
    shape: ImageShape,
    win: &Window2d,
    batch: usize,
    fold: impl Fn(T, T) -> T + Sync,
    out: &mut [T],
) {
    let (oh, ow) = win.output_hw(shape.h, shape.w).expect("window checked when the layer was built");
    assert_eq!(src.len(), batch * shape.len(), "pool input length");
    assert_eq!(out.len(), batch * shape.c * oh * ow, "pool output length");
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let one_plane = |(plane_idx, plane_out): (usize, &mut [T])| {
        let plane = &src[plane_idx * shape.plane()..(plane_idx + 1) * shape.plane()];
        if win.pads == [0; 4] && (oh, ow) == (1, 1) && (kh, kw) == (shape.h, shape.w) {
            // A global pool: one fold over the whole plane.
            plane_out[0] = plane[1..].iter().fold(plane[0], |a, &v| fold(a, v));
            return;
        }
        if win.pads == [0; 4] && win.kernel == [2, 2] && win.stride == [2, 2] {
            // The common 2 × 2 window, stride 2: both rows' pairs side by side, in one pass
            // the compiler turns into vector shuffles.
            for (oy, dst) in plane_out.chunks_mut(ow).enumerate() {
                let top = plane[2 * oy * shape.w..][..2 * ow].chunks_exact(2);
                let bottom = plane[(2 * oy + 1) * shape.w..][..2 * ow].chunks_exact(2);
                for ((d, a), b) in dst.iter_mut().zip(top).zip(bottom) {
                    *d = fold(fold(a[0], a[1]), fold(b[0], b[1]));
                }
            }
            return;
        }
        if win.pads == [0; 4] {
            // Every window lies inside the image: fold row by row, the first tap seeding each
            // output, with no bounds to clip.
            for (oy, dst) in plane_out.chunks_mut(ow).enumerate() {
                for ky in 0..kh {
                    let line = &plane[(oy * sh + ky) * shape.w..][..shape.w];
                    fold_line(dst, line, kw, sw, ky == 0, &fold);
                }
            }
            return;
        }
        for oy in 0..oh {
            let y0 = (oy * win.stride[0]) as isize - win.pads[0] as isize;
            let ys = y0.max(0) as usize..((y0 + win.kernel[0] as isize).min(shape.h as isize)) as usize;
            for ox in 0..ow {
                let x0 = (ox * win.stride[1]) as isize - win.pads[1] as isize;
                let xs = x0.max(0) as usize..((x0 + win.kernel[1] as isize).min(shape.w as isize)) as usize;
                let mut acc: Option<T> = None;
                for y in ys.clone() {
                    for &v in &plane[y * shape.w + xs.start..y * shape.w + xs.end] {
                        acc = Some(acc.map_or(v, |a| fold(a, v)));
                    }
                }
                plane_out[oy * ow + ox] = acc.expect("every window holds an input position");
            }
        }
    };
    if out.len() * win.size() < PARALLEL_MIN_READS {
        out.chunks_mut(oh * ow).enumerate().for_each(one_plane);
    } else {
        out.par_chunks_mut(oh * ow).enumerate().for_each(one_plane);
    }
}

/// Folds the `kw` taps of `line` at `ox · sw` into `dst[ox]` for every `ox`, starting from the
/// first tap where `seed` and from `dst[ox]` otherwise.
#[inline(always)]
fn fold_line<T: Copy>(dst: &mut [T], line: &[T], kw: usize, sw: usize, seed: bool, fold: &impl Fn(T, T) -> T) {
    for (ox, d) in dst.iter_mut().enumerate() {
        let taps = &line[ox * sw..][..kw];
        let first = if seed { taps[0] } else { fold(*d, taps[0]) };
        *d = taps[1..].iter().fold(first, |a, &v| fold(a, v));
    }
}

/// Sum pool over `Z_t` (an average pool whose `1/k` was folded into the next layer).
pub fn sum_pool_zt(src: &[u64], shape: ImageShape, win: &Window2d, batch: usize, out: &mut [u64]) {
    pool(src, shape, win, batch, zt::add, out);
}

/// Max pool over the signed representatives of `Z_t` elements.
pub fn max_pool_zt(src: &[u64], shape: ImageShape, win: &Window2d, batch: usize, out: &mut [u64]) {
    pool(src, shape, win, batch, |a, b| if zt::to_i64(b) > zt::to_i64(a) { b } else { a }, out);
}

/// Max pool over `f32`.
pub fn max_pool_f32(src: &[f32], shape: ImageShape, win: &Window2d, batch: usize, out: &mut [f32]) {
    // `f32::max` without its NaN handling (inputs are finite), which compiles to vector maxima.
    pool(src, shape, win, batch, |a, b| if b > a { b } else { a }, out);
}

/// Sum pool over `f32`.
pub fn sum_pool_f32(src: &[f32], shape: ImageShape, win: &Window2d, batch: usize, out: &mut [f32]) {
    pool(src, shape, win, batch, |a, b| a + b, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path (global, 2 × 2 stride 2, unpadded, padded) equals a window-by-window fold,
    /// on odd and even sizes.
    #[test]
    fn every_path_equals_the_window_by_window_fold() {
        let naive = |src: &[u64], s: ImageShape, win: &Window2d, batch: usize| {
            let (oh, ow) = win.output_hw(s.h, s.w).unwrap();
            let mut out = Vec::new();
            for plane in src.chunks(s.plane()).take(batch * s.c) {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut best: Option<i64> = None;
                        for ky in 0..win.kernel[0] {
                            for kx in 0..win.kernel[1] {
                                let y = (oy * win.stride[0] + ky) as isize - win.pads[0] as isize;
                                let x = (ox * win.stride[1] + kx) as isize - win.pads[1] as isize;
                                if (0..s.h as isize).contains(&y) && (0..s.w as isize).contains(&x) {
                                    let v = zt::to_i64(plane[y as usize * s.w + x as usize]);
                                    best = Some(best.map_or(v, |b| b.max(v)));
                                }
                            }
                        }
                        out.push(zt::from_i64(best.unwrap()));
                    }
                }
            }
            out
        };
        let windows = [
            (ImageShape::new(3, 7, 7), Window2d::square(2, 2)),
            (ImageShape::new(3, 8, 6), Window2d::square(2, 2)),
            (ImageShape::new(2, 4, 4), Window2d::square(4, 4)),
            (ImageShape::new(2, 9, 9), Window2d::square(3, 2)),
            (ImageShape::new(2, 9, 9), Window2d { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1] }),
        ];
        for (s, win) in windows {
            let src: Vec<u64> = (0..2 * s.len() as i64).map(|v| zt::from_i64((v * 7919) % 101 - 50)).collect();
            let (oh, ow) = win.output_hw(s.h, s.w).unwrap();
            let mut out = vec![0; 2 * s.c * oh * ow];
            max_pool_zt(&src, s, &win, 2, &mut out);
            assert_eq!(out, naive(&src, s, &win, 2), "{s:?} {win:?}");
        }
    }

    #[test]
    fn max_and_sum_over_windows() {
        let s = ImageShape::new(1, 4, 4);
        let src: Vec<u64> = (0..16).map(|v| zt::from_i64(v - 8)).collect();
        let mut out = vec![0; 4];
        max_pool_zt(&src, s, &Window2d::square(2, 2), 1, &mut out);
        assert_eq!(out.iter().map(|&v| zt::to_i64(v)).collect::<Vec<_>>(), vec![-3, -1, 5, 7]);
        sum_pool_zt(&src, s, &Window2d::square(2, 2), 1, &mut out);
        assert_eq!(out.iter().map(|&v| zt::to_i64(v)).collect::<Vec<_>>(), vec![-22, -14, 10, 18]);
        let padded = Window2d { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1] };
        let f: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = vec![0.0; 4];
        max_pool_f32(&f, s, &padded, 1, &mut out);
        assert_eq!(out, vec![5.0, 7.0, 13.0, 15.0]);
    }
}
