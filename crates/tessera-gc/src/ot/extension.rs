//! OT extension: Ishai, Kilian, Nissim and Petrank, "Extending oblivious transfers efficiently"
//! (CRYPTO 2003), with the consistency check of Keller, Orsini and Scholl, "Actively secure OT
//! extension with optimal overhead" (CRYPTO 2015, eprint 2015/546).
//!
//! From base OTs on seeds `(k_i^0, k_i^1)`, `i < κ`, the receiver with choice vector `r`
//! expands `T_i = G(k_i^0)` and sends the columns `u_i = T_i ⊕ G(k_i^1) ⊕ r`; the sender, who
//! learned `k_i^{s_i}`, computes `Q_i = G(k_i^{s_i}) ⊕ s_i·u_i = T_i ⊕ s_i·r`. Transposed,
//! row `j` reads `q_j = t_j ⊕ r_j·s`: a correlated OT with offset `s = Δ`. `G` is AES-CTR.
//!
//! **Consistency check.** After all columns, the sender picks a random `χ ∈ GF(2^128)`; the
//! receiver answers `x = Σ_j χ_j·r_j` and `t = Σ_j χ_j·t_j`, and the sender checks
//! `Σ_j χ_j·q_j = t ⊕ x·s`. As coefficients we take `χ_j` the POLYVAL powers of one `χ`
//! (a polynomial universal hash, error ≤ m/2^128 for m OTs) so the sums are one POLYVAL
//! pass (CLMUL where the CPU has it). The receiver appends [`PADDING`] ≥ κ + σ random-choice
//! OTs that are discarded, so `x` is uniform and reveals nothing about the real choices.
//! In the semi-honest model the check is defence in depth: it catches a receiver whose columns
//! do not all carry the same `r`.

use polyval::Polyval;
use polyval::universal_hash::{KeyInit, UniversalHash};
use zeroize::Zeroizing;

use crate::block::{Block, Delta};
use crate::error::{GcError, Message, Result};
use crate::ot::transpose::transpose_rows;
use crate::prg::Prg;

/// Computational security parameter: the number of base OTs.
pub const KAPPA: usize = 128;
/// Statistical security parameter.
pub const SIGMA: usize = 40;
/// Discarded random-choice OTs appended for the consistency check (≥ κ + σ, whole words).
pub const PADDING: usize = 256;

/// The extension receiver (the evaluator): one pair of column streams per base OT.
pub struct ExtReceiver {
    prgs: Vec<(Prg, Prg)>,
}

impl std::fmt::Debug for ExtReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtReceiver(..)")
    }
}

impl ExtReceiver {
    /// From the base-OT sender's key pairs (`KAPPA` of them).
    ///
    /// # Panics
    /// If there are not `KAPPA` pairs (a caller bug).
    pub fn new(keys: &[[Block; 2]]) -> Self {
        assert_eq!(keys.len(), KAPPA, "one key pair per base OT");
        Self { prgs: keys.iter().map(|k| (Prg::new(k[0]), Prg::new(k[1]))).collect() }
    }

    /// Extends `128·choices.len()` OTs (choice `j` is bit `j % 128` of word `j / 128`): appends
    /// the column message to `message` and the receiver's strings `t_j` to `t`.
    pub fn extend(&mut self, choices: &[Block], message: &mut Vec<u8>, t: &mut Vec<Block>) {
        let w = choices.len();
        let mut rows = Zeroizing::new(vec![Block::ZERO; KAPPA * w]);
        let mut other = Zeroizing::new(vec![Block::ZERO; w]);
        message.reserve(KAPPA * w * 16);
        for (i, (p0, p1)) in self.prgs.iter_mut().enumerate() {
            let row = &mut rows[i * w..(i + 1) * w];
            p0.fill(row);
            p1.fill(&mut other);
            for k in 0..w {
                message.extend_from_slice(&(row[k] ^ other[k] ^ choices[k]).to_bytes());
            }
        }
        transpose_rows(&rows, w, t);
    }
}

/// The extension sender (the garbler): the streams of the seeds it learned, and `s = Δ`.
pub struct ExtSender {
    prgs: Vec<Prg>,
    delta: Delta,
}

impl std::fmt::Debug for ExtSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtSender(..)")
    }
}

impl ExtSender {
    /// From the base-OT receiver's keys (`KAPPA`, chosen by the bits of `delta`).
    ///
    /// # Panics
    /// If there are not `KAPPA` keys (a caller bug).
    pub fn new(delta: &Delta, keys: &[Block]) -> Self {
        assert_eq!(keys.len(), KAPPA, "one key per base OT");
        Self { prgs: keys.iter().map(|&k| Prg::new(k)).collect(), delta: delta.clone() }
    }

    /// Receives the columns of `words·128` OTs and appends the strings `q_j` to `q`.
    pub fn extend(&mut self, words: usize, message: &[u8], q: &mut Vec<Block>) -> Result<()> {
        let expected = KAPPA * words * 16;
        if message.len() != expected {
            return Err(GcError::WrongLength { message: Message::Columns, expected, actual: message.len() });
        }
        let mut rows = Zeroizing::new(vec![Block::ZERO; KAPPA * words]);
        for (i, p) in self.prgs.iter_mut().enumerate() {
            let row = &mut rows[i * words..(i + 1) * words];
            p.fill(row);
            let take = self.delta.bit(i);
            let u = &message[i * words * 16..(i + 1) * words * 16];
            for (r, c) in row.iter_mut().zip(u.chunks_exact(16)) {
                *r ^= Block::from_bytes(c.try_into().expect("16 bytes")).and_bit(take);
            }
        }
        transpose_rows(&rows, words, q);
        Ok(())
    }
}

/// POLYVAL of `blocks` under key `key`.
fn polyval(key: Block, blocks: impl Iterator<Item = Block>) -> Block {
    let mut h = Polyval::new(&key.to_bytes().into());
    let mut buf: Vec<polyval::Block> = Vec::with_capacity(1024);
    let mut blocks = blocks.peekable();
    while blocks.peek().is_some() {
        buf.clear();
        buf.extend(blocks.by_ref().take(1024).map(|b| polyval::Block::from(b.to_bytes())));
        h.update(&buf);
    }
    Block::from_bytes(h.finalize().into())
}

/// The field element 1 in POLYVAL's representation.
const ONE: Block = Block(1);

/// The receiver's answer `(x, t)` to the challenge `chi`, over all its choices and strings.
pub fn kos_prove(chi: Block, choices: &[Block], t: &[Block]) -> [Block; 2] {
    let bits = (0..t.len()).map(|j| ONE.and_bit((choices[j / 128].0 >> (j % 128)) & 1 == 1));
    [polyval(chi, bits), polyval(chi, t.iter().copied())]
}

/// The sender's check of the answer against its strings `q`.
pub fn kos_verify(chi: Block, delta: &Delta, q: &[Block], proof: [Block; 2]) -> Result<()> {
    let [x, t] = proof;
    let q_sum = polyval(chi, q.iter().copied());
    // q = t ⊕ x·s  ⇔  q·X^−128 = t·X^−128 ⊕ x·s·X^−128, each one POLYVAL block.
    let lhs = polyval(ONE, std::iter::once(q_sum));
    let rhs = polyval(ONE, std::iter::once(t)) ^ polyval(x, std::iter::once(delta.block()));
    if lhs == rhs { Ok(()) } else { Err(GcError::ConsistencyCheck) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ot::base;
    use rand::{Rng, SeedableRng};

    fn setup(rng: &mut rand_chacha::ChaCha20Rng) -> (ExtReceiver, ExtSender, Delta) {
        let delta = Delta::random(rng);
        let (bs, s) = base::BaseSender::new(rng);
        let choices: Vec<bool> = (0..KAPPA).map(|i| delta.bit(i)).collect();
        let (msg, keys) = base::receive(&choices, &s, rng).unwrap();
        let pairs = bs.finish(&msg, KAPPA).unwrap();
        (ExtReceiver::new(&pairs), ExtSender::new(&delta, &keys), delta)
    }

    #[test]
    fn extended_ots_are_correlated_by_delta_and_pass_the_check() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(21);
        let (mut rx, mut tx, delta) = setup(&mut rng);
        let mut all_choices = Vec::new();
        let (mut t, mut q) = (Vec::new(), Vec::new());
        for words in [3, 5] {
            let choices: Vec<Block> = (0..words).map(|_| Block(rng.random())).collect();
            let mut msg = Vec::new();
            rx.extend(&choices, &mut msg, &mut t);
            tx.extend(words, &msg, &mut q).unwrap();
            all_choices.extend(choices);
        }
        for j in 0..t.len() {
            let r = (all_choices[j / 128].0 >> (j % 128)) & 1 == 1;
            assert_eq!(t[j], q[j] ^ delta.block().and_bit(r), "OT {j}");
        }
        let chi = Block(rng.random());
        kos_verify(chi, &delta, &q, kos_prove(chi, &all_choices, &t)).unwrap();
    }

    #[test]
    fn inconsistent_columns_fail_the_check() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(22);
        let (mut rx, mut tx, delta) = setup(&mut rng);
        let choices: Vec<Block> = (0..4).map(|_| Block(rng.random())).collect();
        let (mut msg, mut t, mut q) = (Vec::new(), Vec::new(), Vec::new());
        rx.extend(&choices, &mut msg, &mut t);
        msg[5 * 4 * 16 + 3] ^= 0x10; // column 5 carries a different choice vector
        tx.extend(4, &msg, &mut q).unwrap();
        let chi = Block(rng.random());
        assert!(matches!(kos_verify(chi, &delta, &q, kos_prove(chi, &choices, &t)), Err(GcError::ConsistencyCheck)));
        assert!(matches!(tx.extend(4, &msg[1..], &mut q), Err(GcError::WrongLength { .. })));
    }
}
