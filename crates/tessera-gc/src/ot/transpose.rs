//! Transposing bit matrices of 128 rows: the step between IKNP's columns and its OTs.
//!
//! A 128×128 block is transposed in place in seven rounds of masked swaps (at distances 64, 32,
//! …, 1), each exchanging the off-diagonal sub-blocks of the current size: portable integer code,
//! about 2,700 operations per 128 OTs.

use crate::block::Block;

/// Transposes the 128×128 bit matrix `a` (row `r`, column `c` is bit `c` of `a[r]`) in place.
pub fn transpose128(a: &mut [u128; 128]) {
    let mut j = 64;
    let mut mask: u128 = u128::from(u64::MAX);
    while j != 0 {
        for r in 0..128 {
            if r & j == 0 {
                let t = ((a[r] >> j) ^ a[r + j]) & mask;
                a[r + j] ^= t;
                a[r] ^= t << j;
            }
        }
        j >>= 1;
        mask ^= mask << j;
    }
}

/// Transposes 128 rows of `words` 128-bit words each (`rows[i·words + k]`, row `i` bits
/// `128k..128k + 128`) into `128·words` blocks: block `j` holds bit `j` of every row.
///
/// # Panics
/// If `rows` does not hold 128 rows (a caller bug).
pub fn transpose_rows(rows: &[Block], words: usize, out: &mut Vec<Block>) {
    assert_eq!(rows.len(), 128 * words, "128 rows");
    out.reserve(128 * words);
    let mut a = [0u128; 128];
    for k in 0..words {
        for (i, x) in a.iter_mut().enumerate() {
            *x = rows[i * words + k].0;
        }
        transpose128(&mut a);
        out.extend(a.iter().map(|&x| Block(x)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn matches_the_naive_transpose() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let words = 3;
        let rows: Vec<Block> = (0..128 * words).map(|_| Block(rng.random())).collect();
        let mut out = Vec::new();
        transpose_rows(&rows, words, &mut out);
        for j in 0..128 * words {
            for i in 0..128 {
                let bit = (rows[i * words + j / 128].0 >> (j % 128)) & 1;
                assert_eq!((out[j].0 >> i) & 1, bit, "row {i} column {j}");
            }
        }
    }
}
