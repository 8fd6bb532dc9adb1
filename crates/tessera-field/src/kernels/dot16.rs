//! The exact `Z_t` convolution's operands for the AVX-512 VNNI kernel ([`Dot16`]): the field
//! operand in centered limbs of at most 16 bits ([`LimbPlan::for_i32_sums`]), and the input
//! channels taken in pairs, so that a convolution over `C` channels becomes one over `⌈C/2⌉`
//! channel pairs whose products are `vpdpwssd`'s pairwise dot products. Each instruction then
//! does twice the multiply-adds of an `f32` FMA, where the `f64` kernel's does half as many:
//! five 13-bit limbs (MiniONN-CIFAR's widest layer) cost about 2.5 `f32` products, two `f64`
//! limbs about 4.

use zeroize::{Zeroize, Zeroizing};

use super::avx512::{self, Dot16};
use super::conv::ConvGeometry;
use super::geometry::ImageShape;
use super::limbs::LimbPlan;
use crate::zt;

/// Most limbs for which the VNNI kernel beats two `f64` limbs with a margin.
const MAX_LIMBS: usize = 6;

/// A convolution's weights for the VNNI kernel: paired along the input channels and packed for
/// the tile kernels, with the limb plan their sums allow.
#[derive(Debug, Clone)]
pub(crate) struct Dot16Weights {
    plan: LimbPlan,
    /// The convolution over channel pairs.
    geometry: ConvGeometry,
    /// Filters × paired terms, as `avx512::pack_rows` leaves them.
    packed: Vec<Dot16>,
}

impl Dot16Weights {
    /// The weights (`out_channels × terms`, OIHW, one group) of `geometry` for the VNNI kernel;
    /// `None` where a weight does not fit an `i16`, the sums need more than [`MAX_LIMBS`], or
    /// the input has one channel (paired with a zero channel, every instruction would do half
    /// its work: no faster than `f64`, measured slower on MiniONN-MNIST's first layer).
    pub(crate) fn new(geometry: &ConvGeometry, weights: &[i64], max_abs: u64) -> Option<Self> {
        if max_abs > i16::MAX as u64 || geometry.input.c < 2 {
            return None;
        }
        let plan = LimbPlan::for_i32_sums(max_abs, geometry.terms(), MAX_LIMBS)?;
        let (c, taps, terms) = (geometry.input.c, geometry.window.size(), geometry.terms());
        let paired =
            ConvGeometry { input: ImageShape::new(c.div_ceil(2), geometry.input.h, geometry.input.w), ..*geometry };
        let k = paired.terms();
        let mut rows = vec![Dot16::default(); geometry.out_channels * k];
        for (filter, row) in weights.chunks(terms).zip(rows.chunks_mut(k)) {
            // Fits: |w| ≤ max_abs ≤ i16::MAX, checked above.
            let w = |ch: usize, tap: usize| if ch < c { filter[ch * taps + tap] as i16 } else { 0 };
            for (i, slot) in row.iter_mut().enumerate() {
                let (pair, tap) = (i / taps, i % taps);
                *slot = Dot16::pair(w(2 * pair, tap), w(2 * pair + 1, tap));
            }
        }
        let packed = avx512::pack_rows(geometry.out_channels, k, &rows);
        rows.zeroize();
        Some(Self { plan, geometry: paired, packed })
    }

    /// Limbs per field element.
    pub(crate) fn plan(&self) -> LimbPlan {
        self.plan
    }

    /// The convolution over channel pairs.
    pub(crate) fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// The packed paired weights.
    pub(crate) fn packed(&self) -> &[Dot16] {
        &self.packed
    }

    /// Splits `batch` images of `shape` into limb planes of channel pairs, limb-major: limb `l`
    /// of channel `2q + h` of image `b` is term `h` of
    /// `dst[(l · batch + b) · ⌈C/2⌉·H·W + q·H·W + y·W + x]` (the missing odd channel is zero).
    pub(crate) fn split(&self, input: &[u64], shape: ImageShape, batch: usize, dst: &mut Vec<Dot16>) {
        let (hw, paired_len, plan) = (shape.plane(), self.geometry.input.len(), self.plan);
        // Every element below is written: only grow the buffer, never re-fill it.
        dst.resize(plan.count() * batch * paired_len, Dot16::default());
        // Runs of channel pairs of about 2,048 elements: their even and odd channels, centered,
        // then what the lower limbs leave, stay in L1 while each limb is taken off.
        let per_run = 2048usize.div_ceil(hw).min(self.geometry.input.c).max(1);
        let mut halves = [0, 1].map(|_| Zeroizing::new(vec![0i64; per_run * hw]));
        // One dispatch for the whole split: the loops vectorize, and a dense layer's channels
        // (one element each) pay no call apiece.
        crate::vector::vectorized(
            #[inline(always)]
            || {
                for (b, image) in input.chunks(shape.len()).take(batch).enumerate() {
                    for first in (0..self.geometry.input.c).step_by(per_run) {
                        let pairs = per_run.min(self.geometry.input.c - first);
                        let len = pairs * hw;
                        for (h, half) in halves.iter_mut().enumerate() {
                            for (pair, row) in (first..).zip(half[..len].chunks_mut(hw)) {
                                match image.get((2 * pair + h) * hw..(2 * pair + h + 1) * hw) {
                                    Some(plane) => row.iter_mut().zip(plane).for_each(|(x, &a)| *x = zt::to_i64(a)),
                                    None => row.fill(0),
                                }
                            }
                        }
                        let [even, odd] = &mut halves;
                        for l in 0..plan.count() {
                            let out = &mut dst[(l * batch + b) * paired_len + first * hw..][..len];
                            for ((o, x0), x1) in out.iter_mut().zip(even.iter_mut()).zip(odd.iter_mut()) {
                                // Fits: the plan's limbs are within ±2^15.
                                *o = Dot16::pair(plan.take_limb(l, x0) as i16, plan.take_limb(l, x1) as i16);
                            }
                        }
                    }
                }
            },
        );
    }

    /// Recombines the limb products `prod` (`m × (limbs · batch · P)`, columns limb-major as
    /// [`split`](Self::split) laid them out) into `batch` NCHW images of `m` channels of `P`
    /// outputs, modulo `t`.
    pub(crate) fn combine(&self, prod: &[Dot16], m: usize, p: usize, batch: usize, threads: usize, out: &mut [u64]) {
        let n = self.plan.count() * batch * p;
        super::split_rows(threads, out, p, |planes, rows| {
            for (u, plane) in planes.zip(rows.chunks_mut(p)) {
                let row = &prod[u % m * n + u / m * p..];
                self.plan.combine_sums(|l| &row[l * batch * p..][..p], |c| i64::from(c.0), plane);
            }
        });
    }
}

impl Zeroize for Dot16Weights {
    fn zeroize(&mut self) {
        self.packed.zeroize();
    }
}
