//! im2col: lay out every receptive field of a convolution as a column.

use super::geometry::{ImageShape, Window2d};

/// Writes row `row = (c·kh + ky)·kw + kx` of the column matrix of one image: the input value
/// under kernel tap `(c, ky, kx)` at each of the `oh · ow` output positions, padding read as
/// `T::default()`. `win.output_hw` must accept the shape (checked when the layer was built).
pub fn im2col_row<T: Copy + Default>(src: &[T], shape: ImageShape, win: &Window2d, row: usize, out: &mut [T]) {
    let (oh, ow) = win.output_hw(shape.h, shape.w).expect("window checked when the layer was built");
    let [kh, kw] = win.kernel;
    let [sh, sw] = win.stride;
    let (c, ky, kx) = (row / (kh * kw), row / kw % kh, row % kw);
    let (pt, pl) = (win.pads[0] as isize, win.pads[1] as isize);
    let h = shape.h as isize;
    let plane = &src[c * shape.plane()..(c + 1) * shape.plane()];
    // Output columns whose input column is inside the image: ix = ox·sw + kx − pl ∈ [0, w).
    let first = ceil_div((pl - kx as isize).max(0), sw as isize).min(ow as isize) as usize;
    let last = (ceil_div(shape.w as isize + pl - kx as isize, sw as isize).clamp(0, ow as isize) as usize).max(first);
    for oy in 0..oh {
        let iy = (oy * sh + ky) as isize - pt;
        let row_out = &mut out[oy * ow..(oy + 1) * ow];
        if iy < 0 || iy >= h {
            row_out.fill(T::default());
            continue;
        }
        let line = &plane[iy as usize * shape.w..][..shape.w];
        row_out[..first].fill(T::default());
        row_out[last..].fill(T::default());
        let ix0 = ((first * sw + kx) as isize - pl) as usize;
        if sw == 1 {
            row_out[first..last].copy_from_slice(&line[ix0..ix0 + (last - first)]);
        } else {
            for (j, o) in row_out[first..last].iter_mut().enumerate() {
                *o = line[ix0 + j * sw];
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
            for (row, out) in dst.chunks_mut(oh * ow).enumerate() {
                im2col_row(&src, s, &win, row, out);
            }
            assert_eq!(dst, naive(&src, s, &win), "k {k} stride {st} pads {pads:?}");
        }
    }
}
