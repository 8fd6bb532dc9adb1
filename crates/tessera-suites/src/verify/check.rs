//! The check of an offloaded convolution's product: Freivalds' random combination of the
//! output channels, with the output positions folded in by a bivariate polynomial, so that
//! the check costs time linear in the layer's input, output and weights.

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::{ConvGeometry, ConvKernel};
use tessera_field::zt;

/// The challenge set `Z` the coefficients and points are drawn from. A wrong product passes one
/// repetition with probability at most `(H_o + W_o − 1) / |Z|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// All of `Z_t` (`|Z| = t ≈ 2^61`).
    Field,
    /// `{0, …, 2^bits − 1}`, `bits` in [`CHALLENGE_BITS`] (for tests: the cost does not depend
    /// on it).
    Bits(u32),
}

/// The sizes `Challenge::Bits` may take: at least two values, and all of them below `t`.
pub const CHALLENGE_BITS: std::ops::RangeInclusive<u32> = 1..=60;

impl Challenge {
    /// Whether the set has at least two elements, all below `t`.
    pub fn is_valid(&self) -> bool {
        match self {
            Challenge::Field => true,
            Challenge::Bits(b) => CHALLENGE_BITS.contains(b),
        }
    }

    fn draw<R: RngCore + CryptoRng>(&self, rng: &mut R) -> u64 {
        match self {
            Challenge::Field => zt::random(rng),
            Challenge::Bits(b) => rng.next_u64() & ((1u64 << b) - 1),
        }
    }
}

/// Checks `product == kernel · input` (`batch` images, no bias) with `repetitions` independent
/// challenges; `false` if any fails.
///
/// Each challenge draws a coefficient `r_o` per output channel and two points `α`, `β` from the
/// challenge set `Z`, and compares, per image, `Σ_o r_o Σ_{y,x} α^y β^x Y[o, y, x]` with the same
/// form of `K · X` computed from the input: `Σ_{c,i,j} K̃[c, i, j] · S[c, i, j]`, where
/// `K̃ = Σ_o r_o K_o` and `S[c, i, j] = Σ_{y,x} α^y β^x X̄[c, y·s_h + i, x·s_w + j]` over the
/// zero-padded input `X̄`. The sums `S` come from sliding geometric sums along rows, then
/// columns, so a challenge costs `O(|X̄| + |Y| + |K|)` field operations instead of a
/// convolution. A wrong `Y` passes one challenge with probability at most
/// `(1 + H_o + W_o − 2) / |Z|` (docs/suites/verify.md, "The check").
pub fn check_product<R: RngCore + CryptoRng>(
    kernel: &ConvKernel,
    input: &[u64],
    product: &[u64],
    batch: usize,
    challenge: Challenge,
    repetitions: usize,
    rng: &mut R,
) -> bool {
    let g = kernel.geometry();
    let out = g.output().expect("checked kernel");
    let (plane, channels, in_len) = (out.plane(), g.out_channels, g.input.len());
    // No challenge, or one from a set that cannot tell products apart, accepts nothing.
    if repetitions == 0 || !challenge.is_valid() {
        return false;
    }
    if product.len() != batch * channels * plane || input.len() != batch * in_len {
        return false;
    }
    (0..repetitions).all(|_| {
        let r: Vec<u64> = (0..channels).map(|_| challenge.draw(rng)).collect();
        let (alpha, beta) = (challenge.draw(rng), challenge.draw(rng));
        let combined = kernel.combine_channels(&r);
        (0..batch).all(|b| {
            let y = &product[b * channels * plane..(b + 1) * channels * plane];
            let x = &input[b * in_len..(b + 1) * in_len];
            output_form(y, &r, out.h, out.w, alpha, beta) == input_form(g, &combined, x, alpha, beta)
        })
    })
}

/// `Σ_o r_o Σ_{y,x} α^y β^x Y[o, y, x]` for one image's product `y` (`r.len()` channels of
/// `h × w`).
fn output_form(y: &[u64], r: &[u64], h: usize, w: usize, alpha: u64, beta: u64) -> u64 {
    let plane = h * w;
    let mut d = vec![0u64; plane];
    for (channel, &ro) in y.chunks(plane).zip(r) {
        for (acc, &v) in d.iter_mut().zip(channel) {
            *acc = zt::add(*acc, zt::mul(ro, v));
        }
    }
    d.chunks(w).rev().fold(0u64, |acc, row| zt::add(zt::mul(acc, alpha), horner(row, beta)))
}

/// `Σ_{c,i,j} K̃[c, i, j] · S[c, i, j]` for one image `x`, `combined` being `K̃` (`C × kh × kw`).
fn input_form(g: &ConvGeometry, combined: &[u64], x: &[u64], alpha: u64, beta: u64) -> u64 {
    let out = g.output().expect("checked kernel");
    let ([kh, kw], [sh, sw], [top, left, bottom, right]) = (g.window.kernel, g.window.stride, g.window.pads);
    let (h, w) = (g.input.h, g.input.w);
    let (hp, wp) = (h + top + bottom, w + left + right);
    let mut total = 0u64;
    let mut padded_row = vec![0u64; wp];
    for (c, image) in x.chunks(h * w).enumerate() {
        // Per padded row, the row sums Σ_x β^x X̄[u, x·s_w + j] for every tap column j.
        let mut rows = vec![0u64; hp * kw];
        for u in top..top + h {
            padded_row[left..left + w].copy_from_slice(&image[(u - top) * w..(u - top + 1) * w]);
            rows[u * kw..(u + 1) * kw].copy_from_slice(&sliding_sums(&padded_row, sw, out.w, kw, beta));
        }
        let mut column = vec![0u64; hp];
        for j in 0..kw {
            column.iter_mut().enumerate().for_each(|(u, v)| *v = rows[u * kw + j]);
            let s = sliding_sums(&column, sh, out.h, kh, alpha);
            for (i, &si) in s.iter().enumerate() {
                total = zt::add(total, zt::mul(combined[(c * kh + i) * kw + j], si));
            }
        }
    }
    total
}

/// For every tap `k < taps`, `Σ_{x<n} ratio^x · line[x·stride + k]` (zero past the end): sliding
/// geometric sums over each residue class of the stride, `O(n + taps)` per class, from
/// `W(a) = v(a) + ratio · W(a + 1) − ratio^n · v(a + n)`.
fn sliding_sums(line: &[u64], stride: usize, n: usize, taps: usize, ratio: u64) -> Vec<u64> {
    let mut out = vec![0u64; taps];
    let ratio_n = (0..n).fold(1u64, |acc, _| zt::mul(acc, ratio));
    for residue in 0..stride.min(taps) {
        let at = |q: usize| line.get(q * stride + residue).copied().unwrap_or(0);
        let offsets = (taps - residue).div_ceil(stride);
        let last = offsets - 1;
        let mut window = (0..n).rev().fold(0u64, |acc, x| zt::add(zt::mul(acc, ratio), at(x + last)));
        out[last * stride + residue] = window;
        for a in (0..last).rev() {
            window = zt::sub(zt::add(at(a), zt::mul(ratio, window)), zt::mul(ratio_n, at(a + n)));
            out[a * stride + residue] = window;
        }
    }
    out
}

/// `Σ_x β^x v[x]`.
fn horner(v: &[u64], beta: u64) -> u64 {
    v.iter().rev().fold(0u64, |acc, &x| zt::add(zt::mul(acc, beta), x))
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d, conv2d_zt};

    use super::*;

    fn layer() -> (ConvKernel, Vec<u64>, Vec<u64>) {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let g = ConvGeometry { input: ImageShape::new(2, 6, 6), out_channels: 3, window: Window2d::square(3, 1) };
        let w: Vec<i64> = (0..3 * g.terms()).map(|i| (i as i64 * 13 % 41) - 20).collect();
        let kernel = ConvKernel::new(g, &w).unwrap();
        let x = zt::random_vec(&mut rng, g.input.len());
        let y = conv2d_zt(&kernel, &x, 1, 1);
        (kernel, x, y)
    }

    #[test]
    fn right_products_pass_and_wrong_ones_fail() {
        let (kernel, x, y) = layer();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        assert!(check_product(&kernel, &x, &y, 1, Challenge::Field, 2, &mut rng));
        let mut wrong = y.clone();
        wrong[5] = zt::add(wrong[5], 1);
        assert!(!check_product(&kernel, &x, &wrong, 1, Challenge::Field, 1, &mut rng));
        assert!(!check_product(&kernel, &x, &y[1..], 1, Challenge::Field, 1, &mut rng));
    }

    /// No repetition, or a challenge set that cannot tell products apart, accepts nothing.
    #[test]
    fn degenerate_settings_accept_nothing() {
        let (kernel, x, y) = layer();
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        assert!(!check_product(&kernel, &x, &y, 1, Challenge::Field, 0, &mut rng));
        for bits in [0, 61, 64, 65] {
            assert!(!check_product(&kernel, &x, &y, 1, Challenge::Bits(bits), 1, &mut rng), "{bits} bits");
        }
    }

    /// Random geometries (strides above the kernel, padding as large as it, outputs of one row
    /// or column), each against the reference convolution: the honest product passes and every
    /// single changed element fails.
    #[test]
    fn random_geometries_match_the_reference() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let mut tried = 0;
        while tried < 60 {
            let mut pick = |n: u64| (rng.next_u64() % n) as usize;
            let (c, h, w, k, s) = (1 + pick(3), 1 + pick(8), 1 + pick(8), 1 + pick(4), 1 + pick(5));
            let pads = [pick(4), pick(4), pick(4), pick(4)];
            let window = Window2d { kernel: [k, 1 + pick(4)], stride: [s, 1 + pick(5)], pads };
            let g = ConvGeometry { input: ImageShape::new(c, h, w), out_channels: 1 + pick(3), window };
            if g.output().is_none() {
                continue;
            }
            tried += 1;
            let weights: Vec<i64> = (0..g.out_channels * g.terms()).map(|_| pick(41) as i64 - 20).collect();
            let kernel = ConvKernel::new(g, &weights).unwrap();
            let batch = 1 + pick(2);
            let x = zt::random_vec(&mut rng, batch * g.input.len());
            let y = conv2d_zt(&kernel, &x, batch, 1);
            assert!(check_product(&kernel, &x, &y, batch, Challenge::Field, 1, &mut rng), "{g:?}");
            for i in 0..y.len() {
                let mut wrong = y.clone();
                wrong[i] = zt::add(wrong[i], 1 + zt::random(&mut rng) % (zt::T - 1));
                assert!(!check_product(&kernel, &x, &wrong, batch, Challenge::Field, 1, &mut rng), "{g:?}, {i}");
            }
        }
    }

    /// Strides, rectangular kernels and uneven padding: the honest product passes, and a change
    /// of any single element fails.
    #[test]
    fn every_geometry_and_every_position_is_checked() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let window = Window2d { kernel: [3, 2], stride: [2, 3], pads: [1, 0, 2, 1] };
        let g = ConvGeometry { input: ImageShape::new(3, 7, 9), out_channels: 4, window };
        let w: Vec<i64> = (0..4 * g.terms()).map(|i| (i as i64 * 7 % 19) - 9).collect();
        let kernel = ConvKernel::new(g, &w).unwrap();
        let x = zt::random_vec(&mut rng, 2 * g.input.len());
        let y = conv2d_zt(&kernel, &x, 2, 1);
        assert!(check_product(&kernel, &x, &y, 2, Challenge::Field, 1, &mut rng));
        for i in 0..y.len() {
            let mut wrong = y.clone();
            wrong[i] = zt::add(wrong[i], 1);
            assert!(!check_product(&kernel, &x, &wrong, 2, Challenge::Field, 1, &mut rng), "element {i}");
        }
    }

    /// With `|Z| = 2^b`, a single wrong element at output position `(y, x) = (1, 3)` is caught
    /// exactly when its channel's coefficient, `α` and `β` are all nonzero (its error term is
    /// `r_o · e · α · β³`): probability `(1 − 2^−b)³`, inside the bound `1 − (1 + H_o + W_o − 2)
    /// / 2^b` where that is positive. Over 10,000 trials the rate is within 3σ of it.
    #[test]
    fn detection_rate_matches_the_bound_for_small_challenge_sets() {
        let (kernel, x, y) = layer();
        let mut wrong = y.clone();
        wrong[7] = zt::add(wrong[7], 12345);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for bits in [1u32, 4] {
            let trials = 10_000;
            let caught = (0..trials)
                .filter(|_| !check_product(&kernel, &x, &wrong, 1, Challenge::Bits(bits), 1, &mut rng))
                .count() as f64;
            let p = (1.0 - (-(bits as f64)).exp2()).powi(3);
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            let rate = caught / trials as f64;
            assert!(rate >= p - 3.0 * sd, "|Z| = 2^{bits}: caught {rate}, bound {p} ± {sd}");
            assert!(rate <= p + 3.0 * sd, "|Z| = 2^{bits}: caught {rate}, expected {p} ± {sd}");
        }
    }
}
