//! Freivalds' check of an offloaded convolution, in convolution form.

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::{ConvKernel, conv2d_single_zt};
use tessera_field::zt;

/// The challenge set `Z` the coefficients are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// All of `Z_t`: a wrong product passes with probability `1/t ≈ 2^−61`.
    Field,
    /// `{0, …, 2^bits − 1}`: passes with probability at most `2^−bits` (for tests and for
    /// clients that trade soundness for nothing: the cost does not depend on it).
    Bits(u32),
}

impl Challenge {
    fn draw<R: RngCore + CryptoRng>(&self, rng: &mut R) -> u64 {
        match self {
            Challenge::Field => zt::random(rng),
            Challenge::Bits(b) => rng.next_u64() & ((1u64 << b) - 1),
        }
    }
}

/// Checks `product == kernel · input` (`batch` images, no bias) with `repetitions` independent
/// challenges; `false` if any fails.
pub fn freivalds<R: RngCore + CryptoRng>(
    kernel: &ConvKernel,
    input: &[u64],
    product: &[u64],
    batch: usize,
    challenge: Challenge,
    repetitions: usize,
    rng: &mut R,
) -> bool {
    let g = kernel.geometry();
    let plane = g.output().expect("checked kernel").plane();
    let channels = g.out_channels;
    if product.len() != batch * channels * plane {
        return false;
    }
    (0..repetitions).all(|_| {
        let r: Vec<u64> = (0..channels).map(|_| challenge.draw(rng)).collect();
        let expected = conv2d_single_zt(g, &kernel.combine_channels(&r), input, batch, 1);
        (0..batch).all(|b| {
            let image = &product[b * channels * plane..(b + 1) * channels * plane];
            (0..plane).all(|p| {
                let combined =
                    image.chunks(plane).zip(&r).fold(0u64, |acc, (ch, &ro)| zt::add(acc, zt::mul(ro, ch[p])));
                combined == expected[b * plane + p]
            })
        })
    })
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
        assert!(freivalds(&kernel, &x, &y, 1, Challenge::Field, 2, &mut rng));
        let mut wrong = y.clone();
        wrong[5] = zt::add(wrong[5], 1);
        assert!(!freivalds(&kernel, &x, &wrong, 1, Challenge::Field, 1, &mut rng));
        assert!(!freivalds(&kernel, &x, &y[1..], 1, Challenge::Field, 1, &mut rng));
    }

    /// With `|Z| = 2^b` a single wrong element is caught exactly when its channel's coefficient
    /// is nonzero: probability `1 − 2^−b`. Over 10,000 trials the rate is within 3σ of that.
    #[test]
    fn detection_rate_matches_the_bound_for_small_challenge_sets() {
        let (kernel, x, y) = layer();
        let mut wrong = y.clone();
        wrong[7] = zt::add(wrong[7], 12345);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for bits in [1u32, 4] {
            let trials = 10_000;
            let caught = (0..trials)
                .filter(|_| !freivalds(&kernel, &x, &wrong, 1, Challenge::Bits(bits), 1, &mut rng))
                .count() as f64;
            let p = 1.0 - (-(bits as f64)).exp2();
            let sd = (p * (1.0 - p) / trials as f64).sqrt();
            let rate = caught / trials as f64;
            assert!(rate >= p - 3.0 * sd, "|Z| = 2^{bits}: caught {rate}, bound {p} ± {sd}");
            assert!(rate <= p + 3.0 * sd, "|Z| = 2^{bits}: caught {rate}, expected {p} ± {sd}");
        }
    }
}
