//! Output decoding into additive shares of `Z_t`: the evaluator learns `v·w − ρ mod t` for an
//! output bit `v`, and nothing about `v`.
//!
//! For an output wire with labels `L_0` (color 0) and `L_1 = L_0 ⊕ Δ` (color 1) of values `v_0`,
//! `v_1`, the garbler sends `ct = (v_1·w − ρ) ⊕ H(L_1, τ)_low64` and sets
//! `ρ = v_0·w − (H(L_0, τ) mod t)`, so the holder of `L_0` needs no ciphertext ("row
//! reduction": 8 bytes per output). The holder of one label cannot compute the other's hash,
//! and each share it learns is uniform given its view. A *fixed* output, whose `ρ` the garbler
//! chooses (to make the shares sum to a chosen mask `r`), sends both rows (16 bytes).
//! Tweaks live in their own domain (top bit set), apart from the gates'.

use crate::block::Block;
use crate::hash::Tccr;
use crate::modulus::Modulus;

/// The tweak domain of output decoding.
pub(crate) const DOMAIN: u128 = 1 << 127;

/// `v·w` for a bit `v`.
fn scaled(v: bool, w: u64) -> u64 {
    if v { w } else { 0 }
}

/// The garbler's side: encodes outputs with zero labels `zero` and weights `weights` into one
/// ciphertext each (`cts`), with tweaks `first_tweak + k`; returns `Σ ρ_k mod t`.
pub(crate) fn encode_free(
    hash: &Tccr,
    delta: Block,
    m: &Modulus,
    zero: &[Block],
    weights: &[u64],
    first_tweak: u128,
    cts: &mut [u64],
    scratch: &mut Vec<Block>,
) -> u64 {
    scratch.clear();
    let mut tweaks = Vec::with_capacity(2 * zero.len());
    for (k, &w0) in zero.iter().enumerate() {
        let l0 = w0 ^ delta.and_bit(w0.color());
        scratch.extend([l0, l0 ^ delta]);
        tweaks.extend([DOMAIN | (first_tweak + k as u128); 2]);
    }
    hash.hash_many(scratch, &tweaks);
    let mut rho_sum = 0;
    for (k, (&w0, &w)) in zero.iter().zip(weights).enumerate() {
        let v0 = w0.color();
        let m0 = m.reduce_u128(scratch[2 * k].0);
        let rho = m.sub(scaled(v0, w), m0);
        let m1 = m.sub(scaled(!v0, w), rho);
        cts[k] = m1 ^ scratch[2 * k + 1].low64();
        rho_sum = m.add(rho_sum, rho);
    }
    rho_sum
}

/// The garbler's side for one output with a chosen `ρ`: both rows, by color.
pub(crate) fn encode_fixed(
    hash: &Tccr,
    delta: Block,
    m: &Modulus,
    zero: Block,
    w: u64,
    rho: u64,
    tweak: u128,
) -> [u64; 2] {
    let l0 = zero ^ delta.and_bit(zero.color());
    let v0 = zero.color();
    let mut h = [l0, l0 ^ delta];
    hash.hash_many(&mut h, &[DOMAIN | tweak; 2]);
    [m.sub(scaled(v0, w), rho) ^ h[0].low64(), m.sub(scaled(!v0, w), rho) ^ h[1].low64()]
}

/// The evaluator's side of [`encode_free`]: `Σ_k (v_k·w_k − ρ_k) mod t` from the active labels,
/// or the index of the first ciphertext that decodes to a value not below `t`.
pub(crate) fn decode_free(
    hash: &Tccr,
    m: &Modulus,
    active: &[Block],
    cts: &[u64],
    first_tweak: u128,
    scratch: &mut Vec<Block>,
) -> Result<u64, usize> {
    scratch.clear();
    scratch.extend_from_slice(active);
    let tweaks: Vec<u128> = (0..active.len()).map(|k| DOMAIN | (first_tweak + k as u128)).collect();
    hash.hash_many(scratch, &tweaks);
    let mut sum = 0;
    for (k, (&l, &h)) in active.iter().zip(scratch.iter()).enumerate() {
        let v = if l.color() { cts[k] ^ h.low64() } else { m.reduce_u128(h.0) };
        if v >= m.t() {
            return Err(k);
        }
        sum = m.add(sum, v);
    }
    Ok(sum)
}

/// The evaluator's side of [`encode_fixed`], or `None` if the row decodes out of range.
pub(crate) fn decode_fixed(hash: &Tccr, m: &Modulus, active: Block, cts: [u64; 2], tweak: u128) -> Option<u64> {
    let v = cts[usize::from(active.color())] ^ hash.hash(active, DOMAIN | tweak).low64();
    (v < m.t()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::Delta;
    use rand::{Rng, SeedableRng};

    #[test]
    fn shares_decode_to_the_weighted_bits() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let m = Modulus::tessera();
        let hash = Tccr::new();
        let delta = Delta::random(&mut rng).block();
        let mut scratch = Vec::new();
        for _ in 0..50 {
            let zero: Vec<Block> = (0..20).map(|_| Block::random(&mut rng)).collect();
            let weights: Vec<u64> = (0..20).map(|_| m.random(&mut rng)).collect();
            let bits: Vec<bool> = (0..20).map(|_| rng.random()).collect();
            let mut cts = vec![0; 20];
            let rho = encode_free(&hash, delta, &m, &zero, &weights, 100, &mut cts, &mut scratch);
            let active: Vec<Block> = zero.iter().zip(&bits).map(|(&z, &b)| z ^ delta.and_bit(b)).collect();
            let got = decode_free(&hash, &m, &active, &cts, 100, &mut scratch).unwrap();
            let want = bits.iter().zip(&weights).fold(0, |a, (&b, &w)| if b { m.add(a, w) } else { a });
            assert_eq!(m.add(got, rho), want);

            let (w, r, b) = (m.random(&mut rng), m.random(&mut rng), rng.random::<bool>());
            let ct = encode_fixed(&hash, delta, &m, zero[0], w, r, 9);
            let got = decode_fixed(&hash, &m, zero[0] ^ delta.and_bit(b), ct, 9).unwrap();
            assert_eq!(m.add(got, r), if b { w } else { 0 });
        }
    }
}
