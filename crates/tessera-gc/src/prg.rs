//! AES-128 in counter mode as a pseudorandom generator: the OT-extension column streams and the
//! garbler's input labels. The key schedule is wiped on drop (the `aes` crate's `zeroize`).

use aes::Aes128;
use aes::cipher::{BlockEncrypt, KeyInit};

use crate::block::Block;

/// A keyed AES-CTR stream.
#[derive(Clone)]
pub struct Prg {
    aes: Aes128,
    counter: u128,
}

impl std::fmt::Debug for Prg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prg").field("counter", &self.counter).finish_non_exhaustive()
    }
}

impl Prg {
    /// The stream of `seed`, from counter 0.
    pub fn new(seed: Block) -> Self {
        Self { aes: Aes128::new(&seed.to_bytes().into()), counter: 0 }
    }

    /// Writes the blocks at counters `start, start + 1, …` into `out` (random access).
    pub fn blocks_at(&self, start: u128, out: &mut [Block]) {
        let mut buf = [aes::Block::default(); 64];
        for (c, chunk) in out.chunks_mut(64).enumerate() {
            let base = start + 64 * c as u128;
            for (k, b) in buf[..chunk.len()].iter_mut().enumerate() {
                *b = (base + k as u128).to_le_bytes().into();
            }
            self.aes.encrypt_blocks(&mut buf[..chunk.len()]);
            for (o, b) in chunk.iter_mut().zip(&buf) {
                *o = Block::from_bytes((*b).into());
            }
        }
    }

    /// Fills `out` with the next blocks of the stream.
    pub fn fill(&mut self, out: &mut [Block]) {
        self.blocks_at(self.counter, out);
        self.counter += out.len() as u128;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_continues_and_random_access_agrees() {
        let mut p = Prg::new(Block(42));
        let mut a = vec![Block::ZERO; 100];
        let mut b = vec![Block::ZERO; 70];
        p.fill(&mut a);
        p.fill(&mut b);
        let mut all = vec![Block::ZERO; 170];
        Prg::new(Block(42)).blocks_at(0, &mut all);
        assert_eq!(&all[..100], &a[..]);
        assert_eq!(&all[100..], &b[..]);
        assert_ne!(a[0], a[1]);
    }
}
