//! Nonlinear layers as the secure protocols see them: a list of *items* (one per ReLU output, one
//! per max-pool window), each gathering a fixed number of input elements, with the truncation
//! that brings the input back from product scale.

use tessera_field::kernels::pool::max_pool_zt;
use tessera_field::kernels::{ImageShape, Window2d};
use tessera_field::vector::vectorized;
use tessera_field::zt;

/// Fractional bits of a leaky ReLU's slope below zero ([`NonlinearKind::LeakyRelu`]).
pub const SLOPE_BITS: u32 = 16;

/// What a nonlinear layer computes on each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonlinearKind {
    /// `max(x, 0)` element-wise.
    Relu,
    /// `x` where `x ≥ 0`, else `slope · x / 2^SLOPE_BITS`, element-wise: the sign selects the
    /// slope, 1 or `α`.
    LeakyRelu {
        /// The slope below zero, `round(α · 2^SLOPE_BITS)`, at most `2^SLOPE_BITS`.
        slope: u32,
    },
    /// The maximum over each window, then `max(·, 0)` when `relu` is set.
    MaxPool {
        /// The pooling window.
        window: Window2d,
        /// Whether a ReLU is fused after the maximum.
        relu: bool,
    },
}

/// One ReLU or max-pool layer of a fixed-point model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonlinearLayer {
    /// The node's index in the model: the layer id on the wire and in key derivation.
    pub node: u32,
    /// What it computes.
    pub kind: NonlinearKind,
    /// Input shape of one image.
    pub input: ImageShape,
    /// Output shape of one image.
    pub output: ImageShape,
    /// Bits truncated from the input (`f_w` at product scale, else 0).
    pub shift: u32,
}

impl NonlinearLayer {
    /// Input elements each item gathers (1 for ReLU, the window size for max pool).
    pub fn arity(&self) -> usize {
        match self.kind {
            NonlinearKind::Relu | NonlinearKind::LeakyRelu { .. } => 1,
            NonlinearKind::MaxPool { window, .. } => window.size(),
        }
    }

    /// Items per image: one per output element.
    pub fn items(&self) -> usize {
        self.output.len()
    }

    /// Whether each item's maximum is compared with zero: an item below zero outputs 0 (ReLU,
    /// a max pool fused with ReLU) or takes the slope below zero (leaky ReLU).
    pub fn compares_with_zero(&self) -> bool {
        match self.kind {
            NonlinearKind::Relu | NonlinearKind::LeakyRelu { .. } => true,
            NonlinearKind::MaxPool { relu, .. } => relu,
        }
    }

    /// Whether the layer rescales what it selects (a truncation from product scale, or a leaky
    /// ReLU's slope), so that a masked truncation lies within one unit of the reference.
    pub fn rescales(&self) -> bool {
        self.shift > 0 || matches!(self.kind, NonlinearKind::LeakyRelu { .. })
    }

    /// The rescaled value of an item below zero, from its element `v` (signed in `Z_t`):
    /// `⌊slope · v / 2^(shift + SLOPE_BITS)⌋` for a leaky ReLU, 0 for the others. On the masked
    /// value `w = x + R` and on the mask `R`, their difference is the leaky output within one
    /// unit, as `⌊w / 2^shift⌋ − ⌊R / 2^shift⌋` is for the positive side.
    pub fn truncate_below_zero(&self, v: u64) -> u64 {
        match self.kind {
            NonlinearKind::LeakyRelu { slope } => {
                // The fixed-point model builds slopes in `[0, 2^SLOPE_BITS]`: `|scaled| < 2^77`.
                debug_assert!(slope <= 1 << SLOPE_BITS, "slope {slope} above 1");
                let scaled = i128::from(zt::to_i64(v)) * i128::from(slope);
                zt::from_i64((scaled >> (self.shift + SLOPE_BITS)) as i64)
            }
            _ => 0,
        }
    }

    /// What the holders of a truncation mask `R` take away per unit of an element's selection
    /// bit: `⌊R / 2^shift⌋ − N(R)`, `N` the [`truncate_below_zero`](Self::truncate_below_zero)
    /// they take away in any case (from one share). Selected, the output is then
    /// `⌊w / 2^shift⌋ − ⌊R / 2^shift⌋`; below zero, `N(w) − N(R)`.
    pub fn selected_mask_floor(&self, r: u64) -> u64 {
        zt::sub(r >> self.shift, self.truncate_below_zero(r))
    }

    /// For one image, the input index of element `e` of item `i` at `[i * arity + e]`. Windows
    /// cut by padding repeat one of their elements, so every item has the same arity and the
    /// maximum is unchanged.
    pub fn gather(&self) -> Vec<u32> {
        match self.kind {
            NonlinearKind::Relu | NonlinearKind::LeakyRelu { .. } => (0..self.input.len() as u32).collect(),
            NonlinearKind::MaxPool { window, .. } => {
                let (s, o) = (self.input, self.output);
                let mut idx = Vec::with_capacity(o.len() * window.size());
                for c in 0..o.c {
                    for oy in 0..o.h {
                        for ox in 0..o.w {
                            let y0 = (oy * window.stride[0]) as isize - window.pads[0] as isize;
                            let x0 = (ox * window.stride[1]) as isize - window.pads[1] as isize;
                            let mut cells = Vec::with_capacity(window.size());
                            for dy in 0..window.kernel[0] as isize {
                                for dx in 0..window.kernel[1] as isize {
                                    let (y, x) = (y0 + dy, x0 + dx);
                                    if (0..s.h as isize).contains(&y) && (0..s.w as isize).contains(&x) {
                                        cells.push((c * s.plane() + y as usize * s.w + x as usize) as u32);
                                    }
                                }
                            }
                            let first = cells[0];
                            cells.resize(window.size(), first);
                            idx.extend(cells);
                        }
                    }
                }
                idx
            }
        }
    }

    /// The layer on plaintext values (the fixed-point reference): select on the exact values,
    /// then rescale (round to nearest).
    pub fn eval_plain(&self, x: &[u64], batch: usize) -> Vec<u64> {
        if self.kind == NonlinearKind::Relu {
            // The hot path (every verify client and the reference run it): one branch-free pass,
            // round to nearest then rectify, in 64 bits; the same values as the general path.
            let (shift, half) = (self.shift, (1i64 << self.shift) >> 1);
            return vectorized(
                #[inline(always)]
                || {
                    let mut y = Vec::with_capacity(x.len());
                    y.extend(x.iter().map(|&v| ((zt::to_i64(v) + half) >> shift).max(0) as u64));
                    y
                },
            );
        }
        self.eval_rescaled(x, batch, |v, shift| {
            let half = (1i128 << shift) >> 1;
            ((v + half) >> shift) as i64
        })
    }

    /// The layer with every rescaling done by `rescale(v, s)`, `v / 2^s` rounded as the caller
    /// chooses (`v` signed): selections are made on the exact values, and only what is
    /// selected is rescaled, as the protocols do.
    pub fn eval_rescaled(&self, x: &[u64], batch: usize, mut rescale: impl FnMut(i128, u32) -> i64) -> Vec<u64> {
        let shift = self.shift;
        let mut scale = |v: u64, slope: Option<u32>| {
            let v = i128::from(zt::to_i64(v));
            zt::from_i64(match slope {
                None => rescale(v, shift),
                Some(a) => rescale(v * i128::from(a), shift + SLOPE_BITS),
            })
        };
        match self.kind {
            NonlinearKind::Relu => x.iter().map(|&v| if is_negative(v) { 0 } else { scale(v, None) }).collect(),
            NonlinearKind::LeakyRelu { slope } => {
                x.iter().map(|&v| scale(v, is_negative(v).then_some(slope))).collect()
            }
            NonlinearKind::MaxPool { window, relu } => {
                let mut y = vec![0; batch * self.output.len()];
                max_pool_zt(x, self.input, &window, batch, &mut y);
                for v in &mut y {
                    *v = if relu && is_negative(*v) { 0 } else { scale(*v, None) };
                }
                y
            }
        }
    }
}

fn is_negative(v: u64) -> bool {
    zt::to_i64(v) < 0
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use tessera_field::fixed;

    use super::*;

    /// The fused pass equals rounding, then ReLU, element by element, at the field's edges too.
    #[test]
    fn relu_rounds_then_rectifies() {
        let mut values: Vec<u64> = (-40i64..40).map(zt::from_i64).collect();
        values.extend([zt::T / 2, zt::T / 2 + 1, zt::T - 1, zt::from_i64(1 << 40), zt::from_i64(-(1 << 40) - 7)]);
        for shift in [0, 1, 3, 12] {
            let layer = NonlinearLayer {
                node: 0,
                kind: NonlinearKind::Relu,
                input: ImageShape::new(1, 1, values.len()),
                output: ImageShape::new(1, 1, values.len()),
                shift,
            };
            let expected: Vec<u64> = values
                .iter()
                .map(|&v| fixed::round_shift(v, shift))
                .map(|v| if is_negative(v) { 0 } else { v })
                .collect();
            assert_eq!(layer.eval_plain(&values, 1), expected, "shift {shift}");
            let general = layer.eval_rescaled(&values, 1, |v, s| ((v + ((1i128 << s) >> 1)) >> s) as i64);
            assert_eq!(general, expected, "shift {shift}, the general path");
        }
    }

    /// A leaky ReLU rounds `x` above zero and `α·x` below it to nearest; the masked form a
    /// deciding party and the mask holders compute, `⌊α(x + R)⌋ − ⌊αR⌋` below zero and
    /// `⌊(x + R)⌋ − ⌊R⌋` above, lies within one unit of it.
    #[test]
    fn leaky_relu_rounds_each_side_and_its_masked_form_is_within_one_unit() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (alpha, shift) in [(0.1, 0), (0.01, 8), (0.2, 12), (1.0, 3)] {
            let slope = (alpha * f64::from(1u32 << SLOPE_BITS)).round() as u32;
            let shape = ImageShape::new(1, 1, 400);
            let layer = NonlinearLayer {
                node: 0,
                kind: NonlinearKind::LeakyRelu { slope },
                input: shape,
                output: shape,
                shift,
            };
            let x: Vec<i64> = (0..400).map(|_| rng.random_range(-(1i64 << 30)..1 << 30)).collect();
            let encoded: Vec<u64> = x.iter().map(|&v| zt::from_i64(v)).collect();
            let out = layer.eval_plain(&encoded, 1);
            for (&v, &y) in x.iter().zip(&out) {
                let a = if v < 0 { f64::from(slope) / f64::from(1u32 << SLOPE_BITS) } else { 1.0 };
                let want = (a * v as f64 / f64::from(1u32 << shift) + 0.5).floor() as i64;
                assert_eq!(zt::to_i64(y), want, "α {alpha}, shift {shift}, x {v}");
                let r = rng.random_range(0..1u64 << 60);
                let w = zt::add(zt::from_i64(v), r);
                let masked = if v < 0 {
                    zt::sub(layer.truncate_below_zero(w), layer.truncate_below_zero(r))
                } else {
                    zt::sub(fixed::truncate(w, shift), fixed::truncate(r, shift))
                };
                assert!((zt::to_i64(masked) - want).abs() <= 1, "α {alpha}, shift {shift}, x {v}");
            }
        }
    }

    #[test]
    fn gathered_windows_give_the_pool() {
        let window = Window2d { kernel: [3, 3], stride: [2, 2], pads: [1, 1, 1, 1] };
        let layer = NonlinearLayer {
            node: 0,
            kind: NonlinearKind::MaxPool { window, relu: false },
            input: ImageShape::new(2, 5, 5),
            output: ImageShape::new(2, 3, 3),
            shift: 0,
        };
        let x: Vec<u64> = (0..50).map(|v| zt::from_i64((v * 37 % 23) - 11)).collect();
        let idx = layer.gather();
        assert_eq!(idx.len(), layer.items() * layer.arity());
        let via_gather: Vec<u64> = idx
            .chunks(layer.arity())
            .map(|w| w.iter().map(|&i| x[i as usize]).max_by_key(|&v| zt::to_i64(v)).unwrap())
            .collect();
        assert_eq!(via_gather, layer.eval_plain(&x, 1));
    }
}
