//! An AVX-512 matrix product for the shapes of CNN layers (few rows, long `k`, many columns).
//!
//! Written by hand because the `gemm` crate enables its AVX-512 kernels only on nightly
//! compilers, and its stable AVX2 path reaches about half of what this machine can do. The
//! kernel keeps an `8 × 2`-vector tile of `C` in registers, streams a packed panel of `B` and a
//! packed block of `A`, and writes each tile once. Results are the plain sums `Σ_k a·b` in `k`
//! order for every thread count (column panels are split between threads, never `k`).

#![allow(unsafe_code, reason = "SIMD intrinsics; every pointer stays inside the packed buffers sized below")]

use std::arch::x86_64::*;

/// Rows of `C` per register tile.
const MR: usize = 8;
/// Terms per L1-resident chunk of a `B` panel (16 KiB for either element type).
const KC: usize = 128;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// Element types with an AVX-512 tile kernel.
pub trait Avx512Scalar: Copy + Default + Send + Sync + zeroize::Zeroize + 'static {
    /// Columns per tile: two vectors.
    const NR: usize;

    /// Whether this CPU has every instruction this type's tile kernel uses (AVX-512F, and
    /// VNNI for [`Dot16`]): the safe entry points below assert it.
    fn supported() -> bool;

    /// `C[i][j] (+)= Σ_kk a[kk·MR + i] · b[kk·NR + j]` for `i < rows`, `j < width`, straight into
    /// `c` (row stride `ldc`); with `accumulate` the previous values of `C` are added to.
    ///
    /// # Safety
    /// The CPU supports the type's instructions ([`supported`](Self::supported)); `a` holds
    /// `k · MR` and `b` `k · NR` readable elements;
    /// `c + i·ldc + j` is writable for `i < rows ≤ MR`, `j < width ≤ NR`.
    #[allow(clippy::too_many_arguments, reason = "a register-tile kernel's operands")]
    unsafe fn tile(
        k: usize,
        a: *const Self,
        b: *const Self,
        c: *mut Self,
        ldc: usize,
        rows: usize,
        width: usize,
        accumulate: bool,
    );

    /// As [`tile`](Self::tile), with row `kk` of `B` read in place (a direct convolution: the
    /// rows of `B` are runs of the padded input): its first vector at `base + offsets[kk]`, its
    /// second `second` elements further (the next lanes of the same input row, or the same lanes
    /// of the next input row when an output row is one vector wide).
    ///
    /// # Safety
    /// As for `tile`, and both vectors are readable for every `kk < offsets.len()`.
    #[allow(clippy::too_many_arguments, reason = "a register-tile kernel's operands")]
    unsafe fn tile_direct(
        a: *const Self,
        base: *const Self,
        offsets: &[usize],
        second: usize,
        c: *mut Self,
        ldc: usize,
        rows: usize,
        width: usize,
        accumulate: bool,
    );
}

/// One tile kernel per element type: `$lanes` per vector, two vectors per row of the tile.
macro_rules! tile_kernel {
    ($t:ty, $feature:literal, $supported:path, $lanes:expr, $mask:ty, $zero:ident, $set1:ident, $fmadd:ident, $maskz_loadu:ident, $mask_storeu:ident) => {
        impl Avx512Scalar for $t {
            const NR: usize = 2 * $lanes;

            fn supported() -> bool {
                $supported()
            }

            #[target_feature(enable = $feature)]
            unsafe fn tile(
                k: usize,
                a: *const $t,
                b: *const $t,
                c: *mut $t,
                ldc: usize,
                rows: usize,
                width: usize,
                accumulate: bool,
            ) {
                // SAFETY: row kk of the packed panel sits at b + kk·NR, as `tile_direct` expects.
                unsafe { Self::tile_rows(k, a, |kk| b.add(kk * 2 * $lanes), $lanes, c, ldc, rows, width, accumulate) }
            }

            #[target_feature(enable = $feature)]
            unsafe fn tile_direct(
                a: *const $t,
                base: *const $t,
                offsets: &[usize],
                second: usize,
                c: *mut $t,
                ldc: usize,
                rows: usize,
                width: usize,
                accumulate: bool,
            ) {
                // SAFETY: the caller guarantees both vectors of every row are readable.
                unsafe {
                    Self::tile_rows(
                        offsets.len(),
                        a,
                        |kk| base.add(*offsets.get_unchecked(kk)),
                        second,
                        c,
                        ldc,
                        rows,
                        width,
                        accumulate,
                    )
                }
            }
        }

        impl TileRows for $t {
            #[inline(always)]
            unsafe fn tile_rows(
                k: usize,
                a: *const $t,
                b_row: impl Fn(usize) -> *const $t,
                second: usize,
                c: *mut $t,
                ldc: usize,
                rows: usize,
                width: usize,
                accumulate: bool,
            ) {
                // Column masks of the two vectors of a row.
                let lanes_in = |first: usize| (width.saturating_sub(first)).min($lanes);
                let masks: [$mask; 2] = [lanes_in(0), lanes_in($lanes)].map(|n| ((1u32 << n) - 1) as $mask);
                // SAFETY (whole body): the caller of `tile`/`tile_direct` guarantees the extents.
                unsafe {
                    let mut acc = [[$zero(); 2]; MR];
                    if accumulate {
                        for (i, row) in acc.iter_mut().enumerate().take(rows) {
                            for (h, v) in row.iter_mut().enumerate() {
                                *v = $maskz_loadu(masks[h], c.add(i * ldc + h * $lanes));
                            }
                        }
                    }
                    for kk in 0..k {
                        let b = b_row(kk);
                        // Masked: lanes past `width` are never read, so a run may end
                        // exactly where its buffer does.
                        let b0 = $maskz_loadu(masks[0], b);
                        let b1 = $maskz_loadu(masks[1], b.add(second));
                        for (i, row) in acc.iter_mut().enumerate() {
                            let ai = $set1(*a.add(kk * MR + i));
                            row[0] = $fmadd(ai, b0, row[0]);
                            row[1] = $fmadd(ai, b1, row[1]);
                        }
                    }
                    for (i, row) in acc.iter().enumerate().take(rows) {
                        for (h, v) in row.iter().enumerate() {
                            $mask_storeu(c.add(i * ldc + h * $lanes), masks[h], *v);
                        }
                    }
                }
            }
        }
    };
}

/// The shared body of both tile kernels, generic over where the rows of `B` come from.
trait TileRows: Sized {
    /// # Safety
    /// See [`Avx512Scalar::tile`]; `b_row(kk)` points at `NR` readable elements.
    #[allow(clippy::too_many_arguments, reason = "a register-tile kernel's operands")]
    unsafe fn tile_rows(
        k: usize,
        a: *const Self,
        b_row: impl Fn(usize) -> *const Self,
        second: usize,
        c: *mut Self,
        ldc: usize,
        rows: usize,
        width: usize,
        accumulate: bool,
    );
}

tile_kernel!(
    f32,
    "avx512f",
    available,
    16,
    __mmask16,
    _mm512_setzero_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_maskz_loadu_ps,
    _mm512_mask_storeu_ps
);
tile_kernel!(
    f64,
    "avx512f",
    available,
    8,
    __mmask8,
    _mm512_setzero_pd,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_maskz_loadu_pd,
    _mm512_mask_storeu_pd
);

/// Two `i16` terms of a product packed in 32 bits (the even term low), multiplied by the
/// AVX-512 VNNI instruction `vpdpwssd`: an operand pair `(a0, a1)` times `(b0, b1)` adds
/// `a0·b0 + a1·b1` to an `i32` sum, which a product's element holds. Twice the terms per
/// instruction of an `f32` FMA, exact while every sum stays within `i32`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(transparent)]
pub(crate) struct Dot16(pub(crate) i32);

impl zeroize::DefaultIsZeroes for Dot16 {}

impl Dot16 {
    /// The pair `(even, odd)`.
    #[inline]
    pub(crate) fn pair(even: i16, odd: i16) -> Self {
        Dot16((even as u16 as u32 | (odd as u16 as u32) << 16) as i32)
    }
}

/// Whether this CPU runs the [`Dot16`] kernel.
pub(crate) fn dot16_available() -> bool {
    available() && is_x86_feature_detected!("avx512vnni")
}

#[inline]
#[target_feature(enable = "avx512f")]
fn dot16_set1(v: Dot16) -> __m512i {
    _mm512_set1_epi32(v.0)
}

#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn dot16_madd(a: __m512i, b: __m512i, acc: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, a, b)
}

/// # Safety
/// The lanes of `mask` are readable at `p`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dot16_maskz_loadu(mask: __mmask16, p: *const Dot16) -> __m512i {
    // SAFETY: the caller guarantees the masked lanes are readable; Dot16 is a transparent i32.
    unsafe { _mm512_maskz_loadu_epi32(mask, p.cast()) }
}

/// # Safety
/// The lanes of `mask` are writable at `p`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dot16_mask_storeu(p: *mut Dot16, mask: __mmask16, v: __m512i) {
    // SAFETY: the caller guarantees the masked lanes are writable; Dot16 is a transparent i32.
    unsafe { _mm512_mask_storeu_epi32(p.cast(), mask, v) }
}

tile_kernel!(
    Dot16,
    "avx512f,avx512vnni",
    dot16_available,
    16,
    __mmask16,
    _mm512_setzero_si512,
    dot16_set1,
    dot16_madd,
    dot16_maskz_loadu,
    dot16_mask_storeu
);

/// `c = a · b` for row-major `a` (`m × k`), `b` (`k × n`), `c` (`m × n`), on up to `threads`
/// tasks (the calling thread and the kernels' helpers); asserts [`Avx512Scalar::supported`].
pub fn matmul<T: Avx512Scalar>(m: usize, n: usize, k: usize, a: &[T], b: &[T], c: &mut [T], threads: usize) {
    assert!(b.len() >= k * n, "matmul operand sizes");
    let fill = |j0: usize, w: usize, panel: &mut [T]| {
        for kk in 0..k {
            panel[kk * T::NR..kk * T::NR + w].copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
        }
    };
    matmul_panels(m, n, k, &pack_rows(m, k, a), &fill, c, threads);
}

/// `c = A · B` for `A` as [`pack_rows`] leaves it, where `B` (`k × n`) is never stored:
/// `fill(j0, w, panel)` writes columns
/// `j0 .. j0 + w` of `B` into `panel[kk · NR + j]` (an implicit im2col for convolutions). Panels
/// are split between up to `threads` tasks; every element of `c` is written exactly once.
pub fn matmul_panels<T: Avx512Scalar>(
    m: usize,
    n: usize,
    k: usize,
    apack: &[T],
    fill: &(dyn Fn(usize, usize, &mut [T]) + Sync),
    c: &mut [T],
    threads: usize,
) {
    assert!(T::supported(), "the CPU lacks the kernel's instructions");
    assert!(apack.len() >= packed_rows_len(m, k) && c.len() >= m * n, "matmul operand sizes");
    let nr = T::NR;
    let blocks = m.div_ceil(MR);
    let panels = n.div_ceil(nr);
    let out = OutPtr(c.as_mut_ptr());
    let part = |range: std::ops::Range<usize>| {
        // Wiped when dropped: a panel holds the input's values (a share's limbs).
        let mut bpack = zeroize::Zeroizing::new(vec![T::default(); k * nr]);
        for p in range {
            let (j0, w) = (p * nr, nr.min(n - p * nr));
            fill(j0, w, &mut bpack);
            // Blocks of KC terms keep the B chunk in L1 while every row block uses it.
            for k0 in (0..k).step_by(KC) {
                let kc = KC.min(k - k0);
                for blk in 0..blocks {
                    let a = &apack[blk * k * MR + k0 * MR..];
                    let rows = MR.min(m - blk * MR);
                    // SAFETY: `T::supported()` was checked above; `a` holds kc·MR and the B chunk
                    // kc·NR elements; rows < m and j0 + w ≤ n stay inside `c` (m·n, checked
                    // above), and panels are disjoint column ranges, so no two tasks write the
                    // same element.
                    unsafe {
                        T::tile(
                            kc,
                            a.as_ptr(),
                            bpack[k0 * nr..].as_ptr(),
                            out.at(blk * MR * n + j0),
                            n,
                            rows,
                            w,
                            k0 > 0,
                        )
                    };
                }
            }
        }
    };
    run_split(threads, panels, part);
}

/// Runs `part(range)` over ranges that cover `0..units`, one per thread: on the calling thread
/// and, for `threads > 1`, up to `threads − 1` of the kernels' spinning helpers, each claiming
/// the next unclaimed range (a helper that has not woken by the time the caller finishes its own
/// leaves its range to the caller; finer ranges measured slower at batch 1). One after another
/// on the calling thread when a concurrent caller holds the helpers (its work keeps the cores
/// busy) or there are none.
fn run_split(threads: usize, units: usize, part: impl Fn(std::ops::Range<usize>) + Sync) {
    let tasks = threads.clamp(1, units.max(1));
    let task = |t: usize| part(super::share(t, tasks, units));
    if tasks <= 1 || !super::team::run(threads, tasks, &|_, t| task(t)) {
        (0..tasks).for_each(task);
    }
}

/// A stride-1 convolution as a direct product over zero-padded images: for each of `images`
/// padded images (`plane_len` elements apart, rows `wp` apart, each followed by at least `NR`
/// readable elements), `c[o][img·oh·ow + oy·ow + ox] = Σ_kk a[o][kk] · img[offsets[kk] + oy·wp + ox]`,
/// where `offsets[kk]` locates tap `kk = (ch, ky, kx)` as `ch·plane + ky·wp + kx`, and `apack`
/// is `a` as [`pack_rows`] leaves it. No im2col is built: the kernel reads each tap's run of `NR`
/// inputs where it lies.
#[allow(clippy::too_many_arguments, reason = "the geometry of a direct convolution")]
pub fn conv_direct<T: Avx512Scalar>(
    m: usize,
    apack: &[T],
    padded: &[T],
    plane_len: usize,
    images: usize,
    (oh, ow, wp): (usize, usize, usize),
    offsets: &[usize],
    c: &mut [T],
    threads: usize,
) {
    assert!(T::supported(), "the CPU lacks the kernel's instructions");
    let (k, nr) = (offsets.len(), T::NR);
    let n = images * oh * ow;
    let reach = offsets.iter().max().copied().unwrap_or(0) + oh * wp + ow + nr;
    assert!(
        apack.len() >= packed_rows_len(m, k) && c.len() >= m * n && padded.len() >= (images - 1) * plane_len + reach,
        "conv_direct sizes"
    );
    // Output rows one vector wide go two to a tile (they are contiguous in `c`).
    let lanes = nr / 2;
    let rows_per_tile = if ow == lanes { 2 } else { 1 };
    let row_units = oh.div_ceil(rows_per_tile);
    let units = images * row_units;
    let out = OutPtr(c.as_mut_ptr());
    run_split(threads, units, |range| {
        for unit in range {
            let (img, oy) = (unit / row_units, unit % row_units * rows_per_tile);
            for ox0 in (0..ow).step_by(nr) {
                let (w, second) =
                    if rows_per_tile == 2 { (ow * rows_per_tile.min(oh - oy), wp) } else { (nr.min(ow - ox0), lanes) };
                let base = &padded[img * plane_len + oy * wp + ox0..];
                // SAFETY: every tap's vectors lie within `padded` (the `reach` assertion);
                // col + w ≤ n, and units are disjoint output runs across tasks.
                unsafe {
                    direct_column(
                        m,
                        0..m.div_ceil(MR),
                        apack,
                        offsets,
                        base,
                        second,
                        out,
                        img * oh * ow + oy * ow + ox0,
                        n,
                        w,
                    )
                };
            }
        }
    });
}

/// A stride-1 convolution computed along whole padded rows: for each of `images` padded images
/// (`plane_len` elements apart; the tiles' loads are masked at `span`, so none reads past it) and each
/// `j < span`, `c[img][o][j] = Σ_kk a[o][kk] · img[offsets[kk] + j]`, `c` holding `m × span`
/// per image. With `j = oy·wp + ox` and `span = (oh − 1)·wp + ow`, the entries with `ox < ow`
/// are the convolution's outputs; the others straddle two rows, and the caller drops them;
/// `apack` is `a` as [`pack_rows`] leaves it. Every tile covers `NR` consecutive positions
/// whatever the row width, and no im2col is built.
#[allow(clippy::too_many_arguments, reason = "the geometry of a direct convolution")]
pub fn conv_direct_rows<T: Avx512Scalar>(
    m: usize,
    apack: &[T],
    padded: &[T],
    plane_len: usize,
    images: usize,
    span: usize,
    offsets: &[usize],
    c: &mut [T],
    threads: usize,
) {
    assert!(T::supported(), "the CPU lacks the kernel's instructions");
    let (k, nr) = (offsets.len(), T::NR);
    let reach = offsets.iter().max().copied().unwrap_or(0) + span;
    assert!(
        images > 0
            && apack.len() >= packed_rows_len(m, k)
            && c.len() >= images * m * span
            && padded.len() >= (images - 1) * plane_len + reach,
        "conv_direct_rows sizes"
    );
    let tiles = span.div_ceil(nr);
    // Several threads split the row blocks too, so a small image's few tiles still share out.
    let blocks = if threads > 1 { m.div_ceil(MR) } else { 1 };
    let units = images * tiles * blocks;
    let out = OutPtr(c.as_mut_ptr());
    run_split(threads, units, |range| {
        for unit in range {
            let (img, j0, block) = (unit / (tiles * blocks), unit / blocks % tiles * nr, unit % blocks);
            let rows = if blocks == 1 { 0..m.div_ceil(MR) } else { block..block + 1 };
            let base = &padded[img * plane_len + j0..];
            // SAFETY: every tap's vectors lie within `padded` (the `reach` assertion); each
            // image's block of `c` is `m × span` and j0 + w ≤ span; units are disjoint.
            unsafe {
                direct_column(
                    m,
                    rows,
                    apack,
                    offsets,
                    base,
                    nr / 2,
                    OutPtr(out.at(img * m * span)),
                    j0,
                    span,
                    nr.min(span - j0),
                )
            };
        }
    });
}

/// Columns `col .. col + w` of the rows of `c` in the `MR`-row `blocks` (row stride `ldc`) from
/// the taps at `offsets` past `base` (`second` elements between a row's two vectors), `apack`
/// as [`pack_rows`] leaves it.
///
/// # Safety
/// `base + offsets[kk] + second` has a vector of readable elements for every tap; `c` holds
/// `m` rows of `ldc ≥ col + w` elements that no other task writes in these rows and columns.
#[allow(clippy::too_many_arguments, reason = "a register-tile kernel's operands")]
unsafe fn direct_column<T: Avx512Scalar>(
    m: usize,
    blocks: std::ops::Range<usize>,
    apack: &[T],
    offsets: &[usize],
    base: &[T],
    second: usize,
    c: OutPtr<T>,
    col: usize,
    ldc: usize,
    w: usize,
) {
    let k = offsets.len();
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for blk in blocks.clone() {
            let rows = MR.min(m - blk * MR);
            // SAFETY: `T::supported()` was checked by the callers; the extents are the caller's.
            unsafe {
                T::tile_direct(
                    apack[blk * k * MR + k0 * MR..].as_ptr(),
                    base.as_ptr(),
                    &offsets[k0..k0 + kc],
                    second,
                    c.at(blk * MR * ldc + col),
                    ldc,
                    rows,
                    w,
                    k0 > 0,
                )
            };
        }
    }
}

/// Filters per block of [`pack_channels`]: one vector for at most 16 filters, two otherwise
/// (a second vector of idle lanes would halve a 16-filter layer's speed).
fn channel_block(m: usize) -> usize {
    if m <= 16 { 16 } else { 32 }
}

/// Register lanes in a tile of [`conv_direct_channels`]: `filter vectors × positions`.
const TILE_VECTORS: usize = 16;

/// `a` (`m × k`, row-major filters) as [`conv_direct_channels`] reads it:
/// `[filter block][kk][channel_block(m)]`, zero past `m`.
pub fn pack_channels(m: usize, k: usize, a: &[f32]) -> Vec<f32> {
    let block = channel_block(m);
    let mut wpack = vec![0.0f32; m.div_ceil(block) * k * block];
    for (o, row) in a.chunks(k).take(m).enumerate() {
        let (blk, lane) = (o / block, o % block);
        for (kk, &v) in row.iter().enumerate() {
            wpack[(blk * k + kk) * block + lane] = v;
        }
    }
    wpack
}

/// A stride-1 `f32` convolution vectorized over output channels, for planes narrower than a
/// vector, where a run of positions ([`conv_direct_rows`]) would leave lanes idle: a tile is 32
/// filters × 8 output positions (16 × 16 for at most 16 filters), each tap one load of each of
/// the tile's filter vectors and a broadcast of each position's input. For each of `images`
/// padded images (`plane_len` elements apart, rows `wp` apart),
/// `c[img][o][oy·ow + ox] = Σ_kk a[o][kk] · img[offsets[kk] + oy·wp + ox]`, in `kk` order; `c`
/// is NCHW (`images × m × oh·ow`); the filters as [`pack_channels`] leaves them.
#[allow(clippy::too_many_arguments, reason = "the geometry of a direct convolution")]
pub fn conv_direct_channels(
    m: usize,
    wpack: &[f32],
    padded: &[f32],
    plane_len: usize,
    images: usize,
    (oh, ow, wp): (usize, usize, usize),
    offsets: &[usize],
    c: &mut [f32],
    threads: usize,
) {
    assert!(available(), "AVX-512F is required");
    let (k, plane, block) = (offsets.len(), oh * ow, channel_block(m));
    // Positions per tile: the register tile holds TILE_VECTORS vectors.
    let positions = TILE_VECTORS / (block / 16);
    let reach = offsets.iter().max().copied().unwrap_or(0) + (oh - 1) * wp + ow;
    assert!(
        images > 0
            && ow > 0
            && oh > 0
            && wpack.len() >= m.div_ceil(block) * k * block
            && c.len() >= images * m * plane
            && padded.len() >= (images - 1) * plane_len + reach,
        "conv_direct_channels sizes"
    );
    let blocks = m.div_ceil(block);
    let tiles = plane.div_ceil(positions);
    let units = images * blocks * tiles;
    let out = OutPtr(c.as_mut_ptr());
    run_split(threads, units, |range| {
        for unit in range {
            let (img, blk, tile) = (unit / (blocks * tiles), unit / tiles % blocks, unit % tiles);
            let first = tile * positions;
            let count = positions.min(plane - first);
            // Each position's padded index; past the plane's end, the last one's (computed, dropped).
            let at: [usize; TILE_VECTORS] = std::array::from_fn(|j| {
                let p = first + j.min(count - 1);
                p / ow * wp + p % ow
            });
            let (w, base) = (&wpack[blk * k * block..][..k * block], padded[img * plane_len..].as_ptr());
            let (dst, channels) = (OutPtr(out.at((img * m + blk * block) * plane + first)), block.min(m - blk * block));
            // SAFETY: `available()` was checked above; every read lies within the image (the
            // `reach` assertion, positions < plane), the packed block holds k·block values, and
            // units write disjoint (channel, position) elements of `c`.
            unsafe {
                if block == 16 {
                    channel_tile::<1, 16>(w, base, offsets, &at, dst, plane, channels, count)
                } else {
                    channel_tile::<2, 8>(
                        w,
                        base,
                        offsets,
                        at[..8].try_into().expect("8 positions"),
                        dst,
                        plane,
                        channels,
                        count,
                    )
                }
            };
        }
    });
}

/// One tile of [`conv_direct_channels`]: `c[o · plane + j] = Σ_kk w[kk][o] · base[offsets[kk] +
/// at[j]]` for `o < channels ≤ 16·V`, `j < count ≤ P`.
///
/// # Safety
/// The CPU supports AVX-512F; `w` holds `V` vectors per tap; `base + offsets[kk] + at[j]` is
/// readable for every tap and position; `c + o · plane + j` is writable for `o < channels`,
/// `j < count`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments, reason = "a register-tile kernel's operands")]
unsafe fn channel_tile<const V: usize, const P: usize>(
    w: &[f32],
    base: *const f32,
    offsets: &[usize],
    at: &[usize; P],
    c: OutPtr<f32>,
    plane: usize,
    channels: usize,
    count: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; P];
    for (filters, &off) in w.chunks_exact(V * 16).zip(offsets) {
        // SAFETY: the chunk holds V vectors; the reads are the caller's.
        unsafe {
            let wv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(filters.as_ptr().add(16 * v)));
            for (sums, &p) in acc.iter_mut().zip(at) {
                let x = _mm512_set1_ps(*base.add(off + p));
                for (s, w) in sums.iter_mut().zip(&wv) {
                    *s = _mm512_fmadd_ps(x, *w, *s);
                }
            }
        }
    }
    if P == 8 {
        // SAFETY: the caller's extents.
        return unsafe { store_transposed::<V, P>(&acc, c, plane, channels, count) };
    }
    let mut lanes = [[0.0f32; 16]; V];
    for (j, sums) in acc.iter().enumerate().take(count) {
        for (lane, s) in lanes.iter_mut().zip(sums) {
            // SAFETY: each entry of `lanes` holds one vector.
            unsafe { _mm512_storeu_ps(lane.as_mut_ptr(), *s) };
        }
        for (o, &v) in lanes.as_flattened().iter().enumerate().take(channels) {
            // SAFETY: o < channels and j < count (the caller's extents).
            unsafe { *c.at(o * plane + j) = v };
        }
    }
}

/// Writes a tile of 8 positions (`acc[j][v]`, lane `l`: channel `16v + l` at position `j`) to
/// `c + o · plane + j` for `o < channels`, `j < count`: each vector's 16 channels × 8 positions
/// transposed in registers, so every channel's positions go out as one masked store instead of
/// one scalar store each.
///
/// # Safety
/// The CPU supports AVX-512F; `P == 8`; `c + o · plane + j` is writable for `o < channels`,
/// `j < count`.
#[target_feature(enable = "avx512f")]
unsafe fn store_transposed<const V: usize, const P: usize>(
    acc: &[[__m512; V]; P],
    c: OutPtr<f32>,
    plane: usize,
    channels: usize,
    count: usize,
) {
    let mask = ((1u32 << count) - 1) as __mmask16;
    #[allow(clippy::needless_range_loop, reason = "`v` picks a vector of every position and a block of channels")]
    for v in 0..V {
        let r: [__m512; 8] = [acc[0][v], acc[1][v], acc[2][v], acc[3][v], acc[4][v], acc[5][v], acc[6][v], acc[7][v]];
        // Within each 128-bit lane `L` (channels 4L ..): pairs of positions interleaved, then
        // `s[q]` holds channel `4L + q` at positions 0..4 and `s[q + 4]` at positions 4..8.
        let t = [
            _mm512_unpacklo_ps(r[0], r[1]),
            _mm512_unpackhi_ps(r[0], r[1]),
            _mm512_unpacklo_ps(r[2], r[3]),
            _mm512_unpackhi_ps(r[2], r[3]),
            _mm512_unpacklo_ps(r[4], r[5]),
            _mm512_unpackhi_ps(r[4], r[5]),
            _mm512_unpacklo_ps(r[6], r[7]),
            _mm512_unpackhi_ps(r[6], r[7]),
        ];
        let s = [
            _mm512_shuffle_ps(t[0], t[2], 0x44),
            _mm512_shuffle_ps(t[0], t[2], 0xEE),
            _mm512_shuffle_ps(t[1], t[3], 0x44),
            _mm512_shuffle_ps(t[1], t[3], 0xEE),
            _mm512_shuffle_ps(t[4], t[6], 0x44),
            _mm512_shuffle_ps(t[4], t[6], 0xEE),
            _mm512_shuffle_ps(t[5], t[7], 0x44),
            _mm512_shuffle_ps(t[5], t[7], 0xEE),
        ];
        for q in 0..4 {
            // Lanes 0 and 1 of both halves, then 2 and 3: channels `q` and `4 + q` (then `8 + q`
            // and `12 + q`), each reordered to its 8 positions in one 256-bit half.
            let low = _mm512_shuffle_f32x4(s[q], s[q + 4], 0x44);
            let high = _mm512_shuffle_f32x4(s[q], s[q + 4], 0xEE);
            for (first, pair) in [(q, low), (8 + q, high)] {
                let pair = _mm512_shuffle_f32x4(pair, pair, 0xD8);
                let (o, o2) = (16 * v + first, 16 * v + first + 4);
                // SAFETY: `count` lanes from `c + o · plane` (and, from the upper half, from
                // `c + o2 · plane`) for channels below `channels`: the caller's extents; masked
                // lanes are not accessed.
                unsafe {
                    if o < channels {
                        _mm512_mask_storeu_ps(c.at(o * plane), mask, pair);
                    }
                    if o2 < channels {
                        _mm512_mask_storeu_ps(c.at(o2 * plane).wrapping_sub(8), mask << 8, pair);
                    }
                }
            }
        }
    }
}

/// Rows of `w` per block of [`dense_f32`].
const DENSE_ROWS: usize = 4;

/// A fully connected layer in `f32`: `c[b][o] = Σ_kk w[o][kk] · x[b][kk]` for row-major `w`
/// (`m × k`) and `x` (`batch × k`), straight into `c` (`batch × m`). Each weight row is read
/// where it lies (nothing is packed), four rows against four images at a time (one image at a
/// time for a single one); blocks of rows are split between up to `threads` tasks.
pub fn dense_f32(m: usize, k: usize, w: &[f32], x: &[f32], batch: usize, c: &mut [f32], threads: usize) {
    assert!(available(), "AVX-512F is required");
    assert!(w.len() >= m * k && x.len() >= batch * k && c.len() >= batch * m, "dense_f32 sizes");
    if m == 0 || batch == 0 {
        return;
    }
    let units = m.div_ceil(DENSE_ROWS);
    let threads = threads.clamp(1, 1 + m * k * batch / super::PARALLEL_MIN_MACS);
    let out = OutPtr(c.as_mut_ptr());
    run_split(threads, units, |range| {
        for unit in range {
            // Past the last row or image, a block repeats it; the repeats are not written.
            let rows: [usize; DENSE_ROWS] = std::array::from_fn(|i| (unit * DENSE_ROWS + i).min(m - 1));
            let row_ptrs = rows.map(|o| w[o * k..].as_ptr());
            if batch == 1 {
                // SAFETY: `available()` was checked; every pointer has `k` readable elements.
                let sums = unsafe { dense_block::<1>(row_ptrs, [x.as_ptr()], k) };
                write_block(&sums, &rows, &[0], m, out);
                continue;
            }
            for b0 in (0..batch).step_by(4) {
                let images: [usize; 4] = std::array::from_fn(|j| (b0 + j).min(batch - 1));
                // SAFETY: as above.
                let sums = unsafe { dense_block::<4>(row_ptrs, images.map(|b| x[b * k..].as_ptr()), k) };
                write_block(&sums, &rows, &images, m, out);
            }
        }
    });
}

/// Writes `sums[i][j]` to `c[images[j]][rows[i]]` (`c` is `batch × m`), each element once
/// whatever the repeats in `rows` and `images`.
fn write_block<const NB: usize>(
    sums: &[[f32; NB]; DENSE_ROWS],
    rows: &[usize; DENSE_ROWS],
    images: &[usize; NB],
    m: usize,
    c: OutPtr<f32>,
) {
    for (i, (row, &o)) in sums.iter().zip(rows).enumerate() {
        for (j, (&v, &b)) in row.iter().zip(images).enumerate() {
            if (i == 0 || o != rows[i - 1]) && (j == 0 || b != images[j - 1]) {
                // SAFETY: b < batch and o < m index `c` (checked in `dense_f32`); rows belong to
                // one task, so no two tasks write the same element.
                unsafe { *c.at(b * m + o) = v };
            }
        }
    }
}

/// `Σ_kk w[i][kk] · x[j][kk]` for four weight rows and `NB` images, sixteen terms at a time.
///
/// # Safety
/// The CPU supports AVX-512F; every pointer has `k` readable elements.
#[target_feature(enable = "avx512f")]
unsafe fn dense_block<const NB: usize>(
    w: [*const f32; DENSE_ROWS],
    x: [*const f32; NB],
    k: usize,
) -> [[f32; NB]; DENSE_ROWS] {
    let mut acc = [[_mm512_setzero_ps(); NB]; DENSE_ROWS];
    let mut xv = [_mm512_setzero_ps(); NB];
    for kk in (0..k).step_by(16) {
        let mask = if k - kk >= 16 { !0 } else { ((1u32 << (k - kk)) - 1) as __mmask16 };
        // SAFETY: the mask keeps every load inside the `k` elements of its row.
        unsafe {
            for (v, p) in xv.iter_mut().zip(&x) {
                *v = _mm512_maskz_loadu_ps(mask, p.add(kk));
            }
            for (row, p) in acc.iter_mut().zip(&w) {
                let wv = _mm512_maskz_loadu_ps(mask, p.add(kk));
                for (a, v) in row.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(wv, *v, *a);
                }
            }
        }
    }
    let mut sums = [[0.0; NB]; DENSE_ROWS];
    for (s, a) in sums.iter_mut().zip(&acc) {
        for (s, a) in s.iter_mut().zip(a) {
            *s = _mm512_reduce_add_ps(*a);
        }
    }
    sums
}

/// Elements of an `m × k` matrix as [`pack_rows`] leaves it.
pub fn packed_rows_len(m: usize, k: usize) -> usize {
    m.div_ceil(MR) * k * MR
}

/// `a` (`m × k`, row-major) as the row-tile kernels ([`matmul_panels`], [`conv_direct`],
/// [`conv_direct_rows`]) read it: `[row block][kk][MR]`, zero rows past `m`.
pub fn pack_rows<T: Avx512Scalar>(m: usize, k: usize, a: &[T]) -> Vec<T> {
    let mut apack = vec![T::default(); packed_rows_len(m, k)];
    for (blk, pack) in apack.chunks_mut(k * MR).enumerate() {
        for i in 0..MR.min(m - blk * MR) {
            for (kk, &v) in a[(blk * MR + i) * k..][..k].iter().enumerate() {
                pack[kk * MR + i] = v;
            }
        }
    }
    apack
}

/// The output matrix, written by several tasks at disjoint elements.
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);
impl<T> OutPtr<T> {
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: tasks write disjoint column ranges through the pointer; `matmul_panels` holds the
// exclusive borrow of the buffer for the whole parallel loop.
unsafe impl<T: Send> Send for OutPtr<T> {}
// SAFETY: as for Send.
unsafe impl<T: Send> Sync for OutPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for kk in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + kk] * b[kk * n + j];
                }
            }
        }
        c
    }

    /// Pairs of `i16` terms multiply into exact `i32` sums at the extremes of both halves, over
    /// ragged shapes and thread counts.
    #[test]
    fn dot16_sums_pairs_exactly() {
        if !dot16_available() {
            return;
        }
        let v = |i: usize| [i16::MIN, i16::MAX, -1, 0, 1, 7, -300][i % 7];
        let halves = |d: Dot16| [(d.0 as i16) as i64, (d.0 >> 16) as i64];
        for (m, n, k) in [(1, 1, 1), (8, 32, 3), (10, 33, 7), (17, 70, 2)] {
            let a: Vec<Dot16> = (0..m * k).map(|i| Dot16::pair(v(i) / 64, v(i + 3) / 64)).collect();
            let b: Vec<Dot16> = (0..k * n).map(|i| Dot16::pair(v(i + 1), v(i + 5))).collect();
            let expect: Vec<i32> = (0..m * n)
                .map(|ij| {
                    let (i, j) = (ij / n, ij % n);
                    let sum: i64 = (0..k)
                        .map(|kk| {
                            let (x, y) = (halves(a[i * k + kk]), halves(b[kk * n + j]));
                            x[0] * y[0] + x[1] * y[1]
                        })
                        .sum();
                    i32::try_from(sum).expect("the test's sums fit i32")
                })
                .collect();
            for threads in [1, 2, 3] {
                let mut c = vec![Dot16(-1); m * n];
                matmul(m, n, k, &a, &b, &mut c, threads);
                assert_eq!(c.iter().map(|d| d.0).collect::<Vec<_>>(), expect, "{m}×{n}×{k} threads {threads}");
            }
        }
        assert_eq!([Dot16::pair(-2, 3), Dot16::pair(i16::MIN, -1)].map(halves), [[-2, 3], [i16::MIN as i64, -1]]);
    }

    #[test]
    fn matches_naive_on_ragged_shapes() {
        if !available() {
            return;
        }
        for (m, n, k) in [(1, 1, 1), (8, 16, 3), (10, 33, 7), (64, 1024, 27), (17, 5, 100), (3, 70, 1)] {
            let a: Vec<f64> = (0..m * k).map(|i| (i % 13) as f64 - 6.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i % 7) as f64 - 3.0).collect();
            let expect = naive(m, n, k, &a, &b);
            for threads in [1, 2, 3] {
                let mut c = vec![f64::NAN; m * n];
                matmul(m, n, k, &a, &b, &mut c, threads);
                assert_eq!(c, expect, "f64 {m}×{n}×{k} threads {threads}");
                let (af, bf): (Vec<f32>, Vec<f32>) =
                    (a.iter().map(|&v| v as f32).collect(), b.iter().map(|&v| v as f32).collect());
                let mut cf = vec![f32::NAN; m * n];
                matmul(m, n, k, &af, &bf, &mut cf, threads);
                assert_eq!(cf, expect.iter().map(|&v| v as f32).collect::<Vec<_>>(), "f32 {m}×{n}×{k}");
            }
        }
    }
}
