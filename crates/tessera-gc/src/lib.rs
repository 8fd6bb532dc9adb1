//! Garbled circuits and oblivious transfer: Tessera's exact two-party ReLU and max pool, and
//! their three-party evaluation by GMW.
//!
//! No published crate garbles circuits or extends OT, so this crate builds both from the papers:
//!
//! * [`block`], [`hash`]: 128-bit labels and the hash `H(x, i) = π_K(π_K(x) ⊕ i) ⊕ π_K(x)`,
//!   AES-128 under a key `K` drawn per layer.
//! * [`circuit`]: boolean circuits, with builders for adders, subtractors, comparators and
//!   multiplexers that fold public constants.
//! * [`garble`], [`evaluate`]: free-XOR + half-gates with point-and-permute (32 bytes per AND).
//! * [`decode`]: output labels turned directly into additive shares of `Z_t`.
//! * [`modulus`], [`relu`]: the ReLU, ReLU-with-truncation and max-pool circuits over `Z_t`.
//! * [`protocol`]: garbler and evaluator state machines with offline and online phases;
//!   [`driver`]: the async functions a suite calls, over any [`tessera_net::Channel`].
//! * [`ot`]: Chou–Orlandi base OT and IKNP extension with the KOS check; [`prg`]: AES-CTR.
//! * [`gmw`]: the three-party evaluation of the same functions.
//!
//! # Three parties
//!
//! [`gmw`] evaluates the nonlinear layers among three parties that each hold an additive share
//! of every input value: the GMW protocol over the shared circuits ([`ZtCircuit::shared`],
//! which reconstruct `x = s_0 + s_1 + s_2` with two of the two-party reconstructions), secure
//! against any two of the parties together (semi-honest), with AND triples from pairwise OT
//! and the output bits converted to additive shares of `f(x)` by OT. See the [`gmw`] module
//! docs for its messages and what each party sees.
//!
//! # Security notes
//!
//! * **Model**: semi-honest (honest-but-curious) garbler and evaluator (in [`gmw`], three
//!   semi-honest parties), as in PROTOCOLS.md section 5. No party learns anything beyond its
//!   output share; a malicious garbler could garble a different function, which this crate does
//!   not prevent.
//! * **Computational parameter κ = 128**: labels, `Δ` (127 random bits, its color bit is 1 for
//!   point-and-permute, as in half-gates), and OT-extension width. The hash is the `TMMO`
//!   construction of Guo, Katz, Wang and Yu (IEEE S&P 2020), tweakable circular correlation
//!   robust for a random permutation, over AES-128 under a public key drawn fresh per layer;
//!   each tweak names one wire of one instance, so none repeats under a key.
//! * **Statistical parameter σ = 40**: the bias of reducing a 128-bit hash modulo `t`
//!   (< 2^−66 for Tessera's `t`) and the OT-extension consistency check's padding are far below
//!   `2^−σ`; the ReLU and max-pool outputs are exact, with no statistical error at all.
//! * **Randomness**: `Δ`, labels, the hash key, the output masks and OT secrets come from the
//!   CSPRNG the parties pass in (ChaCha20 seeded from the OS), fresh per layer; no caller
//!   chooses a mask. Secrets have opaque `Debug` and are wiped on drop.

#![forbid(unsafe_code)]

pub mod block;
pub mod circuit;
pub mod decode;
pub mod driver;
pub mod error;
pub mod evaluate;
pub mod garble;
pub mod gmw;
pub mod hash;
pub mod modulus;
mod msgs;
pub mod ot;
pub mod prg;
pub mod protocol;
pub mod relu;

pub use block::{Block, Delta};
pub use driver::{evaluator_offline, evaluator_online, garbler_offline, garbler_online};
pub use error::{GcError, Input, Message, Result};
pub use modulus::Modulus;
pub use protocol::{Layer, MAX_FRAME, OutputShares};
pub use relu::{Nonlinear, ZtCircuit};
