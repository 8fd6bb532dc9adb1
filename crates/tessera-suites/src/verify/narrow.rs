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

/// The residue mod `p` of a `Z_t` value read as signed. Activations are far below `p` in
/// magnitude, so the division is the rare case.
#[inline]
pub fn reduce(v: u64) -> u64 {
    if v < P {
        v
    } else if v > zt::T - P {
        // A negative value above −p: `v − t + p`.
        v - (zt::T - P)
    } else {
        zt::to_i64(v).rem_euclid(P as i64) as u64
    }
}

/// The `Z_t` value of the signed representative in `(−p/2, p/2)` of a residue mod `p`
/// (branch-free: the sign of a product is data).
#[inline]
pub fn lift(v: u64) -> u64 {
    v + (zt::T - P) * u64::from(v > P / 2)
}

/// `a + b mod p` for residues.
#[inline]
pub fn add(a: u64, b: u64) -> u64 {
    let s = a + b;
    s - P * u64::from(s >= P)
}

/// `a − b mod p` for residues.
#[inline]
pub fn sub(a: u64, b: u64) -> u64 {
    a + P * u64::from(a < b) - b
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
}
