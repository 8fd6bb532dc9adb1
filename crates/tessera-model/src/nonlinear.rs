//! Nonlinear layers as the secure protocols see them: a list of *items* (one per ReLU output, one
//! per max-pool window), each gathering a fixed number of input elements, with the truncation
//! that brings the input back from product scale.

use tessera_field::kernels::pool::max_pool_zt;
use tessera_field::kernels::{ImageShape, Window2d};
use tessera_field::{fixed, zt};

/// What a nonlinear layer computes on each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonlinearKind {
    /// `max(x, 0)` element-wise.
    Relu,
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
            NonlinearKind::Relu => 1,
            NonlinearKind::MaxPool { window, .. } => window.size(),
        }
    }

    /// Items per image: one per output element.
    pub fn items(&self) -> usize {
        self.output.len()
    }

    /// Whether an item whose maximum is not positive outputs 0.
    pub fn clamps_at_zero(&self) -> bool {
        match self.kind {
            NonlinearKind::Relu => true,
            NonlinearKind::MaxPool { relu, .. } => relu,
        }
    }

    /// For one image, the input index of element `e` of item `i` at `[i * arity + e]`. Windows
    /// cut by padding repeat one of their elements, so every item has the same arity and the
    /// maximum is unchanged.
    pub fn gather(&self) -> Vec<u32> {
        match self.kind {
            NonlinearKind::Relu => (0..self.input.len() as u32).collect(),
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

    /// The layer on plaintext values (the fixed-point reference): rescale (round to nearest),
    /// then ReLU or pool.
    pub fn eval_plain(&self, x: &[u64], batch: usize) -> Vec<u64> {
        let shift = self.shift;
        match self.kind {
            // One branch-free pass: round to nearest at the new scale, then rectify (a
            // non-negative signed value is its own representative in `Z_t`).
            NonlinearKind::Relu => {
                let half = (1i64 << shift) >> 1;
                x.iter().map(|&v| ((zt::to_i64(v) + half) >> shift).max(0) as u64).collect()
            }
            NonlinearKind::MaxPool { window, relu: with_relu } => {
                let t: std::borrow::Cow<'_, [u64]> = if shift > 0 {
                    x.iter().map(|&v| fixed::round_shift(v, shift)).collect::<Vec<_>>().into()
                } else {
                    x.into()
                };
                let mut y = vec![0; batch * self.output.len()];
                max_pool_zt(&t, self.input, &window, batch, &mut y);
                if with_relu {
                    y.iter_mut().for_each(|v| *v = relu(*v));
                }
                y
            }
        }
    }
}

fn relu(v: u64) -> u64 {
    if zt::to_i64(v) < 0 { 0 } else { v }
}

#[cfg(test)]
mod tests {
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
            let expected: Vec<u64> = values.iter().map(|&v| relu(fixed::round_shift(v, shift))).collect();
            assert_eq!(layer.eval_plain(&values, 1), expected, "shift {shift}");
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
