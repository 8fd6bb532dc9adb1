//! 2-D convolution (NCHW, stride, zero padding, batch, groups) as im2col + matrix product, over
//! `Z_t` (exact, through limbs) and over `f32`. A fully connected layer is the same kernel on a
//! `K × 1 × 1` image with a `1 × 1` window; a grouped convolution is one product per group, each
//! reading its group's channels of every image in place.

use rayon::prelude::*;
use zeroize::Zeroize;

use crate::zt;

use super::depthwise::depthwise;
use super::geometry::{ImageShape, Window2d};
use super::im2col::Im2col;
use super::limbs::LimbPlan;
use super::matmul::{GemmScalar, matmul};

/// The shape of a convolution: input image, output channels and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Input image shape.
    pub input: ImageShape,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel, stride and padding.
    pub window: Window2d,
}

impl ConvGeometry {
    /// A fully connected layer `in_features → out_features` as a convolution.
    pub const fn dense(in_features: usize, out_features: usize) -> Self {
        Self { input: ImageShape::new(in_features, 1, 1), out_channels: out_features, window: Window2d::square(1, 1) }
    }

    /// Output image shape, or `None` when the window does not fit the input.
    pub fn output(&self) -> Option<ImageShape> {
        let (h, w) = self.window.output_hw(self.input.h, self.input.w)?;
        Some(ImageShape::new(self.out_channels, h, w))
    }

    /// Terms per output: `C · kh · kw`.
    pub const fn terms(&self) -> usize {
        self.input.c * self.window.size()
    }

    /// Multiply-accumulates per image.
    pub fn macs(&self) -> usize {
        self.output().map_or(0, |o| o.len() * self.terms())
    }

    /// The geometry of one of `groups` groups (its share of the input and output channels), or
    /// `None` when `groups` is 0 or does not divide both channel counts.
    pub fn group(&self, groups: usize) -> Option<ConvGeometry> {
        (groups > 0 && self.input.c.is_multiple_of(groups) && self.out_channels.is_multiple_of(groups)).then(|| {
            ConvGeometry {
                input: ImageShape::new(self.input.c / groups, self.input.h, self.input.w),
                out_channels: self.out_channels / groups,
                window: self.window,
            }
        })
    }
}

/// Convolution weights for the exact `Z_t` kernel: small signed integers (fixed-point weights),
/// `out_channels × terms / groups`, row-major (OIHW flattened, `I` the channels of one group).
///
/// Outside the kernel a grouped convolution reads as the ordinary convolution it equals:
/// [`geometry`](Self::geometry) spans every channel and [`integer_weights`](Self::integer_weights)
/// hold zeros where a filter does not read a channel.
#[derive(Debug, Clone)]
pub struct ConvKernel {
    geometry: ConvGeometry,
    groups: usize,
    weights: Vec<f64>,
    plan: LimbPlan,
    /// The same weights for the AVX-512 VNNI kernel, where their sums allow it (one group).
    #[cfg(target_arch = "x86_64")]
    dot16: Option<Box<super::dot16::Dot16Weights>>,
}

impl ConvKernel {
    /// Builds the kernel; `None` when the sizes disagree or the window does not fit.
    pub fn new(geometry: ConvGeometry, weights: &[i64]) -> Option<Self> {
        Self::grouped(geometry, 1, weights)
    }

    /// Builds a kernel of `groups` groups: filter `o` reads the input channels of group
    /// `o / (out_channels / groups)`. `None` when the sizes disagree, `groups` does not divide
    /// both channel counts or the window does not fit.
    pub fn grouped(geometry: ConvGeometry, groups: usize, weights: &[i64]) -> Option<Self> {
        let group = geometry.group(groups)?;
        group.output()?;
        if weights.len() != geometry.out_channels * group.terms() {
            return None;
        }
        let max_abs = weights.iter().map(|w| w.unsigned_abs()).max().unwrap_or(0);
        // Weights are small fixed-point integers, far below 2^53: the conversion is exact.
        if max_abs >= 1 << 40 {
            return None;
        }
        let plan = LimbPlan::for_product(max_abs, group.terms());
        Some(Self {
            geometry,
            groups,
            weights: weights.iter().map(|&w| w as f64).collect(),
            plan,
            #[cfg(target_arch = "x86_64")]
            dot16: (groups == 1)
                .then(|| super::dot16::Dot16Weights::new(&geometry, weights, max_abs).map(Box::new))
                .flatten(),
        })
    }

    /// The convolution's shape (every channel, whatever the groups).
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// Groups of channels (1 for an ordinary convolution).
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// Multiply-accumulates per image the kernel performs (a group's filters read its channels
    /// only).
    pub fn macs(&self) -> usize {
        self.geometry.macs() / self.groups
    }

    /// The weights as the ordinary convolution's, `out_channels × terms`, row-major (OIHW
    /// flattened), zero where a filter does not read a channel.
    pub fn integer_weights(&self) -> Vec<i64> {
        let terms = self.geometry.terms();
        let mut dense = vec![0; self.geometry.out_channels * terms];
        for (o, (first, row)) in self.rows().enumerate() {
            dense[o * terms + first..][..row.len()].iter_mut().zip(row).for_each(|(d, &w)| *d = w as i64);
        }
        dense
    }

    /// The weights as stored: `out_channels × terms / groups`, each filter over its group's
    /// channels only.
    pub fn group_weights(&self) -> Vec<i64> {
        self.weights.iter().map(|&w| w as i64).collect()
    }

    /// Each filter's weights, in filter order, with the term of the ordinary convolution its
    /// first weight multiplies (the first of its group's channels).
    fn rows(&self) -> impl Iterator<Item = (usize, &[f64])> {
        let per_filter = self.geometry.terms() / self.groups;
        let per_group = self.geometry.out_channels / self.groups;
        self.weights.chunks(per_filter.max(1)).enumerate().map(move |(o, row)| ((o / per_group) * per_filter, row))
    }

    /// The same weights as a matrix product `W · X̂` over `columns` im2col columns (a `1 × 1`
    /// convolution of a `terms × 1 × columns` image).
    pub fn matrix_form(&self, columns: usize) -> ConvKernel {
        let geometry = ConvGeometry {
            input: ImageShape::new(self.geometry.terms(), 1, columns),
            out_channels: self.geometry.out_channels,
            window: Window2d::square(1, 1),
        };
        ConvKernel::new(geometry, &self.integer_weights()).expect("the weights were valid")
    }

    /// `Σ_o r_o · W_o mod t`: the one filter whose output is the same combination of this
    /// kernel's output channels (the weights `K̃ = Σ_o r_o K_o` of the verify suite's check).
    pub fn combine_channels(&self, r: &[u64]) -> Vec<u64> {
        assert_eq!(r.len(), self.geometry.out_channels, "one coefficient per output channel");
        let terms = self.geometry.terms();
        let mut f = vec![0u64; terms];
        for ((first, row), &ro) in self.rows().zip(r) {
            for (acc, &w) in f[first..].iter_mut().zip(row) {
                *acc = zt::add(*acc, zt::mul(ro, zt::from_i64(w as i64)));
            }
        }
        f
    }

    /// The limb plan for this kernel's operands on `f64` products.
    pub fn limb_plan(&self) -> LimbPlan {
        self.plan
    }

    /// The limb plan [`conv2d_zt`] runs on the AVX-512 VNNI kernel (exact `i32` sums of `i16`
    /// limbs), where this CPU has it and the weights allow it; `None` where it runs on `f64`
    /// products ([`limb_plan`](Self::limb_plan)).
    pub fn vnni_limb_plan(&self) -> Option<LimbPlan> {
        #[cfg(target_arch = "x86_64")]
        if super::avx512::dot16_available() {
            return self.dot16.as_ref().map(|d| d.plan());
        }
        None
    }
}

impl zeroize::Zeroize for ConvKernel {
    fn zeroize(&mut self) {
        self.weights.zeroize();
        #[cfg(target_arch = "x86_64")]
        if let Some(d) = &mut self.dot16 {
            d.zeroize();
        }
    }
}

/// The image blocks a product reads: `planes` stacked operand planes (limbs, or 1 for f32) of
/// `batch` images, block `q · batch + b` starting at `src[(q · batch + b) · stride]`. The stride
/// is the whole image's length; a group's blocks start at its first channel.
#[derive(Clone, Copy)]
struct Blocks<'a, T> {
    src: &'a [T],
    stride: usize,
    planes: usize,
    batch: usize,
}

impl<'a, T> Blocks<'a, T> {
    /// Blocks in all.
    fn count(&self) -> usize {
        self.planes * self.batch
    }

    /// Block `i`, `len` elements.
    fn block(&self, i: usize, len: usize) -> &'a [T] {
        &self.src[i * self.stride..][..len]
    }

    /// The same blocks from channel offset `offset` on.
    fn from(self, offset: usize) -> Self {
        Self { src: &self.src[offset..], ..self }
    }
}

/// Column matrix of `blocks`: `terms × (planes · batch · P)`, block `i` at column block `i`.
fn columns<T: Copy + Default + Send + Sync>(g: &ConvGeometry, blocks: Blocks<'_, T>, cols: &mut Vec<T>) {
    let p = g.output().expect("geometry checked at construction").plane();
    let n = blocks.count() * p;
    // Every element is overwritten below: only grow the buffer, never re-fill it.
    cols.resize(g.terms() * n, T::default());
    let plan = Im2col::new(g.input, g.window);
    for blk in 0..blocks.count() {
        plan.fill(blocks.block(blk, g.input.len()), 0, p, cols, n, blk * p);
    }
}

/// `prod = W · columns(blocks)` for a convolution of `groups` groups: one product per group,
/// over its channels of every block, into its filters' rows of `prod`
/// (`out_channels × (planes · batch · P)`); direct loops where a group has one channel.
#[allow(clippy::too_many_arguments, reason = "the weights come with their packing; the buffers are the caller's")]
fn grouped_product<T: GemmScalar + Zeroize>(
    g: &ConvGeometry,
    groups: usize,
    weights: &[T],
    packed: Option<&[T]>,
    blocks: Blocks<'_, T>,
    threads: usize,
    cols: &mut Vec<T>,
    prod: &mut [T],
) {
    let group = g.group(groups).expect("groups checked at construction");
    if is_depthwise(&group, groups) {
        return depthwise(g, weights, blocks.count(), |i| blocks.block(i, g.input.len()), threads, prod);
    }
    let n = blocks.count() * group.output().expect("geometry checked at construction").plane();
    let (rows, filters) = (group.out_channels * n, group.out_channels * group.terms());
    for (i, (w, out)) in weights.chunks(filters.max(1)).zip(prod.chunks_mut(rows.max(1))).enumerate() {
        // Each group's filters packed on their own, one after another.
        let packed = packed.map(|p| &p[i * p.len() / groups..][..p.len() / groups]);
        conv_product(&group, w, packed, blocks.from(i * group.input.len()), threads, cols, out);
    }
}

/// Whether a convolution of `groups` groups, one of which is `group`, is depthwise (one input
/// channel per group): it runs its own loops, no matrix product.
fn is_depthwise(group: &ConvGeometry, groups: usize) -> bool {
    groups > 1 && group.input.c == 1
}

/// The zero-padded copies of a convolution's input images that the direct kernels read.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Padded {
    /// Padded rows and columns.
    hp: usize,
    wp: usize,
    /// Elements per padded image (every channel).
    plane_len: usize,
}

#[cfg(target_arch = "x86_64")]
impl Padded {
    fn new(g: &ConvGeometry) -> Self {
        let [pt, pl, pb, pr] = g.window.pads;
        let (hp, wp) = (g.input.h + pt + pb, g.input.w + pl + pr);
        Self { hp, wp, plane_len: g.input.c * hp * wp }
    }

    /// Copies every image of `blocks` into its padded place in `dst`, whose borders are already
    /// zero.
    fn copy_in<T: Copy + Default>(&self, g: &ConvGeometry, blocks: Blocks<'_, T>, dst: &mut [T]) {
        for (i, dst) in dst.chunks_mut(self.plane_len).take(blocks.count()).enumerate() {
            self.copy_planes(g, blocks, i * g.input.c..(i + 1) * g.input.c, dst);
        }
    }

    /// Copies planes `planes` (plane `u` is channel `u mod C` of image `u / C`) of `blocks` into
    /// `dst`, which holds exactly those padded planes; their borders are zeroed first where the
    /// window pads.
    fn copy_planes<T: Copy + Default>(
        &self,
        g: &ConvGeometry,
        blocks: Blocks<'_, T>,
        planes: std::ops::Range<usize>,
        dst: &mut [T],
    ) {
        let s = g.input;
        let [pt, pl, ..] = g.window.pads;
        if g.window.pads != [0; 4] {
            dst.fill(T::default());
        }
        for (u, dst) in planes.zip(dst.chunks_mut(self.hp * self.wp)) {
            let plane = &blocks.block(u / s.c, s.len())[u % s.c * s.plane()..][..s.plane()];
            for (y, line) in plane.chunks(s.w).enumerate() {
                super::copy_short(&mut dst[(y + pt) * self.wp + pl..][..s.w], line);
            }
        }
    }

    /// Where tap `(ch, ky, kx)` reads, from the top-left of a padded image, in tap order.
    fn offsets(&self, g: &ConvGeometry) -> Vec<usize> {
        let [kh, kw] = g.window.kernel;
        let (hp, wp) = (self.hp, self.wp);
        (0..g.input.c)
            .flat_map(|ch| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| ch * hp * wp + ky * wp + kx)))
            .collect()
    }
}

/// `prod = W · columns(blocks)`, `out_channels × (planes · batch · P)`. Where the AVX-512 kernel
/// runs ([`avx512_product`]), the columns are built panel by panel inside the product (never
/// stored whole); elsewhere they go through `cols` and the `gemm` crate.
fn conv_product<T: GemmScalar>(
    g: &ConvGeometry,
    weights: &[T],
    packed: Option<&[T]>,
    blocks: Blocks<'_, T>,
    threads: usize,
    cols: &mut Vec<T>,
    prod: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if super::avx512::available() && avx512_product(g, weights, packed, blocks, threads, cols, prod, 8) {
        return;
    }
    let (m, n, k, threads) = product_shape(g, &blocks, threads);
    columns(g, blocks, cols);
    matmul(m, n, k, weights, cols, prod, threads);
}

/// A convolution product's rows, columns and terms, and the threads it is worth: one more per
/// `PARALLEL_MIN_MACS` multiply-adds, up to `threads`.
fn product_shape<T>(g: &ConvGeometry, blocks: &Blocks<'_, T>, threads: usize) -> (usize, usize, usize, usize) {
    let p = g.output().expect("geometry checked at construction").plane();
    let (m, n, k) = (g.out_channels, blocks.count() * p, g.terms());
    (m, n, k, threads.clamp(1, 1 + m * n * k / super::PARALLEL_MIN_MACS))
}

/// [`conv_product`] on the AVX-512 tile kernels, from `packed` (`weights` as
/// `avx512::pack_rows` leaves them) or a packing made here: a direct convolution over padded
/// copies of the images (in `scratch`) where the stride is 1 and an output row fills a tile, or
/// packed im2col panels where the product has at least `min_columns` columns (narrower ones do
/// better on the `gemm` crate); `false`, with nothing done, otherwise. The kernels assert
/// that the CPU has `T`'s instructions (`Avx512Scalar::supported`).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "the product's operands, its scratch and the path's threshold")]
fn avx512_product<T: super::avx512::Avx512Scalar>(
    g: &ConvGeometry,
    weights: &[T],
    packed: Option<&[T]>,
    blocks: Blocks<'_, T>,
    threads: usize,
    scratch: &mut Vec<T>,
    prod: &mut [T],
    min_columns: usize,
) -> bool {
    let o = g.output().expect("geometry checked at construction");
    let p = o.plane();
    let (m, n, k, threads) = product_shape(g, &blocks, threads);
    let packed = || {
        packed.map_or_else(
            || std::borrow::Cow::Owned(super::avx512::pack_rows(m, k, weights)),
            std::borrow::Cow::Borrowed,
        )
    };
    // Direct convolution where an output row fills a whole tile width (narrower rows would
    // leave most lanes idle: those go through the packed im2col panels below).
    if g.window.stride == [1, 1] && (o.w >= T::NR || o.w == T::NR / 2) {
        // Direct convolution over zero-padded copies of the images: no im2col at all.
        let images = blocks.count();
        // The scratch buffer holds the padded images (zero borders, plus slack for the last
        // tile's reads); reusing it spares fresh pages on every call.
        let padded = scratch;
        padded.clear();
        let pad = Padded::new(g);
        padded.resize(images * pad.plane_len + T::NR + 2 * pad.wp, T::default());
        pad.copy_in(g, blocks, padded);
        super::avx512::conv_direct(
            m,
            &packed(),
            padded,
            pad.plane_len,
            images,
            (o.h, o.w, pad.wp),
            &pad.offsets(g),
            prod,
            threads,
        );
        return true;
    }
    if n >= min_columns {
        let image = g.input.len();
        let plan = Im2col::new(g.input, g.window);
        // A dense layer's column is its block itself: the panel is a transpose.
        let dense = g.input.plane() == 1 && p == 1 && g.window.size() == 1 && g.window.pads == [0; 4];
        let fill = |j0: usize, w: usize, panel: &mut [T]| {
            if dense {
                for jj in 0..w {
                    for (kk, &v) in blocks.block(j0 + jj, image).iter().enumerate() {
                        panel[kk * T::NR + jj] = v;
                    }
                }
                return;
            }
            let mut j = j0;
            while j < j0 + w {
                let (blk, pos) = (j / p, j % p);
                let len = (p - pos).min(j0 + w - j);
                plan.fill(blocks.block(blk, image), pos, len, panel, T::NR, j - j0);
                j += len;
            }
        };
        super::avx512::matmul_panels(m, n, k, &packed(), &fill, prod, threads);
        return true;
    }
    false
}

thread_local! {
    /// Per-thread scratch for the `Z_t` kernel (limbs, columns, limb products): reused across
    /// calls so a layer does not pay fresh zeroed pages for its large temporaries.
    static ZT_SCRATCH: std::cell::RefCell<[Vec<f64>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The same scratch for the VNNI path (paired limbs, padded images, limb products).
    static DOT16_SCRATCH: std::cell::RefCell<[Vec<super::avx512::Dot16>; 3]> =
        const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
}

/// Wipes the calling thread's `Z_t` scratch: the limbs of the last input [`conv2d_zt`] read
/// there, their columns and the limb products (its capacity stays). A caller whose input is a
/// secret (the verify suite's pads) wipes it after its last convolution on that thread.
pub fn wipe_scratch() {
    ZT_SCRATCH.with_borrow_mut(|buffers| buffers.iter_mut().for_each(|b| b.zeroize()));
    #[cfg(target_arch = "x86_64")]
    DOT16_SCRATCH.with_borrow_mut(|buffers| buffers.iter_mut().for_each(|b| b.zeroize()));
}

/// Whether the calling thread's `Z_t` scratch holds nothing but zeros (tests).
#[doc(hidden)]
pub fn scratch_is_wiped() -> bool {
    #[cfg(target_arch = "x86_64")]
    if !DOT16_SCRATCH.with_borrow(|buffers| buffers.iter().flatten().all(|v| v.0 == 0)) {
        return false;
    }
    ZT_SCRATCH.with_borrow(|buffers| buffers.iter().flatten().all(|&v| v == 0.0))
}

/// Exact `Z_t` convolution without bias: `out[b] = W * input[b] mod t` for `batch` NCHW images.
pub fn conv2d_zt(kernel: &ConvKernel, input: &[u64], batch: usize, threads: usize) -> Vec<u64> {
    #[cfg(target_arch = "x86_64")]
    if let Some(weights) = &kernel.dot16
        && super::avx512::dot16_available()
    {
        return conv2d_zt_dot16(kernel, weights, input, batch, threads);
    }
    conv2d_zt_with(kernel, kernel.plan, input, batch, threads)
}

/// [`conv2d_zt`] on the AVX-512 VNNI kernel: limbs of channel pairs, exact `i32` sums.
#[cfg(target_arch = "x86_64")]
fn conv2d_zt_dot16(
    kernel: &ConvKernel,
    weights: &super::dot16::Dot16Weights,
    input: &[u64],
    batch: usize,
    threads: usize,
) -> Vec<u64> {
    let g = &kernel.geometry;
    assert_eq!(input.len(), batch * g.input.len(), "conv2d_zt input length");
    let p = g.output().expect("geometry checked at construction").plane();
    let m = g.out_channels;
    let mut result = vec![0u64; batch * m * p];
    if result.is_empty() {
        return result;
    }
    DOT16_SCRATCH.with_borrow_mut(|[limbs, padded, prod]| {
        weights.split(input, g.input, batch, limbs);
        let paired = weights.geometry();
        let planes = weights.plan().count();
        let blocks = Blocks { src: &limbs[..], stride: paired.input.len(), planes, batch };
        prod.resize(m * planes * batch * p, Default::default());
        // The panels take any width: the product always runs here.
        let done = avx512_product(paired, &[], Some(weights.packed()), blocks, threads, padded, prod, 1);
        assert!(done, "the VNNI product runs on every geometry");
        weights.combine(prod, m, p, batch, threads, &mut result);
    });
    result
}

/// [`conv2d_zt`] for inputs known to lie within `±bound` of zero: fewer limbs (one `f64`
/// product instead of two where `bound < 2^31` for typical weights). An input outside the
/// bound gives a wrong product.
pub fn conv2d_zt_within(kernel: &ConvKernel, input: &[u64], bound: u64, batch: usize, threads: usize) -> Vec<u64> {
    conv2d_zt_with(kernel, kernel.plan.within(bound), input, batch, threads)
}

fn conv2d_zt_with(kernel: &ConvKernel, plan: LimbPlan, input: &[u64], batch: usize, threads: usize) -> Vec<u64> {
    let g = &kernel.geometry;
    assert_eq!(input.len(), batch * g.input.len(), "conv2d_zt input length");
    let out = g.output().expect("geometry checked at construction");
    let p = out.plane();
    let m = g.out_channels;
    let mut result = vec![0u64; batch * out.len()];
    ZT_SCRATCH.with_borrow_mut(|[limbs, cols, prod]| {
        limbs.resize(input.len() * plan.count(), 0.0);
        plan.split(input, limbs);
        let n = plan.count() * batch * p;
        prod.resize(m * n, 0.0);
        let blocks = Blocks { src: &limbs[..], stride: g.input.len(), planes: plan.count(), batch };
        grouped_product(g, kernel.groups, &kernel.weights, None, blocks, threads, cols, prod);
        let bp = batch * p;
        let combine = |(b, img): (usize, &mut [u64])| {
            for (o, plane) in img.chunks_mut(p).enumerate() {
                let row = &prod[o * n + b * p..(o + 1) * n];
                plan.combine_rows(|q| &row[q * bp..q * bp + p], plane);
            }
        };
        if threads > 1 {
            result.par_chunks_mut(out.len()).enumerate().for_each(combine);
        } else {
            result.chunks_mut(out.len()).enumerate().for_each(combine);
        }
    });
    result
}

/// An `f32` convolution (or fully connected layer) without bias for the plaintext engine, its
/// weights laid out once for the kernel that runs its geometry: a query packs nothing.
#[derive(Debug, Clone)]
pub struct ConvF32 {
    geometry: ConvGeometry,
    groups: usize,
    weights: Vec<f32>,
    /// The kernel this geometry runs, decided once.
    path: F32Path,
    /// `weights` as that kernel reads them; empty where it reads them in place (fully
    /// connected, depthwise, no AVX-512).
    packed: Vec<f32>,
    /// Where each tap reads, from the top-left of an input image as the direct kernels see it
    /// ([`F32Path::Rows`], [`F32Path::Channels`]); empty for the other paths.
    offsets: Vec<usize>,
}

/// Which kernel an `f32` convolution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F32Path {
    /// One dot product per filter and image (`avx512::dense_f32`).
    Dense,
    /// Stride 1 along padded rows (`avx512::conv_direct_rows`).
    Rows,
    /// Stride 1 vectorized over filters, for rows narrower than a vector
    /// (`avx512::conv_direct_channels`).
    Channels,
    /// One filter per channel, along output rows (`depthwise_f32`).
    Depthwise,
    /// Everything else, group by group ([`grouped_product`]).
    Grouped,
}

impl ConvF32 {
    /// The convolution of `geometry` in `groups` groups (weights laid out as
    /// [`ConvKernel::grouped`]'s).
    ///
    /// # Panics
    /// If `weights` does not hold `out_channels × terms / groups` values or the geometry has no
    /// output: the engine builds these from checked layers.
    pub fn new(geometry: ConvGeometry, groups: usize, weights: &[f32]) -> Self {
        let group = geometry.group(groups).expect("groups checked at construction");
        assert_eq!(weights.len(), geometry.out_channels * group.terms(), "ConvF32 weights");
        let (path, packed, offsets) = Self::plan(&geometry, groups, weights);
        Self { geometry, groups, weights: weights.to_vec(), path, packed, offsets }
    }

    /// The kernel for `g` in `groups` groups, the weights packed for it, and where its taps
    /// read.
    #[cfg(target_arch = "x86_64")]
    fn plan(g: &ConvGeometry, groups: usize, weights: &[f32]) -> (F32Path, Vec<f32>, Vec<usize>) {
        use super::avx512::{available, pack_channels, pack_rows};
        let o = g.output().expect("geometry checked at construction");
        let group = g.group(groups).expect("groups checked at construction");
        let (m, k) = (g.out_channels, group.terms());
        if super::depthwise_f32::supports(g, groups) {
            return (F32Path::Depthwise, Vec::new(), Vec::new());
        }
        if !available() || is_depthwise(&group, groups) {
            return (F32Path::Grouped, Vec::new(), Vec::new());
        }
        if groups > 1 {
            let packed = weights.chunks(group.out_channels * k).flat_map(|w| pack_rows(group.out_channels, k, w));
            return (F32Path::Grouped, packed.collect(), Vec::new());
        }
        if g.input.plane() == 1 && o.plane() == 1 && g.window.pads == [0; 4] {
            return (F32Path::Dense, Vec::new(), Vec::new());
        }
        if g.window.stride != [1, 1] || o.plane() == 1 {
            return (F32Path::Grouped, pack_rows(m, k, weights), Vec::new());
        }
        let offsets = if is_pointwise(g) {
            (0..g.input.c).map(|ch| ch * g.input.plane()).collect()
        } else {
            Padded::new(g).offsets(g)
        };
        if o.w < <f32 as super::avx512::Avx512Scalar>::NR / 2 {
            (F32Path::Channels, pack_channels(m, k, weights), offsets)
        } else {
            (F32Path::Rows, pack_rows(m, k, weights), offsets)
        }
    }

    /// Without AVX-512 every convolution goes group by group, its weights read in place.
    #[cfg(not(target_arch = "x86_64"))]
    fn plan(_: &ConvGeometry, _: usize, _: &[f32]) -> (F32Path, Vec<f32>, Vec<usize>) {
        (F32Path::Grouped, Vec::new(), Vec::new())
    }

    /// `out = epilogue(W ∗ input)` for `batch` NCHW images on up to `threads` threads; `cols` is
    /// reusable scratch.
    pub fn run(
        &self,
        input: &[f32],
        batch: usize,
        threads: usize,
        cols: &mut Vec<f32>,
        out: &mut [f32],
        epilogue: Epilogue<'_>,
    ) {
        let g = &self.geometry;
        let o = g.output().expect("geometry checked at construction");
        assert_eq!(input.len(), batch * g.input.len(), "ConvF32 input length");
        assert_eq!(out.len(), batch * o.len(), "ConvF32 output length");
        let (m, p) = (g.out_channels, o.plane());
        let blocks = Blocks { src: input, stride: g.input.len(), planes: 1, batch };
        let packed = (!self.packed.is_empty()).then_some(&self.packed[..]);
        match self.path {
            #[cfg(target_arch = "x86_64")]
            F32Path::Dense => super::avx512::dense_f32(m, g.terms(), &self.weights, input, batch, out, threads),
            #[cfg(target_arch = "x86_64")]
            F32Path::Depthwise => {
                let [kh, kw] = g.window.kernel;
                let threads = threads.clamp(1, 1 + out.len() * kh * kw / super::PARALLEL_MIN_MACS);
                let epilogue = (epilogue.bias, epilogue.relu);
                return super::split_rows(threads, out, p, |planes, out| {
                    super::depthwise_f32::depthwise_f32(g, &self.weights, input, planes, out, epilogue)
                });
            }
            #[cfg(target_arch = "x86_64")]
            F32Path::Rows | F32Path::Channels => {
                let (packed, offsets) = (&self.packed[..], &self.offsets[..]);
                return conv_rows_f32(g, packed, offsets, self.path, blocks, threads, cols, out, epilogue);
            }
            _ if batch == 1 => grouped_product(g, self.groups, &self.weights, packed, blocks, threads, cols, out),
            _ => {
                let mut prod = vec![0.0f32; m * batch * p];
                grouped_product(g, self.groups, &self.weights, packed, blocks, threads, cols, &mut prod);
                scatter_batch(&prod, m, p, batch, out);
            }
        }
        epilogue.apply_in_place(threads, m, p, out);
    }
}

/// A stride-1 `f32` convolution straight into NCHW `out`, no im2col: along whole padded rows
/// (`avx512::conv_direct_rows`, [`F32Path::Rows`]), the positions that straddle two rows
/// dropped while copying out, or vectorized over filters ([`F32Path::Channels`]); `packed` is
/// the weights as that kernel reads them. `scratch` holds the padded images and the row-wide
/// products.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, reason = "a direct convolution's plan, operands and scratch")]
fn conv_rows_f32(
    g: &ConvGeometry,
    packed: &[f32],
    offsets: &[usize],
    path: F32Path,
    blocks: Blocks<'_, f32>,
    threads: usize,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
    epilogue: Epilogue<'_>,
) {
    let o = g.output().expect("geometry checked at construction");
    let (m, images) = (g.out_channels, blocks.count());
    let threads = threads.clamp(1, 1 + out.len() * g.terms() / super::PARALLEL_MIN_MACS);
    let pad = Padded::new(g);
    let span = (o.h - 1) * pad.wp + o.w;
    // A pointwise convolution's input rows are already the padded rows, and its products along
    // them the NCHW output: the kernels read the input and write `out` in place.
    let pointwise = is_pointwise(g);
    let wide_len = if pointwise || path == F32Path::Channels { 0 } else { images * m * span };
    let (src, wide): (&[f32], &mut [f32]) = if pointwise {
        (&blocks.src[..images * g.input.len()], &mut [])
    } else {
        // Grow only: each padded plane's borders are re-zeroed as it is copied in, and the
        // products are overwritten whole.
        scratch.resize(images * pad.plane_len + wide_len, 0.0);
        let (padded, wide) = scratch.split_at_mut(images * pad.plane_len);
        super::split_rows(threads, padded, pad.hp * pad.wp, |planes, dst| pad.copy_planes(g, blocks, planes, dst));
        (padded, wide)
    };
    if path == F32Path::Channels {
        let geometry = (o.h, o.w, pad.wp);
        super::avx512::conv_direct_channels(m, packed, src, pad.plane_len, images, geometry, offsets, out, threads);
        return epilogue.apply_in_place(threads, m, o.plane(), out);
    }
    if pointwise {
        super::avx512::conv_direct_rows(m, packed, src, pad.plane_len, images, span, offsets, out, threads);
        return epilogue.apply_in_place(threads, m, o.plane(), out);
    }
    let wide = &mut wide[..wide_len];
    super::avx512::conv_direct_rows(m, packed, src, pad.plane_len, images, span, offsets, wide, threads);
    // Each output row out of its padded-width row of products, through the epilogue.
    let wide = &*wide;
    super::split_rows(threads, out, o.plane(), |planes, out| {
        for (u, plane_out) in planes.zip(out.chunks_mut(o.plane())) {
            for (row, src) in plane_out.chunks_mut(o.w).zip(wide[u * span..][..span].chunks(pad.wp)) {
                epilogue.write(u % m, row, &src[..o.w]);
            }
        }
    });
}

/// Whether a convolution is pointwise: a 1×1 window, stride 1, no padding.
#[cfg(target_arch = "x86_64")]
fn is_pointwise(g: &ConvGeometry) -> bool {
    g.window.kernel == [1, 1] && g.window.stride == [1, 1] && g.window.pads == [0; 4]
}

/// What an `f32` convolution applies to its outputs as it writes them: a bias per output
/// channel, then a ReLU.
#[derive(Debug, Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// `bias[o]` is added to every output of channel `o`.
    pub bias: Option<&'a [f32]>,
    /// Whether outputs below zero (after the bias) become zero.
    pub relu: bool,
}

impl Epilogue<'_> {
    /// `dst = epilogue(src)` for outputs of channel `channel`.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn write(&self, channel: usize, dst: &mut [f32], src: &[f32]) {
        let b = self.bias.map_or(0.0, |b| b[channel]);
        match (self.bias.is_some(), self.relu) {
            (_, true) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = (v + b).max(0.0)),
            (true, false) => dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + b),
            (false, false) => super::copy_short(dst, src),
        }
    }

    /// Applies the epilogue to `out`, planes of `plane` outputs of `m` channels in turn, split
    /// over up to `threads` threads.
    fn apply_in_place(&self, threads: usize, m: usize, plane: usize, out: &mut [f32]) {
        if self.bias.is_none() && !self.relu {
            return;
        }
        super::split_rows(threads, out, plane, |planes, out| {
            for (u, values) in planes.zip(out.chunks_mut(plane)) {
                let b = self.bias.map_or(0.0, |b| b[u % m]);
                if self.relu {
                    values.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
                } else {
                    values.iter_mut().for_each(|v| *v += b);
                }
            }
        });
    }
}

/// Rearranges a `m × (batch · P)` product into `batch` NCHW images.
fn scatter_batch<T: GemmScalar>(prod: &[T], m: usize, p: usize, batch: usize, out: &mut [T]) {
    for b in 0..batch {
        for o in 0..m {
            super::copy_short(&mut out[(b * m + o) * p..][..p], &prod[o * batch * p + b * p..][..p]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference;
    use crate::zt;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};

    fn case(g: ConvGeometry, batch: usize, wmax: i64, seed: u64) {
        grouped_case(g, 1, batch, wmax, seed);
    }

    /// The fast kernels of `groups` groups against the naive references.
    fn grouped_case(g: ConvGeometry, groups: usize, batch: usize, wmax: i64, seed: u64) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let w: Vec<i64> = (0..g.out_channels * g.terms() / groups)
            .map(|_| (rng.next_u64() % (2 * wmax as u64 + 1)) as i64 - wmax)
            .collect();
        let x = zt::random_vec(&mut rng, batch * g.input.len());
        let kernel = ConvKernel::grouped(g, groups, &w).unwrap();
        let expect = reference::conv2d_zt(&g, groups, &w, &x, batch);
        for threads in [1, 2] {
            assert_eq!(
                conv2d_zt(&kernel, &x, batch, threads),
                expect,
                "{g:?} groups {groups} batch {batch} threads {threads}"
            );
            // The f64 limbs, whichever path `conv2d_zt` took.
            assert_eq!(conv2d_zt_with(&kernel, kernel.plan, &x, batch, threads), expect, "{g:?} on f64 limbs");
        }
        // Inputs within ±(2^31 − 1), at the edges and between, through the one-limb plan.
        let bound = (1u64 << 31) - 1;
        let near: Vec<u64> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| match i % 3 {
                0 => zt::from_i64(bound as i64),
                1 => zt::from_i64(-(bound as i64)),
                _ => zt::from_i64((v % (2 * bound + 1)) as i64 - bound as i64),
            })
            .collect();
        let near_expect = reference::conv2d_zt(&g, groups, &w, &near, batch);
        for threads in [1, 2] {
            assert_eq!(conv2d_zt_within(&kernel, &near, bound, batch, threads), near_expect, "{g:?} within ±{bound}");
            // The same small values through `conv2d_zt`: upper limbs of 0 and −1, outputs near 0
            // on both sides.
            assert_eq!(conv2d_zt(&kernel, &near, batch, threads), near_expect, "{g:?} small values");
        }
        // The ordinary convolution the grouped one reads as outside the kernel is the same map.
        assert_eq!(reference::conv2d_zt(&g, 1, &kernel.integer_weights(), &x, batch), expect, "{g:?} groups {groups}");
        // The f32 kernel agrees with a float reference on small values.
        let xf: Vec<f32> = (0..x.len()).map(|i| (i % 7) as f32 - 3.0).collect();
        let wf: Vec<f32> = w.iter().map(|&v| (v % 5) as f32).collect();
        let o = g.output().unwrap();
        let mut out = vec![0.0; batch * o.len()];
        let conv = ConvF32::new(g, groups, &wf);
        conv.run(&xf, batch, 2, &mut Vec::new(), &mut out, Epilogue::default());
        let plain = reference::conv2d_f32(&g, groups, &wf, &xf, batch);
        assert_eq!(out, plain, "{g:?} groups {groups}");
        // With a bias per channel and a ReLU applied as the outputs are written, on one thread
        // and two.
        let bias: Vec<f32> = (0..g.out_channels).map(|o| o as f32 - 1.5).collect();
        let expect: Vec<f32> =
            plain.iter().enumerate().map(|(i, &v)| (v + bias[i / o.plane() % g.out_channels]).max(0.0)).collect();
        for threads in [1, 2] {
            let epilogue = Epilogue { bias: Some(&bias), relu: true };
            conv.run(&xf, batch, threads, &mut Vec::new(), &mut out, epilogue);
            assert_eq!(out, expect, "{g:?} groups {groups} with bias and ReLU, threads {threads}");
        }
    }

    /// Grouped and depthwise convolutions on the direct, panel and portable paths; a kernel
    /// that reads another group's channels (the weights of a group shifted by one) is caught.
    #[test]
    fn grouped_and_depthwise_match_the_reference() {
        let w = |k, s, p| Window2d { kernel: [k, k], stride: [s, s], pads: [p; 4] };
        // Depthwise: one filter per channel, wide rows (direct) and narrow ones (panels).
        grouped_case(
            ConvGeometry { input: ImageShape::new(6, 9, 20), out_channels: 6, window: w(3, 1, 1) },
            6,
            2,
            1 << 11,
            21,
        );
        grouped_case(
            ConvGeometry { input: ImageShape::new(4, 7, 7), out_channels: 8, window: w(3, 2, 1) },
            4,
            3,
            300,
            22,
        );
        // One filter per channel in f32 along output rows: stride 2 with outputs narrower than a
        // vector and wider (a second vector reaching past the row), a 5×5 window, uneven
        // padding, rows that start and end in the padding, several images.
        let depthwise = [
            (ImageShape::new(8, 9, 9), Window2d { kernel: [3, 3], stride: [2, 2], pads: [1; 4] }, 2),
            (ImageShape::new(3, 7, 35), Window2d { kernel: [3, 3], stride: [2, 2], pads: [1; 4] }, 1),
            (ImageShape::new(5, 11, 19), Window2d { kernel: [5, 5], stride: [2, 2], pads: [2; 4] }, 3),
            (ImageShape::new(3, 6, 40), Window2d { kernel: [3, 3], stride: [1, 1], pads: [0, 2, 1, 0] }, 2),
            (ImageShape::new(4, 3, 5), Window2d { kernel: [3, 2], stride: [1, 2], pads: [2, 1, 2, 3] }, 2),
            // Stride 1 with output rows as wide as input rows of 8, 4, 2, 1 columns: several rows to
            // a vector, the last group of rows partial, uneven padding, a 5×5 window.
            (ImageShape::new(6, 8, 8), Window2d { kernel: [3, 3], stride: [1, 1], pads: [1; 4] }, 2),
            (ImageShape::new(3, 5, 4), Window2d { kernel: [3, 3], stride: [1, 1], pads: [1; 4] }, 3),
            (ImageShape::new(2, 3, 2), Window2d { kernel: [3, 3], stride: [1, 1], pads: [1; 4] }, 1),
            (ImageShape::new(3, 6, 8), Window2d { kernel: [3, 3], stride: [1, 1], pads: [0, 2, 1, 0] }, 2),
            (ImageShape::new(2, 9, 8), Window2d { kernel: [5, 5], stride: [1, 1], pads: [2; 4] }, 1),
            (ImageShape::new(2, 21, 1), Window2d { kernel: [3, 1], stride: [1, 1], pads: [1, 0, 1, 0] }, 2),
        ];
        for (seed, (input, window, batch)) in (27..).zip(depthwise) {
            grouped_case(ConvGeometry { input, out_channels: input.c, window }, input.c, batch, 1 << 11, seed);
        }
        // Large enough for the depthwise loops to split the filters between threads.
        grouped_case(
            ConvGeometry { input: ImageShape::new(64, 64, 64), out_channels: 64, window: w(3, 1, 1) },
            64,
            1,
            1 << 11,
            26,
        );
        // Two and three groups of several channels, several filters each.
        grouped_case(
            ConvGeometry { input: ImageShape::new(4, 6, 6), out_channels: 6, window: w(3, 1, 1) },
            2,
            2,
            1 << 11,
            23,
        );
        grouped_case(
            ConvGeometry { input: ImageShape::new(6, 5, 16), out_channels: 3, window: w(1, 1, 0) },
            3,
            1,
            1 << 15,
            24,
        );
        // Mutation: the same weights read as if each group took the next group's channels.
        let g = ConvGeometry { input: ImageShape::new(4, 6, 6), out_channels: 4, window: w(3, 1, 1) };
        let mut rng = ChaCha20Rng::seed_from_u64(25);
        let weights: Vec<i64> = (0..4 * 9).map(|_| (rng.next_u64() % 41) as i64 - 20).collect();
        let x = zt::random_vec(&mut rng, g.input.len());
        let fast = conv2d_zt(&ConvKernel::grouped(g, 4, &weights).unwrap(), &x, 1, 1);
        let shifted: Vec<u64> = x[g.input.plane()..].iter().chain(&x[..g.input.plane()]).copied().collect();
        assert_eq!(fast, reference::conv2d_zt(&g, 4, &weights, &x, 1));
        assert_ne!(fast, reference::conv2d_zt(&g, 4, &weights, &shifted, 1), "a shifted group must differ");
        // Groups that do not divide the channels are refused.
        assert!(ConvKernel::grouped(g, 3, &weights).is_none());
        assert!(ConvKernel::grouped(g, 0, &weights).is_none());
    }

    /// The scratch keeps the last input's limbs until wiped; [`wipe_scratch`] leaves zeros.
    #[test]
    fn wiping_the_scratch_leaves_no_input() {
        let g = ConvGeometry { input: ImageShape::new(2, 5, 5), out_channels: 3, window: Window2d::square(3, 1) };
        let kernel = ConvKernel::new(g, &vec![1; 3 * g.terms()]).unwrap();
        let x = zt::random_vec(&mut ChaCha20Rng::seed_from_u64(3), g.input.len());
        conv2d_zt(&kernel, &x, 1, 1);
        assert!(!scratch_is_wiped(), "the input's limbs stay in the scratch");
        wipe_scratch();
        assert!(scratch_is_wiped());
        assert_eq!(conv2d_zt(&kernel, &x, 1, 1), reference::conv2d_zt(&g, 1, &vec![1; 3 * g.terms()], &x, 1));
    }

    #[test]
    fn matches_reference_on_layer_shapes() {
        let w = |k, s, p| Window2d { kernel: [k, k], stride: [s, s], pads: [p; 4] };
        case(ConvGeometry { input: ImageShape::new(3, 8, 8), out_channels: 4, window: w(3, 1, 1) }, 1, 1 << 11, 1);
        case(ConvGeometry { input: ImageShape::new(3, 9, 7), out_channels: 5, window: w(3, 2, 1) }, 3, 300, 2);
        case(ConvGeometry { input: ImageShape::new(4, 6, 6), out_channels: 2, window: w(1, 1, 0) }, 2, 1 << 15, 3);
        case(ConvGeometry { input: ImageShape::new(4, 6, 6), out_channels: 3, window: w(1, 1, 0) }, 1, 1 << 20, 4);
        case(ConvGeometry::dense(50, 7), 4, 1 << 11, 5);
        // Dense layers whose rows, terms and images leave partial blocks (one image, five).
        case(ConvGeometry::dense(37, 9), 1, 1 << 11, 10);
        case(ConvGeometry::dense(37, 9), 5, 1 << 11, 12);
        // Wide rows (direct kernel, several tiles per row) and one-vector rows (two rows per tile,
        // odd row count) for both element types.
        case(ConvGeometry { input: ImageShape::new(2, 5, 40), out_channels: 9, window: w(3, 1, 1) }, 2, 1 << 11, 7);
        case(ConvGeometry { input: ImageShape::new(3, 7, 16), out_channels: 5, window: w(3, 1, 1) }, 1, 1 << 11, 8);
        case(ConvGeometry { input: ImageShape::new(2, 7, 18), out_channels: 4, window: w(3, 1, 0) }, 3, 1 << 11, 9);
        case(ConvGeometry { input: ImageShape::new(2, 12, 12), out_channels: 3, window: w(5, 1, 0) }, 2, 1 << 12, 6);
        // Rows narrower than a vector (the f32 kernel vectorized over filters): one filter vector
        // and two, partial filter blocks and position tiles, padded and pointwise.
        case(ConvGeometry { input: ImageShape::new(3, 6, 6), out_channels: 16, window: w(3, 1, 1) }, 2, 1 << 11, 13);
        case(ConvGeometry { input: ImageShape::new(5, 7, 7), out_channels: 37, window: w(3, 1, 1) }, 2, 1 << 11, 14);
        case(ConvGeometry { input: ImageShape::new(6, 5, 5), out_channels: 20, window: w(1, 1, 0) }, 3, 1 << 11, 15);
        // Large enough for two threads to split the padding, the products and the epilogue: wide
        // rows, narrow rows, pointwise.
        case(ConvGeometry { input: ImageShape::new(16, 16, 16), out_channels: 16, window: w(3, 1, 1) }, 1, 1 << 11, 16);
        case(ConvGeometry { input: ImageShape::new(32, 4, 4), out_channels: 40, window: w(3, 1, 1) }, 3, 1 << 11, 17);
        case(ConvGeometry { input: ImageShape::new(64, 8, 8), out_channels: 64, window: w(1, 1, 0) }, 1, 1 << 11, 18);
        // One output position from a larger input through a 1×1 window is not a dense layer
        // (its columns are not whole images), on one image and on enough for the f64 panels.
        let strided = ConvGeometry { input: ImageShape::new(4, 2, 2), out_channels: 3, window: Window2d::square(1, 2) };
        case(strided, 1, 295, 25);
        case(strided, 8, 295, 26);
        // No images: nothing to compute, on either path.
        let ones = ConvKernel::new(strided, &vec![1; 3 * strided.terms()]).unwrap();
        assert!(conv2d_zt(&ones, &[], 0, 2).is_empty());
        assert!(conv2d_zt_with(&ones, ones.plan, &[], 0, 2).is_empty());
    }

    /// Layers of the shipped models' sizes take the VNNI path where the CPU has it; weights too
    /// wide for `i32` sums or `i16` do not.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn narrow_weights_take_the_vnni_path() {
        let g = ConvGeometry { input: ImageShape::new(64, 8, 8), out_channels: 64, window: Window2d::square(3, 1) };
        let kernel = |wmax: i64| ConvKernel::new(g, &vec![wmax; 64 * g.terms()]).unwrap();
        assert_eq!(kernel(295).dot16.as_ref().map(|d| d.plan().count()), Some(5));
        assert!(kernel(1 << 15).dot16.is_none(), "a weight beyond i16");
        assert!(kernel(1 << 14).dot16.is_none(), "sums needing more than six limbs");
        // Odd channel counts pair the last channel with a zero one, on the direct path (wide
        // rows) and the panels (narrow rows, strides, a dense layer); batches of images.
        case(
            ConvGeometry { input: ImageShape::new(3, 32, 32), out_channels: 11, window: Window2d::square(3, 1) },
            2,
            295,
            21,
        );
        case(
            ConvGeometry { input: ImageShape::new(5, 9, 9), out_channels: 7, window: Window2d::square(3, 2) },
            3,
            295,
            22,
        );
        case(ConvGeometry::dense(1023, 10), 1, 295, 23);
        if super::super::avx512::dot16_available() {
            let d = kernel(295);
            let x = zt::random_vec(&mut ChaCha20Rng::seed_from_u64(24), g.input.len());
            conv2d_zt(&d, &x, 1, 1);
            assert!(
                DOT16_SCRATCH.with_borrow(|b| b[0].iter().any(|v| v.0 != 0)),
                "the input went through the VNNI path"
            );
        }
    }

    #[test]
    fn bit_identical_for_any_thread_count() {
        let g = ConvGeometry {
            input: ImageShape::new(16, 12, 12),
            out_channels: 8,
            window: Window2d { kernel: [3, 3], stride: [1, 1], pads: [1; 4] },
        };
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let w: Vec<i64> = (0..g.out_channels * g.terms()).map(|_| (rng.next_u64() % 4001) as i64 - 2000).collect();
        let x = zt::random_vec(&mut rng, 2 * g.input.len());
        let kernel = ConvKernel::new(g, &w).unwrap();
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| conv2d_zt(&kernel, &x, 2, threads))
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(4));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_geometries(c in 1usize..4, h in 1usize..9, w in 1usize..9, o in 1usize..4, k in 1usize..4, s in 1usize..3, p in 0usize..2, batch in 1usize..3, seed: u64) {
            let g = ConvGeometry { input: ImageShape::new(c, h, w), out_channels: o, window: Window2d { kernel: [k, k], stride: [s, s], pads: [p; 4] } };
            prop_assume!(g.output().is_some());
            case(g, batch, 1 << 11, seed);
        }

        /// Groups of one channel (the depthwise loops) and of several (a product per group), with
        /// kernels, strides and pads drawn per side.
        #[test]
        fn random_grouped_geometries(groups in 2usize..5, cg in 1usize..3, og in 1usize..3, h in 1usize..9, w in 1usize..9, kernel in [1usize..5, 1usize..5], stride in [1usize..5, 1usize..5], pads in [0usize..4, 0usize..4, 0usize..4, 0usize..4], batch in 1usize..4, seed: u64) {
            let g = ConvGeometry { input: ImageShape::new(groups * cg, h, w), out_channels: groups * og, window: Window2d { kernel, stride, pads } };
            prop_assume!(g.output().is_some());
            grouped_case(g, groups, batch, 1 << 11, seed);
        }
    }
}
