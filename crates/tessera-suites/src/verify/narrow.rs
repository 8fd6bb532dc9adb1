//! The narrow pad: offloaded inputs and products travel in `Z_p`, `p = 2^32 − 5`, four bytes a
//! value instead of the eight of `Z_t`.
//!
//! The model's values are far smaller than `t`: every product `K·X + b` of a calibrated model is
//! below `2^ℓx` in magnitude (`ℓx` = the fixed-point bound, 21–22 bits on the shipped models).
//! Where `2^ℓx < p/2`, the residue of `K·X + b` mod `p` determines it, so the client can send
//! `X + M mod p` (`M` uniform in `Z_p`: the message is uniform, as with the wide pad), have the
//! cloud return `K·(X + M) mod p`, and recover `K·X + b = K·(X + M) − (K·M − b) mod p` lifted to
//! `(−p/2, p/2)`. The cloud computes `K·Z` for `Z < p` with the exact `Z_t` kernels, which is
//! exact as an integer while every output row has `Σ|k| · (p − 1) < t/2`.
//!
//! The product check is unchanged: it runs in `Z_t` on the lifted product, so a wrong reply
//! (whose lift differs from `K·X + b`) is caught with the same `(H_o + W_o − 1)/|Z|` bound.

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::ConvKernel;
use tessera_field::zt;

/// The wire tag of an OFFLOAD padded in `Z_p` (after the disguises' own tags: the wide pad, 0,
/// and the insecure monomial disguise, 1).
pub const TAG: u32 = 2;

/// The narrow pad's modulus, the largest prime below `2^32`.
pub const P: u64 = 4_294_967_291;

/// Whether a layer can be offloaded in `Z_p`: its products of inputs below `p` are exact in
/// `Z_t`, and values below `2^bound_bits` (the model's fixed-point bound) lift back uniquely.
pub fn fits(kernel: &ConvKernel, bound_bits: u32) -> bool {
    let terms = kernel.geometry().terms();
    let widest = kernel
        .integer_weights()
        .chunks(terms.max(1))
        .map(|row| row.iter().map(|w| u128::from(w.unsigned_abs())).sum::<u128>())
        .max()
        .unwrap_or(0);
    bound_bits < 31 && widest * u128::from(P - 1) < u128::from(zt::T / 2)
}

/// `t mod p`: what a negative value `v − t` takes off its residue.
const T_MOD_P: u64 = zt::T % P;

/// The residue mod `p` of a `Z_t` value read as signed, in arithmetic with no branch on the
/// value (conditions become masks), so that loops over activations vectorize.
#[inline(always)]
pub fn reduce(v: u64) -> u64 {
    // `2^32 ≡ 5 (mod p)`: fold the high half in twice (`v < 2^61`, then below `1.625 · 2^32`,
    // then at most `2^32 − 1 = p + 4`) and subtract `p` once.
    let r = 5 * (v >> 32) + (v & 0xFFFF_FFFF);
    let r = 5 * (r >> 32) + (r & 0xFFFF_FFFF);
    let r = r - (P & mask(r >= P));
    // A negative value stands for `v − t`.
    sub(r, T_MOD_P & mask(v > zt::HALF))
}

/// All ones where `condition` holds, else zero.
#[inline(always)]
fn mask(condition: bool) -> u64 {
    0u64.wrapping_sub(u64::from(condition))
}

/// The `Z_t` value of the signed representative in `(−p/2, p/2)` of a residue mod `p`
/// (branch-free: the sign of a product is data).
#[inline]
pub fn lift(v: u64) -> u64 {
    v + ((zt::T - P) & mask(v > P / 2))
}

/// `K·M − b mod p` from the exact `K·M` (in `Z_t`, `|K·M| < t/2` where the layer fits) and
/// the bias `b` (in `Z_t`): each is reduced on its own, so `K·M − b` need not fit `(−t/2, t/2)`
/// (subtracting in `Z_t` first wraps when `|K·M| + |b| ≥ t/2`, and `t` is no multiple of `p`).
#[inline]
pub fn minus_bias(km: u64, b: u64) -> u64 {
    sub(reduce(km), reduce(b))
}

/// `a + b mod p` for residues.
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    let s = a + b;
    s - (P & mask(s >= P))
}

/// `a − b mod p` for residues.
#[inline]
pub fn sub(a: u64, b: u64) -> u64 {
    a + (P & mask(a < b)) - b
}

/// A uniform residue mod `p` (rejection sampling of 32-bit words).
pub fn random<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> u64 {
    loop {
        let v = u64::from(rng.next_u32());
        if v < P {
            return v;
        }
    }
}

/// Little-endian bytes of residues, four each.
pub fn to_bytes(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d, conv2d_zt};

    /// The branch-free reduction equals the signed value's Euclidean residue, at the edges of
    /// both halves of `Z_t` and of the folds, and on random elements.
    #[test]
    fn reduction_equals_the_signed_residue() {
        let mut rng = tessera_field::seed::os_rng();
        let edges = [
            0,
            1,
            P - 1,
            P,
            P + 1,
            2 * P,
            (1 << 32) - 1,
            1 << 32,
            zt::HALF,
            zt::HALF + 1,
            zt::T - 1,
            zt::T - P,
            zt::T - P - 1,
        ];
        for v in edges.into_iter().chain((0..100_000).map(|_| zt::random(&mut rng))) {
            assert_eq!(reduce(v), zt::to_i64(v).rem_euclid(P as i64) as u64, "{v}");
        }
    }

    #[test]
    fn residues_lift_back_to_the_signed_values_they_came_from() {
        for v in [0i64, 1, -1, (1 << 30) - 1, -(1 << 30), (P / 2) as i64, -((P / 2) as i64)] {
            assert_eq!(lift(reduce(zt::from_i64(v))), zt::from_i64(v), "{v}");
        }
        // Far from zero, reduction divides.
        for v in [P as i64, -(P as i64), 1 << 59, -(1 << 59) - 3] {
            assert_eq!(reduce(zt::from_i64(v)), v.rem_euclid(P as i64) as u64, "{v}");
        }
        assert_eq!(add(P - 1, 1), 0);
        assert_eq!(sub(0, 1), P - 1);
    }

    /// `K·(X + M) − K·M mod p` is `K·X` for a random pad, signed inputs and the widest weights
    /// that fit; one more unit of weight and the layer no longer fits.
    #[test]
    fn a_padded_product_in_z_p_unpads_to_the_exact_product() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let g = ConvGeometry { input: ImageShape::new(3, 6, 6), out_channels: 2, window: Window2d::square(3, 1) };
        let w: Vec<i64> = (0..2 * g.terms()).map(|i| if i % 2 == 0 { 4000 } else { -4000 }).collect();
        let kernel = ConvKernel::new(g, &w).unwrap();
        assert!(fits(&kernel, 22));
        let x: Vec<u64> = (0..g.input.len()).map(|i| zt::from_i64((i as i64 * 7919) % (1 << 16) - (1 << 15))).collect();
        let m: Vec<u64> = (0..x.len()).map(|_| random(&mut rng)).collect();
        let z: Vec<u64> = x.iter().zip(&m).map(|(&x, &m)| add(reduce(x), m)).collect();
        let (kz, km, kx) = (conv2d_zt(&kernel, &z, 1, 1), conv2d_zt(&kernel, &m, 1, 1), conv2d_zt(&kernel, &x, 1, 1));
        for ((&kz, &km), &kx) in kz.iter().zip(&km).zip(&kx) {
            assert_eq!(lift(sub(reduce(kz), reduce(km))), kx);
        }
        let heavy = vec![(zt::T / 2 / (P - 1)) as i64 / g.terms() as i64 + 1; 2 * g.terms()];
        assert!(!fits(&ConvKernel::new(g, &heavy).unwrap(), 22));
        assert!(!fits(&kernel, 31), "values of 31 bits do not lift uniquely");
    }

    /// The 1×1 convolution of one channel by `w`: one term per output row.
    fn single(w: &[i64]) -> ConvKernel {
        let g = ConvGeometry { input: ImageShape::new(1, 1, 1), out_channels: w.len(), window: Window2d::square(1, 1) };
        ConvKernel::new(g, w).unwrap()
    }

    /// The largest weight of a one-term row that fits: `⌊(t/2 − 1)/(p − 1)⌋ = 2^28`.
    const EDGE: i64 = 1 << 28;

    /// `lift` is a bijection from `[0, p)` onto `[−(p−1)/2, (p−1)/2]`: a reply residue
    /// determines one `Z_t` value, so no two replies lift to the same element, and `reduce`
    /// inverts it exactly at the boundary.
    #[test]
    fn adversary_narrow_lift_is_a_bijection_at_its_boundary() {
        let half = (P - 1) / 2;
        assert_eq!(P / 2, half, "p is odd");
        assert_eq!(lift(half), half);
        assert_eq!(zt::to_i64(lift(half + 1)), -(half as i64));
        assert_eq!(zt::to_i64(lift(P - 1)), -1);
        assert_eq!(lift(0), 0);
        for v in [0, 1, half - 1, half, half + 1, half + 2, P - 2, P - 1] {
            assert_eq!(reduce(lift(v)), v, "{v}");
            assert!(zt::to_i64(lift(v)).unsigned_abs() <= half, "{v}");
        }
        // The signed values just past ±(p−1)/2 alias to the other end: an honest product there
        // lifts wrongly (by ∓p) and the check must catch it.
        assert_eq!(zt::to_i64(lift(reduce(zt::from_i64(half as i64 + 1)))), half as i64 + 1 - P as i64);
        assert_eq!(zt::to_i64(lift(reduce(zt::from_i64(-(half as i64) - 1)))), P as i64 - half as i64 - 1);
        // `reduce` is exact for every Z_t value the client can hold: negative values, values at
        // or above p, and the far ends of Z_t.
        for v in [-1i64, -(P as i64), P as i64, (P as i64) * 3 + 7, (zt::T / 2) as i64, -((zt::T / 2) as i64)] {
            assert_eq!(reduce(zt::from_i64(v)), v.rem_euclid(P as i64) as u64, "{v}");
        }
        assert_eq!(reduce(zt::T - 1), P - 1);
        // −p and −p + 1, where a negative value's residue wraps past zero.
        assert_eq!((reduce(zt::T - P), reduce(zt::T - P + 1), reduce(zt::T - P - 1)), (0, 1, P - 1));
    }

    /// `fits` bounds each output row on its own (not only the first, not the sum of all), and at
    /// its edge the cloud's product of the largest residues is still the exact integer.
    #[test]
    fn adversary_narrow_fits_is_per_row_and_exact_at_its_edge() {
        assert!(u128::from(EDGE as u64) * u128::from(P - 1) < u128::from(zt::T / 2));
        assert!(u128::from(EDGE as u64 + 1) * u128::from(P - 1) >= u128::from(zt::T / 2));
        assert!(fits(&single(&[EDGE]), 30));
        assert!(fits(&single(&[-EDGE]), 30));
        assert!(!fits(&single(&[EDGE + 1]), 30));
        // Only the last row is too wide.
        assert!(!fits(&single(&[1, 1, -(EDGE + 1)]), 22));
        // Every row at the edge: together far beyond, each one fits.
        assert!(fits(&single(&[EDGE, -EDGE, EDGE]), 22));
        // Two terms sharing the edge weight.
        let g = ConvGeometry { input: ImageShape::new(2, 1, 1), out_channels: 1, window: Window2d::square(1, 1) };
        assert!(fits(&ConvKernel::new(g, &[EDGE / 2, -(EDGE / 2)]).unwrap(), 22));
        assert!(!fits(&ConvKernel::new(g, &[EDGE / 2 + 1, -(EDGE / 2)]).unwrap(), 22));
        assert!(!fits(&single(&[1]), 31) && fits(&single(&[1]), 30));
        // The cloud's K·Z at the edge, Z = p − 1 everywhere: exact, so its residue is right.
        for w in [[EDGE, -EDGE, EDGE], [-EDGE, EDGE, 1]] {
            let kernel = single(&w);
            let y = conv2d_zt(&kernel, &[P - 1], 1, 1);
            for (&y, &w) in y.iter().zip(&w) {
                let exact = i128::from(w) * i128::from(P - 1);
                assert_eq!(i128::from(zt::to_i64(y)), exact);
                assert_eq!(u128::from(reduce(y)), exact.rem_euclid(i128::from(P)) as u128);
            }
        }
    }

    /// `K·M − b` mod p where `K·M` sits at the edge that `fits` allows and the bias is large:
    /// subtracting in `Z_t` first wraps past `t/2` (the residue is then off by `t mod p`);
    /// [`minus_bias`] reduces each term first and stays exact. Reachable only with `|b|` above
    /// `t/2 − 2^28 (p − 1) ≈ 1.6·10^9`, beyond any bias below the `2^30` bound.
    #[test]
    fn adversary_narrow_bias_is_subtracted_mod_p_without_wrapping() {
        let km = conv2d_zt(&single(&[EDGE]), &[P - 1], 1, 1)[0];
        let gap = i128::from(zt::T / 2) - i128::from(zt::to_i64(km));
        assert_eq!(gap, 1_609_596_928);
        for b in [0i64, 1, -1, -(1 << 30), 1 << 30, -(1 << 31), -(1 << 40)] {
            let exact = (i128::from(zt::to_i64(km)) - i128::from(b)).rem_euclid(i128::from(P)) as u64;
            assert_eq!(minus_bias(km, zt::from_i64(b)), exact, "{b}");
            let folded_in_z_t = reduce(zt::sub(km, zt::from_i64(b)));
            assert_eq!(folded_in_z_t == exact, i128::from(-b) < gap, "{b}");
        }
    }

    /// The pad: `random` skips words at or above `p` and is uniform below it; `X + M` is then
    /// uniform whatever `X` is (adding `reduce(X)` permutes `Z_p`).
    #[test]
    fn adversary_narrow_random_rejects_words_at_or_above_p() {
        struct Words(Vec<u32>);
        impl RngCore for Words {
            fn next_u32(&mut self) -> u32 {
                self.0.remove(0)
            }
            fn next_u64(&mut self) -> u64 {
                u64::from(self.next_u32())
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for chunk in dest.chunks_mut(4) {
                    chunk.copy_from_slice(&self.next_u32().to_le_bytes()[..chunk.len()]);
                }
            }
        }
        impl CryptoRng for Words {}
        let mut words = Words(vec![u32::MAX, P as u32, P as u32 + 1, (P - 1) as u32, 0, 7]);
        assert_eq!(random(&mut words), P - 1);
        assert_eq!(random(&mut words), 0);
        assert_eq!(random(&mut words), 7);
        // Sixteen buckets of 200,000 draws: chi-square with 15 degrees of freedom below 50.
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let mut buckets = [0u64; 16];
        let n = 200_000;
        for _ in 0..n {
            buckets[(random(&mut rng) * 16 / P) as usize] += 1;
        }
        let e = n as f64 / 16.0;
        let chi: f64 = buckets.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
        assert!(chi < 50.0, "{chi}: {buckets:?}");
        // The same pad masks inputs that agree mod p identically, and distinct residues to
        // distinct messages.
        let m = random(&mut rng);
        let z = |x: i64| add(reduce(zt::from_i64(x)), m);
        assert_eq!(z(-1), z(P as i64 - 1));
        assert_eq!(z(5), z(5 + 3 * P as i64));
        assert_ne!(z(0), z(1));
    }
}
