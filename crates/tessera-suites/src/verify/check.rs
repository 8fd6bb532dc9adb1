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
/// `K̃ = Σ_o r_o K_o`. `G` is computed here, ahead (`O(|K| + k_h·|X|)`); `H` is kept as its
/// factors, the plane `P[y, x] = α^y β^x` and the `r_o`, so that `⟨Y, H⟩ = Σ_o r_o ⟨Y_o, P⟩`
/// reads one plane of weights (cached) for every output channel. A wrong `Y` passes with
/// probability at most `(1 + H_o + W_o − 2) / |Z|` (docs/suites/verify.md, "The check").
pub struct Probe {
    /// `G`, one image (`C × H × W`).
    input_weights: Vec<u64>,
    /// `P[y, x] = α^y β^x`, one output plane.
    plane_weights: Vec<u64>,
    /// `r_o`, one per output channel.
    channel_weights: Vec<u64>,
    /// `⟨B, H⟩` for a bias `B` that the checked output includes (0 without).
    bias_form: u64,
    /// Where inputs and products are promised within `±b` of zero: `b`, `⟨b, G⟩` and `⟨b, H⟩`
    /// over one image.
    bound: Option<Bound>,
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
        self.plane_weights.zeroize();
        self.channel_weights.zeroize();
        self.bias_form.zeroize();
        if let Some(b) = &mut self.bound {
            b.zeroize();
        }
    }
}

impl Probe {
    /// Draws a challenge for `kernel` from `challenge` and prepares its weights.
    pub fn draw<R: RngCore + CryptoRng>(kernel: &ConvKernel, challenge: Challenge, rng: &mut R) -> Self {
        let g = kernel.geometry();
        let out = g.output().expect("checked kernel");
        let r: Vec<u64> = (0..g.out_channels).map(|_| challenge.draw(rng)).collect();
        let (alpha, beta) = (challenge.draw(rng), challenge.draw(rng));
        let powers = |base: u64, n: usize| {
            std::iter::successors(Some(1u64), move |&p| Some(zt::mul(p, base))).take(n).collect::<Vec<_>>()
        };
        let (mut alphas, mut betas) = (powers(alpha, out.h), powers(beta, out.w));
        // P: α^y β^x.
        let plane: Vec<u64> = alphas.iter().flat_map(|&a| betas.iter().map(move |&b| zt::mul(a, b))).collect();
        let mut products = (out.h + out.w + plane.len() + g.out_channels * g.terms()) as u64;
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
        for secret in [&mut combined, &mut rows, &mut alphas, &mut betas] {
            secret.zeroize();
        }
        let preparation = OpCount { mul: products, add: products, other: 0 };
        Self { input_weights, plane_weights: plane, channel_weights: r, bias_form: 0, bound: None, preparation }
    }

    /// Makes the probe check an output that includes the bias `bias` (one value per output
    /// channel): `⟨Y + B, H⟩ = ⟨X, G⟩ + ⟨B, H⟩`, with `⟨B, H⟩ = (Σ_o r_o b_o) · Σ P`.
    pub fn include_bias(&mut self, bias: &[u64]) {
        let channels = zt::dot(bias, &self.channel_weights);
        self.bias_form = zt::mul(channels, self.plane_sum());
        let n = (bias.len() + self.plane_weights.len()) as u64;
        self.preparation += OpCount { mul: n, add: n, other: 0 };
    }

    /// Promises inputs and products whose elements all lie within `±bound` of zero
    /// (`bound < 2^31`), which the check then reads as one 32-bit limb each:
    /// `⟨X, G⟩ = ⟨X + bound, G⟩ − ⟨bound, G⟩`, the same for `Y` and `H`, half the
    /// multiplications. A narrow pad's lift keeps its products within `±(p − 1)/2` by
    /// construction; its client tests the inputs as it pads them and withdraws the promise for
    /// an input outside ([`read_inputs_in_full`](Self::read_inputs_in_full)). An element
    /// outside a standing promise is misread: a cloud that knew the input could then have a
    /// product of the misread input accepted.
    pub fn expect_values_within(&mut self, bound: u64) {
        assert!(bound < 1 << 31, "a bound of at most 31 bits");
        let input_sum = self.input_weights.iter().fold(0, |s, &g| zt::add(s, g));
        let channel_sum = self.channel_weights.iter().fold(0, |s, &r| zt::add(s, r));
        self.bound = Some(Bound {
            bound,
            input_form: Some(zt::mul(bound, input_sum)),
            output_form: zt::mul(zt::mul(bound, self.plane_sum()), channel_sum),
        });
        let n = (self.input_weights.len() + self.plane_weights.len() + self.channel_weights.len()) as u64;
        self.preparation += OpCount { mul: 3, add: n, other: 0 };
    }

    /// Withdraws the promise of [`expect_values_within`](Self::expect_values_within) for the
    /// inputs: the check reads them in full width, exactly whatever their values.
    pub fn read_inputs_in_full(&mut self) {
        if let Some(b) = &mut self.bound {
            b.input_form = None;
        }
    }

    fn plane_sum(&self) -> u64 {
        self.plane_weights.iter().fold(0, |s, &p| zt::add(s, p))
    }

    /// Drops a probe whose product was checked without wiping its input weights `G` (its
    /// other, small, fields are wiped): the cloud sent the product before it could learn
    /// anything of the challenge, so once the check ran the challenge protects nothing, and
    /// wiping `G` (one volatile store per input value) is a measurable share of the client's
    /// online time.
    pub fn discard_checked(mut self) {
        drop(std::mem::take(&mut self.input_weights));
    }

    /// The operations spent preparing this challenge.
    pub fn preparation(&self) -> OpCount {
        self.preparation
    }

    /// Whether `product` passes against `input` (`batch` images each), counting the
    /// operations into `ops`.
    pub fn passes(&self, input: &[u64], product: &[u64], batch: usize, ops: &mut OpCount) -> bool {
        let x_len = self.input_weights.len();
        let (plane, channels) = (self.plane_weights.len(), self.channel_weights.len());
        let y_len = plane * channels;
        if input.len() != batch * x_len || product.len() != batch * y_len {
            return false;
        }
        let n = (batch * (x_len + y_len + channels)) as u64;
        *ops += OpCount { mul: n, add: n, other: batch as u64 };
        input.chunks(x_len).zip(product.chunks(y_len)).all(|(x, y)| self.input_form(x) == self.output_form(y))
    }

    /// `⟨X, G⟩ + ⟨B, H⟩` for one image's input `X`.
    fn input_form(&self, x: &[u64]) -> u64 {
        let form = match &self.bound {
            Some(Bound { bound, input_form: Some(form), .. }) => {
                zt::sub(zt::dot_shifted(x, *bound, &self.input_weights), *form)
            }
            _ => zt::dot(x, &self.input_weights),
        };
        zt::add(form, self.bias_form)
    }

    /// `⟨Y, H⟩ = Σ_o r_o ⟨Y_o, P⟩` for one image's product `Y`.
    fn output_form(&self, y: &[u64]) -> u64 {
        let per_channel = |y_o: &[u64]| match &self.bound {
            Some(b) => zt::dot_shifted(y_o, b.bound, &self.plane_weights),
            None => zt::dot(y_o, &self.plane_weights),
        };
        let shifted = y
            .chunks(self.plane_weights.len())
            .zip(&self.channel_weights)
            .fold(0, |acc, (y_o, &r)| zt::add(acc, zt::mul(r, per_channel(y_o))));
        self.bound.as_ref().map_or(shifted, |b| zt::sub(shifted, b.output_form))
    }
}

/// A bound on a probe's inputs and products, with the forms of the shift it reads them at.
#[derive(Zeroize)]
struct Bound {
    bound: u64,
    /// `⟨bound, G⟩` over one image, while the inputs are promised within the bound.
    input_form: Option<u64>,
    /// `⟨bound, H⟩` over one image.
    output_form: u64,
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

    /// A kernel of geometry `g` with small weights, a random batch and its exact product.
    fn case(g: ConvGeometry, batch: usize, rng: &mut ChaCha20Rng) -> (ConvKernel, Vec<u64>, Vec<u64>) {
        let w: Vec<i64> = (0..g.out_channels * g.terms()).map(|_| (rng.next_u64() % 41) as i64 - 20).collect();
        let kernel = ConvKernel::new(g, &w).unwrap();
        let x = zt::random_vec(rng, batch * g.input.len());
        let y = conv2d_zt(&kernel, &x, batch, 1);
        (kernel, x, y)
    }

    /// Errors a cheating cloud could shape against the precomputed weights: at outputs that read
    /// only padding, under strides above the kernel (inputs no output reads), on 1 × 1 and FC
    /// layers, on one whole channel, on one image of a batch that shares the challenge, and
    /// pairs that cancel along one axis, across channels or across images' sums. Every one
    /// fails with `|Z| = t`, repetition after repetition; the honest product always passes.
    #[test]
    fn structured_errors_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let geometries = [
            // Padding 3 around a 1 × 1 kernel: the border outputs read only padding.
            ConvGeometry {
                input: ImageShape::new(2, 3, 4),
                out_channels: 3,
                window: Window2d { kernel: [1, 1], stride: [1, 1], pads: [3, 3, 3, 3] },
            },
            // Stride 4 over a 2 × 2 kernel: half the input rows and columns are never read.
            ConvGeometry {
                input: ImageShape::new(3, 9, 9),
                out_channels: 2,
                window: Window2d { kernel: [2, 2], stride: [4, 4], pads: [0, 0, 0, 0] },
            },
            ConvGeometry { input: ImageShape::new(5, 4, 4), out_channels: 4, window: Window2d::square(1, 1) },
            ConvGeometry::dense(40, 10),
            // One output position, kernel as large as the padded input.
            ConvGeometry {
                input: ImageShape::new(2, 2, 2),
                out_channels: 3,
                window: Window2d { kernel: [4, 4], stride: [1, 1], pads: [1, 1, 1, 1] },
            },
        ];
        for g in geometries {
            let batch = 3;
            let (kernel, x, y) = case(g, batch, &mut rng);
            let out = g.output().unwrap();
            let (plane, image) = (out.plane(), out.len());
            let at = |b: usize, o: usize, yy: usize, xx: usize| b * image + o * plane + yy * out.w + xx;
            let mut errors: Vec<(&str, Vec<(usize, u64)>)> = vec![
                ("first element", vec![(at(0, 0, 0, 0), 1)]),
                ("last element of the last image", vec![(at(batch - 1, out.c - 1, out.h - 1, out.w - 1), 1)]),
                ("whole channel", (0..plane).map(|p| (at(1, out.c - 1, 0, 0) + p, 1 + p as u64)).collect()),
                ("whole middle image", (0..image).map(|p| (at(1, 0, 0, 0) + p, zt::T - 1)).collect()),
                ("every image alike", (0..batch).map(|b| (at(b, 0, 0, 0), 7)).collect()),
                ("two channels cancel", vec![(at(0, 0, 0, 0), 5), (at(0, out.c - 1, 0, 0), zt::T - 5)]),
                // Errors in two images that cancel in the sum of the images' forms.
                ("images cancel", vec![(at(0, 0, 0, 0), 5), (at(1, 0, 0, 0), zt::T - 5)]),
            ];
            if out.w > 1 {
                errors.push(("row neighbours cancel", vec![(at(0, 0, 0, 0), 1), (at(0, 0, 0, 1), zt::T - 1)]));
            }
            if out.h > 1 && out.w > 1 {
                // e·(1 − αβ): vanishes only where αβ = 1.
                errors.push(("diagonal cancels", vec![(at(2, 0, 0, 0), 3), (at(2, 0, 1, 1), zt::T - 3)]));
            }
            if g.window.pads[0] >= g.window.kernel[0] {
                // Outputs whose window lies in the padding: the honest value is 0.
                assert_eq!(y[at(0, 0, 0, 0)], 0, "{g:?}");
            }
            for _ in 0..20 {
                assert!(check_product(&kernel, &x, &y, batch, Challenge::Field, 1, &mut rng), "{g:?}");
                for (name, error) in &errors {
                    let mut wrong = y.clone();
                    error.iter().for_each(|&(i, e)| wrong[i] = zt::add(wrong[i], e));
                    assert!(!check_product(&kernel, &x, &wrong, batch, Challenge::Field, 1, &mut rng), "{g:?}: {name}");
                }
            }
        }
    }

    /// With the bias folded in (`Probe::include_bias`), the product plus the bias passes, the
    /// product without it fails, and so does every error shaped like the bias pattern (`c · b_o`
    /// on every output of channel `o`), in one image or all.
    #[test]
    fn bias_pattern_errors_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let g = ConvGeometry {
            input: ImageShape::new(3, 6, 5),
            out_channels: 4,
            window: Window2d { kernel: [3, 2], stride: [2, 1], pads: [1, 0, 1, 1] },
        };
        let batch = 2;
        let (kernel, x, y) = case(g, batch, &mut rng);
        let plane = g.output().unwrap().plane();
        let bias: Vec<u64> = [3i64, -7, 0, 123_456].iter().map(|&b| zt::from_i64(b)).collect();
        let with_bias = |factor: u64, images: usize| {
            let mut v = y.clone();
            let len = v.len() / batch * images;
            fold_bias_test(&mut v[..len], &bias, plane, factor);
            v
        };
        for _ in 0..20 {
            let mut probes = draw_probes(&kernel, Challenge::Field, 1, &mut rng);
            probes.iter_mut().for_each(|p| p.include_bias(&bias));
            let ops = &mut OpCount::default();
            assert!(all_pass(&probes, &x, &with_bias(1, batch), batch, ops));
            assert!(!all_pass(&probes, &x, &y, batch, ops), "the bias left out");
            for factor in [0, 2, zt::T - 1, zt::random(&mut rng)] {
                assert!(!all_pass(&probes, &x, &with_bias(factor, batch), batch, ops), "{factor} · b");
            }
            // The bias twice in the first image only.
            let mut twice = with_bias(1, batch);
            fold_bias_test(&mut twice[..y.len() / batch], &bias, plane, 1);
            assert!(!all_pass(&probes, &x, &twice, batch, ops));
        }
    }

    fn fold_bias_test(y: &mut [u64], bias: &[u64], plane: usize, factor: u64) {
        for (chunk, &b) in y.chunks_mut(plane).zip(bias.iter().cycle()) {
            chunk.iter_mut().for_each(|v| *v = zt::add(*v, zt::mul(factor, b)));
        }
    }

    /// The edges of `Challenge::Bits`: 60 bits draws below `2^60` (all field elements) and
    /// tells products apart; 1 bit draws only 0 and 1; the sizes outside draw no probe.
    #[test]
    fn challenge_bit_edges() {
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let (kernel, x, y) = layer();
        let draws: Vec<u64> = (0..10_000).map(|_| Challenge::Bits(60).draw(&mut rng)).collect();
        assert!(draws.iter().all(|&v| v < 1 << 60));
        assert!(draws.iter().any(|&v| v >= 1 << 59), "the top bit is drawn");
        let ones: Vec<u64> = (0..1000).map(|_| Challenge::Bits(1).draw(&mut rng)).collect();
        assert!(ones.iter().all(|&v| v <= 1) && ones.contains(&0) && ones.contains(&1));
        let mut wrong = y.clone();
        wrong[0] = zt::add(wrong[0], 1);
        for _ in 0..50 {
            assert!(check_product(&kernel, &x, &y, 1, Challenge::Bits(60), 1, &mut rng));
            assert!(!check_product(&kernel, &x, &wrong, 1, Challenge::Bits(60), 1, &mut rng));
        }
        for bits in [0, 61, 62, 63, 64, u32::MAX] {
            assert!(!Challenge::Bits(bits).is_valid());
            assert!(draw_probes(&kernel, Challenge::Bits(bits), 3, &mut rng).is_empty(), "{bits} bits");
        }
    }

    /// Products or inputs of the wrong length, or a batch that does not match them, fail without
    /// a panic.
    #[test]
    fn wrong_lengths_fail() {
        let mut rng = ChaCha20Rng::seed_from_u64(24);
        let (kernel, x, y) = layer();
        let probes = draw_probes(&kernel, Challenge::Field, 2, &mut rng);
        let ops = &mut OpCount::default();
        assert!(all_pass(&probes, &x, &y, 1, ops));
        let mut long = y.clone();
        long.push(0);
        assert!(!all_pass(&probes, &x, &long, 1, ops));
        assert!(!all_pass(&probes, &x, &y[..y.len() - 1], 1, ops));
        assert!(!all_pass(&probes, &x, &[], 1, ops));
        assert!(!all_pass(&probes, &x, &y, 2, ops));
        assert!(!all_pass(&probes, &x[1..], &y, 1, ops));
        let doubled: Vec<u64> = y.iter().chain(&y).copied().collect();
        assert!(!all_pass(&probes, &x, &doubled, 2, ops));
    }
}
