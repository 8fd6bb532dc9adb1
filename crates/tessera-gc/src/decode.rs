//! Output decoding into additive shares of `Z_t`: the evaluator learns `v·w − ρ mod t` for an
//! output bit `v`, and nothing about `v`.
//!
//! For an output wire with labels `L_0` (color 0) and `L_1 = L_0 ⊕ Δ` (color 1) of values `v_0`,
//! `v_1`, the garbler sends `ct = (v_1·w − ρ) ⊕ H(L_1, τ)_low64` and sets
//! `ρ = v_0·w − (H(L_0, τ) mod t)`, so the holder of `L_0` needs no ciphertext ("row
//! reduction": 8 bytes per output). The holder of one label cannot compute the other's hash,
//! and each share it learns is uniform given its view. A *fixed* output, whose `ρ` the garbler
//! chooses (to make the shares sum to the garbler's mask `r`), sends both rows (16 bytes).
//! Output `k` of instance `i` is hashed with `output_tweak(i, k)` of [`crate::hash`], in its own
//! domain (top bit set), apart from the gates'.

use zeroize::Zeroizing;

use crate::block::Block;
use crate::hash::{Tccr, output_tweak};
use crate::modulus::Modulus;

/// `v·w` for a bit `v`.
fn scaled(v: bool, w: u64) -> u64 {
    if v { w } else { 0 }
}

/// Encodes (garbler) and decodes (evaluator) output wires as `Z_t` shares under the layer's
/// hash, reusing buffers (wiped on drop).
#[derive(Debug)]
pub(crate) struct OutputCoder<'a> {
    hash: &'a Tccr,
    m: Modulus,
    hashed: Zeroizing<Vec<Block>>,
    tweaks: Vec<u128>,
}

impl<'a> OutputCoder<'a> {
    pub(crate) fn new(m: Modulus, hash: &'a Tccr) -> Self {
        Self { hash, m, hashed: Zeroizing::new(Vec::new()), tweaks: Vec::new() }
    }

    /// The garbler's side: encodes the first outputs of instance `instance`, with zero labels
    /// `zero` and weights `weights`, into one ciphertext each (`cts`); returns `Σ ρ_k mod t`.
    pub(crate) fn encode_free(
        &mut self,
        delta: Block,
        zero: &[Block],
        weights: &[u64],
        instance: u64,
        cts: &mut [u64],
    ) -> u64 {
        let m = self.m;
        self.hashed.clear();
        self.tweaks.clear();
        for (k, &w0) in zero.iter().enumerate() {
            let l0 = w0 ^ delta.and_bit(w0.color());
            self.hashed.extend([l0, l0 ^ delta]);
            self.tweaks.extend([output_tweak(instance, k); 2]);
        }
        self.hash.hash_many(&mut self.hashed, &self.tweaks);
        let mut rho_sum = 0;
        for (k, (&w0, &w)) in zero.iter().zip(weights).enumerate() {
            let v0 = w0.color();
            let m0 = m.reduce_u128(self.hashed[2 * k].0);
            let rho = m.sub(scaled(v0, w), m0);
            let m1 = m.sub(scaled(!v0, w), rho);
            cts[k] = m1 ^ self.hashed[2 * k + 1].low64();
            rho_sum = m.add(rho_sum, rho);
        }
        rho_sum
    }

    /// The garbler's side for output `output` of instance `instance` with a chosen `ρ`: both
    /// rows, by color.
    pub(crate) fn encode_fixed(
        &self,
        delta: Block,
        zero: Block,
        w: u64,
        rho: u64,
        instance: u64,
        output: usize,
    ) -> [u64; 2] {
        let m = self.m;
        let l0 = zero ^ delta.and_bit(zero.color());
        let v0 = zero.color();
        let mut h = Zeroizing::new([l0, l0 ^ delta]);
        self.hash.hash_many(&mut *h, &[output_tweak(instance, output); 2]);
        [m.sub(scaled(v0, w), rho) ^ h[0].low64(), m.sub(scaled(!v0, w), rho) ^ h[1].low64()]
    }

    /// The evaluator's side of [`Self::encode_free`]: `Σ_k (v_k·w_k − ρ_k) mod t` from the
    /// active labels, or the index of the first ciphertext that decodes to a value not below `t`.
    pub(crate) fn decode_free(&mut self, active: &[Block], cts: &[u64], instance: u64) -> Result<u64, usize> {
        let m = self.m;
        self.hashed.clear();
        self.hashed.extend_from_slice(active);
        self.tweaks.clear();
        self.tweaks.extend((0..active.len()).map(|k| output_tweak(instance, k)));
        self.hash.hash_many(&mut self.hashed, &self.tweaks);
        let mut sum = 0;
        for (k, (&l, &h)) in active.iter().zip(self.hashed.iter()).enumerate() {
            let v = if l.color() { cts[k] ^ h.low64() } else { m.reduce_u128(h.0) };
            if v >= m.t() {
                return Err(k);
            }
            sum = m.add(sum, v);
        }
        Ok(sum)
    }

    /// The evaluator's side of [`Self::encode_fixed`], or `None` if the row decodes out of range.
    pub(crate) fn decode_fixed(&self, active: Block, cts: [u64; 2], instance: u64, output: usize) -> Option<u64> {
        let v = cts[usize::from(active.color())] ^ self.hash.hash(active, output_tweak(instance, output)).low64();
        (v < self.m.t()).then_some(v)
    }
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
        let hash = Tccr::random(&mut rng);
        let mut coder = OutputCoder::new(m, &hash);
        let delta = Delta::random(&mut rng).block();
        for _ in 0..50 {
            let zero: Vec<Block> = (0..20).map(|_| Block::random(&mut rng)).collect();
            let weights: Vec<u64> = (0..20).map(|_| m.random(&mut rng)).collect();
            let bits: Vec<bool> = (0..20).map(|_| rng.random()).collect();
            let mut cts = vec![0; 20];
            let rho = coder.encode_free(delta, &zero, &weights, 100, &mut cts);
            let active: Vec<Block> = zero.iter().zip(&bits).map(|(&z, &b)| z ^ delta.and_bit(b)).collect();
            let got = coder.decode_free(&active, &cts, 100).unwrap();
            let want = bits.iter().zip(&weights).fold(0, |a, (&b, &w)| if b { m.add(a, w) } else { a });
            assert_eq!(m.add(got, rho), want);

            let (w, r, b) = (m.random(&mut rng), m.random(&mut rng), rng.random::<bool>());
            let ct = coder.encode_fixed(delta, zero[0], w, r, 9, 0);
            let got = coder.decode_fixed(zero[0] ^ delta.and_bit(b), ct, 9, 0).unwrap();
            assert_eq!(m.add(got, r), if b { w } else { 0 });
        }
    }
}
