//! im2col: lay out every receptive field of a convolution as a column.

use super::geometry::{ImageShape, Window2d};

/// The im2col of one convolution geometry, with its per-tap bounds precomputed.
#[derive(Debug, Clone)]
pub struct Im2col {
    shape: ImageShape,
    win: Window2d,
    out_w: usize,
    positions: usize,
    /// For each kernel column `kx`: the output columns `[first, last)` whose input column is
    /// inside the image.
    inside: Vec<(usize, usize)>,
}

impl Im2col {
    /// Precomputes the bounds; `win.output_hw` must accept the shape (checked when the layer
    /// was built).
    pub fn new(shape: ImageShape, win: Window2d) -> Self {
        let (oh, ow) = win.output_hw(shape.h, shape.w).expect("window checked when the layer was built");
        let (sw, pl) = (win.stride[1] as isize, win.pads[1] as isize);
        let inside = (0..win.kernel[1] as isize)
            .map(|kx| {
                let first = ceil_div((pl - kx).max(0), sw).min(ow as isize) as usize;
                let last = (ceil_div(shape.w as isize + pl - kx, sw).clamp(0, ow as isize) as usize).max(first);
                (first, last)
            })
            .collect();
        Self { shape, win, out_w: ow, positions: oh * ow, inside }
    }

    /// Output positions per image (`oh · ow`).
    pub fn positions(&self) -> usize {
        self.positions
    }

    /// Writes the columns of output positions `p0 .. p0 + w` of one image: row
    /// `r = (c·kh + ky)·kw + kx` goes to `out[r · row_stride + offset ..][.. w]`, holding the input
    /// value under tap `(c, ky, kx)` at each position (padding reads as `T::default()`).
    pub fn fill<T: Copy + Default>(
        &self,
        src: &[T],
        p0: usize,
        w: usize,
        out: &mut [T],
        row_stride: usize,
        offset: usize,
    ) {
        debug_assert!(p0 + w <= self.positions);
        let [kh, kw] = self.win.kernel;
        let [sh, sw] = self.win.stride;
        let pt = self.win.pads[0] as isize;
        let pl = self.win.pads[1] as isize;
        // The positions split into runs along output rows: (oy, ox0, ox1, first column).
        let mut runs = [(0usize, 0usize, 0usize, 0usize); 8];
        let mut count = 0;
        let mut pos = p0;
        while pos < p0 + w {
            let (oy, ox0) = (pos / self.out_w, pos % self.out_w);
            let ox1 = self.out_w.min(ox0 + p0 + w - pos);
            if count == runs.len() {
                // Wider than 8 output rows: fill in two halves.
                let done = pos - p0;
                self.fill(src, p0, done, out, row_stride, offset);
                return self.fill(src, pos, w - done, out, row_stride, offset + done);
            }
            runs[count] = (oy, ox0, ox1, pos - p0);
            count += 1;
            pos += ox1 - ox0;
        }
        let mut row = 0;
        for c in 0..self.shape.c {
            let plane = &src[c * self.shape.plane()..(c + 1) * self.shape.plane()];
            for ky in 0..kh {
                for kx in 0..kw {
                    let dst = &mut out[row * row_stride + offset..][..w];
                    row += 1;
                    let (first, last) = self.inside[kx];
                    for &(oy, ox0, ox1, col) in &runs[..count] {
                        let seg = &mut dst[col..col + (ox1 - ox0)];
                        let iy = (oy * sh + ky) as isize - pt;
                        let (a, b) = (ox0.max(first), ox1.min(last));
                        if iy < 0 || iy >= self.shape.h as isize || a >= b {
                            seg.fill(T::default());
                            continue;
                        }
                        seg[..a - ox0].fill(T::default());
                        seg[b - ox0..].fill(T::default());
                        let line = &plane[iy as usize * self.shape.w..][..self.shape.w];
                        let ix0 = ((a * sw + kx) as isize - pl) as usize;
                        let inner = &mut seg[a - ox0..b - ox0];
                        if sw == 1 {
                            super::copy_short(inner, &line[ix0..ix0 + (b - a)]);
                        } else {
                            for (j, o) in inner.iter_mut().enumerate() {
                                *o = line[ix0 + j * sw];
                            }
                        }
                    }
                }
            }
        }
    }
}

fn ceil_div(a: isize, b: isize) -> isize {
    (a + b - 1).div_euclid(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(src: &[i32], s: ImageShape, win: &Window2d) -> Vec<i32> {
        let (oh, ow) = win.output_hw(s.h, s.w).unwrap();
        let mut out = vec![];
        for c in 0..s.c {
            for ky in 0..win.kernel[0] {
                for kx in 0..win.kernel[1] {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let iy = (oy * win.stride[0] + ky) as isize - win.pads[0] as isize;
                            let ix = (ox * win.stride[1] + kx) as isize - win.pads[1] as isize;
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w;
                            out.push(if inside { src[c * s.plane() + iy as usize * s.w + ix as usize] } else { 0 });
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_for_strides_and_pads() {
        let s = ImageShape::new(2, 5, 7);
        let src: Vec<i32> = (1..=s.len() as i32).collect();
        for (k, st, pads) in
            [(3, 1, [1, 1, 1, 1]), (3, 2, [1, 0, 2, 1]), (1, 1, [0; 4]), (2, 3, [0, 2, 0, 0]), (5, 1, [2; 4])]
        {
            let win = Window2d { kernel: [k, k], stride: [st, st], pads };
            let (oh, ow) = win.output_hw(s.h, s.w).unwrap();
            let mut dst = vec![-1; s.c * k * k * oh * ow];
            let plan = Im2col::new(s, win);
            plan.fill(&src, 0, oh * ow, &mut dst, oh * ow, 0);
            // Any run of positions gives the same entries.
            let full = dst.clone();
            for (p0, len) in [(0, 1), (1, oh * ow - 1), (ow / 2, ow + 1), (oh * ow - 2, 2), (0, oh * ow)] {
                let len = len.min(oh * ow - p0.min(oh * ow));
                let mut part = vec![-1; s.c * k * k * len];
                plan.fill(&src, p0, len, &mut part, len, 0);
                for r in 0..s.c * k * k {
                    assert_eq!(part[r * len..(r + 1) * len], full[r * oh * ow + p0..r * oh * ow + p0 + len]);
                }
            }
            assert_eq!(dst, naive(&src, s, &win), "k {k} stride {st} pads {pads:?}");
        }
    }
}
