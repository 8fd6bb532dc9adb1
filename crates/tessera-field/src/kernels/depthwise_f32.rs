//! The `f32` engine's depthwise convolution (filter `c` reads only input channel `c`), straight
//! from the NCHW input to the NCHW output in 512-bit vectors along output rows.
//!
//! Where [`depthwise`](super::depthwise) (the exact `Z_t` path) stacks padded copies of every
//! plane so each tap is one long run, this kernel copies nothing: a tap that falls in the
//! padding is a masked-off lane of a masked load (AVX-512 suppresses faults on masked lanes), a
//! tap row outside the plane is skipped, stride 2 takes the even lanes of two loads with one
//! permute, and a partial vector is a masked store. On MobileNet-style layers (planes of 4 to 32
//! columns) the copies, not the multiply-adds, had been most of the time.

#![allow(unsafe_code, reason = "SIMD intrinsics; every access is a masked load or store inside its plane")]

use std::arch::x86_64::*;
use std::ops::Range;

use super::conv::ConvGeometry;

/// Lanes of an `f32` vector.
const LANES: usize = 16;
/// Output rows computed together.
const ROWS: usize = 4;

/// Whether [`depthwise_f32`] runs `g`: one filter per input channel, stride 1 or 2 along
/// columns, on a CPU with AVX-512F.
pub(crate) fn supports(g: &ConvGeometry, groups: usize) -> bool {
    groups == g.input.c
        && g.out_channels == g.input.c
        && matches!(g.window.stride[1], 1 | 2)
        && super::avx512::available()
}

/// `out = epilogue(W ∗ input)` for the channel planes `planes` of a batch (plane `u` is channel
/// `u mod C` of image `u / C`, at `u · H · W` in `input`), their outputs in order in `out`;
/// `weights` are `C × kh × kw`; `bias[c]` is added to channel `c`'s outputs, then the ReLU
/// where `relu`.
///
/// # Panics
/// If the geometry is not one [`supports`] accepts or a buffer is too short.
pub(crate) fn depthwise_f32(
    g: &ConvGeometry,
    weights: &[f32],
    input: &[f32],
    planes: Range<usize>,
    out: &mut [f32],
    (bias, relu): (Option<&[f32]>, bool),
) {
    let o = g.output().expect("geometry checked at construction");
    let s = g.input;
    assert!(super::avx512::available() && matches!(g.window.stride[1], 1 | 2), "depthwise_f32 geometry");
    assert!(input.len() >= planes.end * s.plane() && out.len() >= planes.len() * o.plane(), "depthwise_f32 sizes");
    assert!(weights.len() >= s.c * g.window.kernel[0] * g.window.kernel[1], "depthwise_f32 weights");
    let packs_rows = g.window.stride == [1, 1] && o.w == s.w && LANES.is_multiple_of(o.w) && o.w < LANES;
    let layer = Layer { g, weights, input, bias, relu };
    // SAFETY: the CPU has AVX-512F (asserted); the extents are asserted above.
    unsafe {
        match g.window.stride[1] {
            _ if packs_rows => rows_packed(&layer, planes, out),
            1 => planes_avx512::<1>(&layer, planes, out),
            _ => planes_avx512::<2>(&layer, planes, out),
        }
    }
}

/// What one call of [`depthwise_f32`] computes, as its kernels read it.
#[derive(Clone, Copy)]
struct Layer<'a> {
    g: &'a ConvGeometry,
    weights: &'a [f32],
    input: &'a [f32],
    bias: Option<&'a [f32]>,
    relu: bool,
}

impl Layer<'_> {
    /// Plane `u`'s first input value, its channel's taps, and the bias of its channel.
    fn plane(&self, u: usize) -> (*const f32, &[f32], f32) {
        let (s, [kh, kw]) = (self.g.input, self.g.window.kernel);
        let c = u % s.c;
        let x = self.input[u * s.plane()..][..s.plane()].as_ptr();
        (x, &self.weights[c * kh * kw..][..kh * kw], self.bias.map_or(0.0, |b| b[c]))
    }

    /// `sums + bias`, then the ReLU where the layer has one.
    #[inline(always)]
    fn finish(&self, sums: __m512, bias: __m512) -> __m512 {
        // SAFETY: only called from the AVX-512 kernels, on a CPU that has it.
        let sums = unsafe { _mm512_add_ps(sums, bias) };
        if self.relu {
            // SAFETY: as above.
            return unsafe { _mm512_max_ps(sums, _mm512_setzero_ps()) };
        }
        sums
    }
}

/// The body of [`depthwise_f32`] for column stride `SW` (a build per stride keeps each one's
/// loop free of the other's registers).
///
/// # Safety
/// The CPU supports AVX-512F; the asserts of [`depthwise_f32`] hold; `SW` is the geometry's
/// column stride.
#[target_feature(enable = "avx512f")]
unsafe fn planes_avx512<const SW: usize>(layer: &Layer<'_>, planes: Range<usize>, out: &mut [f32]) {
    let g = layer.g;
    let o = g.output().expect("geometry checked at construction");
    let s = g.input;
    let [kh, kw] = g.window.kernel;
    let sh = g.window.stride[0];
    let [pt, pl, ..] = g.window.pads;
    let (h, w) = (s.h as isize, s.w as isize);
    // Lane `j` of the pair of vectors `(lo, hi)` picks value `2j` (`2j + 1`) of both.
    let evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let odds = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    // Loads per tap row: one per tap column at stride 1; at stride 2 one pair of vectors per two
    // tap columns (tap `kx` takes its even values, tap `kx + 1` its odd ones).
    let loads = kw.div_ceil(SW);
    // Which lanes of load `l` (the two vectors from tap column `l · s_w`) of output columns
    // `ox0 ..` lie inside an input row, at `[ox0 / LANES · loads + l]`: the same for every plane
    // and row.
    let masks: Vec<(__mmask16, __mmask16)> = (0..o.w)
        .step_by(LANES)
        .flat_map(|ox0| {
            (0..loads).map(move |l| {
                let ix = ((ox0 + l) * SW) as isize - pl as isize;
                (columns(ix, w), columns(ix + LANES as isize, w))
            })
        })
        .collect();
    // What a tap row outside the plane reads.
    let zeros = vec![0.0f32; s.w];
    for (u, dst) in planes.zip(out.chunks_exact_mut(o.plane())) {
        let (x, taps, b) = layer.plane(u);
        let b = _mm512_set1_ps(b);
        for oy0 in (0..o.h).step_by(ROWS) {
            for ox0 in (0..o.w).step_by(LANES) {
                // `ROWS` output rows at once: independent sums, so the multiply-adds overlap.
                let mut acc = [_mm512_setzero_ps(); ROWS];
                let masks = &masks[ox0 / LANES * loads..][..loads];
                for ky in 0..kh {
                    // Each row's input row for this tap row; one outside the plane (or past the
                    // output) reads the row of zeros.
                    let mut rows = [zeros.as_ptr(); ROWS];
                    for (r, row) in rows.iter_mut().enumerate() {
                        let iy = ((oy0 + r) * sh + ky) as isize - pt as isize;
                        if iy >= 0 && iy < h && oy0 + r < o.h {
                            *row = x.wrapping_offset(iy * w);
                        }
                    }
                    for (l, &(first, second)) in masks.iter().enumerate() {
                        let kx = l * SW;
                        let ix = ((ox0 + l) * SW) as isize - pl as isize;
                        let tap = _mm512_set1_ps(taps[ky * kw + kx]);
                        let next = (SW == 2 && kx + 1 < kw).then(|| _mm512_set1_ps(taps[ky * kw + kx + 1]));
                        // SAFETY (both loops): every lane read lies in `0..w` of an input row
                        // of this plane or of `zeros` (the masks drop the rest, whose faults
                        // AVX-512 suppresses).
                        if SW == 1 {
                            for (acc, &row) in acc.iter_mut().zip(&rows) {
                                let v = unsafe { _mm512_maskz_loadu_ps(first, row.wrapping_offset(ix)) };
                                *acc = _mm512_fmadd_ps(tap, v, *acc);
                            }
                            continue;
                        }
                        for (acc, &row) in acc.iter_mut().zip(&rows) {
                            let row = row.wrapping_offset(ix);
                            let lo = unsafe { _mm512_maskz_loadu_ps(first, row) };
                            let hi = unsafe { _mm512_maskz_loadu_ps(second, row.wrapping_add(LANES)) };
                            *acc = _mm512_fmadd_ps(tap, _mm512_permutex2var_ps(lo, evens, hi), *acc);
                            if let Some(next) = next {
                                *acc = _mm512_fmadd_ps(next, _mm512_permutex2var_ps(lo, odds, hi), *acc);
                            }
                        }
                    }
                }
                let lanes = LANES.min(o.w - ox0);
                for (r, &acc) in acc.iter().enumerate().take(o.h - oy0) {
                    let acc = layer.finish(acc, b);
                    let at = &mut dst[(oy0 + r) * o.w + ox0..][..lanes];
                    // SAFETY: the store writes `lanes` elements, all inside `at`.
                    unsafe { _mm512_mask_storeu_ps(at.as_mut_ptr(), ((1u32 << lanes) - 1) as __mmask16, acc) };
                }
            }
        }
    }
}

/// [`depthwise_f32`] for stride 1 where an output row is as wide as an input row and a vector
/// holds a whole number `R = 16 / W` of them (planes of 8, 4, 2 columns): lane `j` is column
/// `j mod W` of output row `j / W`, so the `R` rows' inputs for a tap are one contiguous run
/// and every lane does work.
///
/// # Safety
/// As for [`planes_avx512`]; stride 1, `W` output columns = input columns, `W` divides 16.
#[target_feature(enable = "avx512f")]
unsafe fn rows_packed(layer: &Layer<'_>, planes: Range<usize>, out: &mut [f32]) {
    let g = layer.g;
    let o = g.output().expect("geometry checked at construction");
    let s = g.input;
    let [kh, kw] = g.window.kernel;
    let [pt, pl, ..] = g.window.pads;
    let (w, rows) = (s.w, LANES / s.w);
    // The lanes whose column `j mod W + kx − pl` lies inside a row, for each tap column `kx`.
    let columns: Vec<u32> = (0..kw)
        .map(|kx| (0..LANES).filter(|j| (j % w + kx).checked_sub(pl).is_some_and(|x| x < w)).fold(0, |m, j| m | 1 << j))
        .collect();
    // The lanes of output rows `oy ..` whose input row `oy + j / W + ky − pt` lies inside the
    // plane and whose output row exists.
    let rows_inside = |oy: usize, ky: usize| -> u32 {
        (0..rows)
            .filter(|r| oy + r < o.h && (oy + r + ky).checked_sub(pt).is_some_and(|y| y < s.h))
            .fold(0, |m, r| m | ((1 << w) - 1) << (r * w))
    };
    // Those lanes for each block of `ROWS` vectors and tap row, at `[block · kh + ky]`: the same
    // for every plane.
    let inside: Vec<[u32; ROWS]> = (0..o.h)
        .step_by(rows * ROWS)
        .flat_map(|oy0| (0..kh).map(move |ky| std::array::from_fn(|i| rows_inside(oy0 + i * rows, ky))))
        .collect();
    for (u, dst) in planes.zip(out.chunks_exact_mut(o.plane())) {
        let (x, taps, b) = layer.plane(u);
        let b = _mm512_set1_ps(b);
        for (block, oy0) in (0..o.h).step_by(rows * ROWS).enumerate() {
            // `ROWS` vectors of `R` output rows each at once: independent sums.
            let mut acc = [_mm512_setzero_ps(); ROWS];
            for ky in 0..kh {
                let inside = &inside[block * kh + ky];
                for (kx, &columns) in columns.iter().enumerate() {
                    let tap = _mm512_set1_ps(taps[ky * kw + kx]);
                    for (i, acc) in acc.iter_mut().enumerate() {
                        // Lane 0 reads input row `oy0 + i·R + ky − pt`, column `kx − pl`.
                        let at = ((oy0 + i * rows + ky) * w + kx) as isize - (pt * w + pl) as isize;
                        let mask = (inside[i] & columns) as __mmask16;
                        // SAFETY: every unmasked lane reads a column inside a row inside this
                        // plane (the masks); masked lanes are not accessed.
                        let v = unsafe { _mm512_maskz_loadu_ps(mask, x.wrapping_offset(at)) };
                        *acc = _mm512_fmadd_ps(tap, v, *acc);
                    }
                }
            }
            for (i, &acc) in acc.iter().enumerate() {
                let oy = oy0 + i * rows;
                if oy >= o.h {
                    break;
                }
                let acc = layer.finish(acc, b);
                let lanes = (o.h - oy).min(rows) * w;
                let at = &mut dst[oy * w..][..lanes];
                // SAFETY: the store writes `lanes` elements, all inside `at`.
                unsafe { _mm512_mask_storeu_ps(at.as_mut_ptr(), ((1u32 << lanes) - 1) as __mmask16, acc) };
            }
        }
    }
}

/// The lanes `t` of a vector loaded from column `first` with `0 ≤ first + t < width`.
#[inline(always)]
fn columns(first: isize, width: isize) -> __mmask16 {
    let from = (-first).clamp(0, LANES as isize);
    let to = (width - first).clamp(0, LANES as isize);
    if to <= from {
        return 0;
    }
    let ones = |n: isize| ((1u32 << n) - 1) as __mmask16;
    ones(to) & !ones(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_masks_cover_exactly_the_row() {
        assert_eq!(columns(0, 40), 0xffff);
        assert_eq!(columns(-1, 40), 0xfffe);
        assert_eq!(columns(30, 40), 0x03ff);
        assert_eq!(columns(-3, 8), 0b111_1111_1000);
        assert_eq!(columns(8, 8), 0);
        assert_eq!(columns(-20, 8), 0);
    }
}
