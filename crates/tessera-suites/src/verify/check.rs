//! The check of an offloaded convolution's product: Freivalds' random combination of the
//! output channels, with the output positions folded in by a bivariate polynomial. The
//! challenge is drawn ahead of the product and turned into one weight per input and per output
//! position, so that checking a product is two inner products: linear in the layer's input and
//! output.

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::ConvKernel;
use tessera_field::zt;
use tessera_model::cost::OpCount;
use zeroize::Zeroize;

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

/// One challenge for one layer, drawn before the product exists and kept from the cloud.
///
/// It draws a coefficient `r_o` per output channel and two points `α`, `β` from the challenge
/// set `Z`, and tests, per image, `Σ_o r_o Σ_{y,x} α^y β^x (Y − K·X)[o, y, x] = 0`. Both sides
/// are linear forms with weights fixed by the challenge and the kernel: `⟨Y, H⟩` with
/// `H[o, y, x] = r_o α^y β^x`, and `⟨X, G⟩` with `G[c, u, v] = Σ K̃[c, i, j] α^y β^x` over the
/// taps `(i, j)` and outputs `(y, x)` that read input position `(u, v)`, where
/// `K̃ = Σ_o r_o K_o`. `G` and `H` are computed here, ahead (`O(|K| + k_h·|X| + |Y|)`), so the
/// check itself is two inner products. A wrong `Y` passes with probability at most
/// `(1 + H_o + W_o − 2) / |Z|` (docs/suites/verify.md, "The check").
pub struct Probe {
    /// `G`, one image (`C × H × W`).
    input_weights: Vec<u64>,
    /// `H`, one image (`C_out × H_o × W_o`).
    output_weights: Vec<u64>,
    /// `⟨B, H⟩` for a bias `B` that the checked output includes (0 without).
    bias_form: u64,
    /// What preparing them took.
    preparation: OpCount,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").finish_non_exhaustive()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.input_weights.zeroize();
        self.output_weights.zeroize();
        self.bias_form.zeroize();
    }
}

impl Probe {
    /// Draws a challenge for `kernel` from `challenge` and prepares its weights.
    pub fn draw<R: RngCore + CryptoRng>(kernel: &ConvKernel, challenge: Challenge, rng: &mut R) -> Self {
        let g = kernel.geometry();
        let out = g.output().expect("checked kernel");
        let mut r: Vec<u64> = (0..g.out_channels).map(|_| challenge.draw(rng)).collect();
        let (alpha, beta) = (challenge.draw(rng), challenge.draw(rng));
        let powers = |base: u64, n: usize| {
            std::iter::successors(Some(1u64), move |&p| Some(zt::mul(p, base))).take(n).collect::<Vec<_>>()
        };
        let (mut alphas, mut betas) = (powers(alpha, out.h), powers(beta, out.w));
        // H: r_o α^y β^x.
        let mut plane: Vec<u64> = alphas.iter().flat_map(|&a| betas.iter().map(move |&b| zt::mul(a, b))).collect();
        let output_weights: Vec<u64> = r.iter().flat_map(|&ro| plane.iter().map(move |&p| zt::mul(ro, p))).collect();
        let mut products = (out.h + out.w + plane.len() + output_weights.len() + g.out_channels * g.terms()) as u64;
        // G, separably: first each tap row's weights along the input columns, then down the rows.
        let mut combined = kernel.combine_channels(&r);
        let ([kh, kw], [sh, sw], [top, left, ..]) = (g.window.kernel, g.window.stride, g.window.pads);
        let (h, w) = (g.input.h, g.input.w);
        // The power of the output coordinate that tap `tap` reads at padded coordinate `at`.
        let power = |powers: &[u64], at: usize, tap: usize, stride: usize| {
            let d = at.checked_sub(tap)?;
            (d % stride == 0).then(|| powers.get(d / stride).copied()).flatten()
        };
        let mut input_weights = vec![0u64; g.input.len()];
        let mut rows = vec![0u64; kh * w];
        for (c, filter) in combined.chunks(kh * kw).enumerate() {
            rows.iter_mut().for_each(|v| *v = 0);
            for (i, taps) in filter.chunks(kw).enumerate() {
                for (v, acc) in rows[i * w..(i + 1) * w].iter_mut().enumerate() {
                    for (j, &k) in taps.iter().enumerate() {
                        if let Some(b) = power(&betas, v + left, j, sw) {
                            *acc = zt::add(*acc, zt::mul(k, b));
                            products += 1;
                        }
                    }
                }
            }
            let weights = &mut input_weights[c * h * w..(c + 1) * h * w];
            for (u, row) in weights.chunks_mut(w).enumerate() {
                for i in 0..kh {
                    if let Some(a) = power(&alphas, u + top, i, sh) {
                        for (acc, &t) in row.iter_mut().zip(&rows[i * w..(i + 1) * w]) {
                            *acc = zt::add(*acc, zt::mul(a, t));
                        }
                        products += w as u64;
                    }
                }
            }
        }
        for secret in [&mut combined, &mut rows, &mut r, &mut alphas, &mut betas, &mut plane] {
            secret.zeroize();
        }
        let preparation = OpCount { mul: products, add: products, other: 0 };
        Self { input_weights, output_weights, bias_form: 0, preparation }
    }

    /// Makes the probe check an output that includes the bias `bias` (one value per output
    /// channel): `⟨Y + B, H⟩ = ⟨X, G⟩ + ⟨B, H⟩`.
    pub fn include_bias(&mut self, bias: &[u64]) {
        let plane = self.output_weights.len() / bias.len().max(1);
        self.bias_form = self
            .output_weights
            .chunks(plane)
            .zip(bias)
            .fold(0, |acc, (h, &b)| zt::add(acc, zt::mul(b, h.iter().fold(0, |s, &v| zt::add(s, v)))));
        let n = self.output_weights.len() as u64;
        self.preparation += OpCount { mul: bias.len() as u64, add: n, other: 0 };
    }

    /// The operations spent preparing this challenge.
    pub fn preparation(&self) -> OpCount {
        self.preparation
    }

    /// Whether `product` passes against `input` (`batch` images each), counting the
    /// operations into `ops`.
    pub fn passes(&self, input: &[u64], product: &[u64], batch: usize, ops: &mut OpCount) -> bool {
        let (x_len, y_len) = (self.input_weights.len(), self.output_weights.len());
        if input.len() != batch * x_len || product.len() != batch * y_len {
            return false;
        }
        let n = (batch * (x_len + y_len)) as u64;
        *ops += OpCount { mul: n, add: n, other: batch as u64 };
        input
            .chunks(x_len)
            .zip(product.chunks(y_len))
            .all(|(x, y)| zt::add(zt::dot(x, &self.input_weights), self.bias_form) == zt::dot(y, &self.output_weights))
    }
}

/// `repetitions` independent challenges for `kernel`; none from a challenge set that cannot
/// tell products apart.
pub fn draw_probes<R: RngCore + CryptoRng>(
    kernel: &ConvKernel,
    challenge: Challenge,
    repetitions: usize,
    rng: &mut R,
) -> Vec<Probe> {
    if !challenge.is_valid() {
        return Vec::new();
    }
    (0..repetitions).map(|_| Probe::draw(kernel, challenge, rng)).collect()
}

/// Whether `product` passes every one of `probes` against `input` (`batch` images), counting
/// the operations into `ops`. No probe accepts nothing.
pub fn all_pass(probes: &[Probe], input: &[u64], product: &[u64], batch: usize, ops: &mut OpCount) -> bool {
    !probes.is_empty() && probes.iter().all(|p| p.passes(input, product, batch, ops))
}

/// Checks `product == kernel · input` (`batch` images, no bias) with `repetitions` independent
/// challenges ([`Probe`]); `false` if any fails. No repetition, or a challenge set that cannot
/// tell products apart, accepts nothing.
pub fn check_product<R: RngCore + CryptoRng>(
    kernel: &ConvKernel,
    input: &[u64],
    product: &[u64],
    batch: usize,
    challenge: Challenge,
    repetitions: usize,
    rng: &mut R,
) -> bool {
    let probes = draw_probes(kernel, challenge, repetitions, rng);
    all_pass(&probes, input, product, batch, &mut OpCount::default())
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
