//! Transposing bit matrices of 128 rows: the step between IKNP's columns and its OTs.
//!
//! A 128×128 block is transposed as four 64×64 quarters, each in six rounds of masked swaps (at
//! distances 32, 16, …, 1) exchanging the off-diagonal sub-blocks of the current size: portable
//! integer code on 64-bit words, which the compiler vectorizes.

use crate::block::Block;

/// Transposes the 128×128 bit matrix `a` (row `r`, column `c` is bit `c` of `a[r]`) in place,
/// as four 64×64 transposes of its quarters on 64-bit words (which the compiler vectorizes;
/// 128-bit shifts it does not): with `a = [[A, B], [C, D]]` (rows, then column halves), the
/// transpose's low halves are `Aᵀ` over `Bᵀ` and its high halves `Cᵀ` over `Dᵀ`.
pub fn transpose128(a: &mut [u128; 128]) {
    let mut quarters = [[0u64; 64]; 4];
    for r in 0..64 {
        quarters[0][r] = a[r] as u64;
        quarters[1][r] = (a[r] >> 64) as u64;
        quarters[2][r] = a[64 + r] as u64;
        quarters[3][r] = (a[64 + r] >> 64) as u64;
    }
    quarters.iter_mut().for_each(transpose64);
    let [top_low, top_high, bottom_low, bottom_high] = &quarters;
    for c in 0..64 {
        a[c] = u128::from(top_low[c]) | (u128::from(bottom_low[c]) << 64);
        a[64 + c] = u128::from(top_high[c]) | (u128::from(bottom_high[c]) << 64);
    }
}

/// Transposes the 64×64 bit matrix `a` in place: six rounds of masked swaps at distances 32,
/// 16, …, 1.
fn transpose64(a: &mut [u64; 64]) {
    swap_round::<32>(a, 0x0000_0000_FFFF_FFFF);
    swap_round::<16>(a, 0x0000_FFFF_0000_FFFF);
    swap_round::<8>(a, 0x00FF_00FF_00FF_00FF);
    swap_round::<4>(a, 0x0F0F_0F0F_0F0F_0F0F);
    swap_round::<2>(a, 0x3333_3333_3333_3333);
    swap_round::<1>(a, 0x5555_5555_5555_5555);
}

/// One round: rows `r` and `r + J` (for `r` with bit `J` clear) swap their off-diagonal
/// `J`-bit sub-blocks. `J` is a constant, so the shifts are, and the loops have no branch.
#[inline(always)]
fn swap_round<const J: usize>(a: &mut [u64; 64], mask: u64) {
    for base in (0..64).step_by(2 * J) {
        for r in base..base + J {
            let t = ((a[r] >> J) ^ a[r + J]) & mask;
            a[r + J] ^= t;
            a[r] ^= t << J;
        }
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
