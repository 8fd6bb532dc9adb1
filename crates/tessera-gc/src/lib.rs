//! Garbled circuits and oblivious transfer: Tessera's exact two-party ReLU and max pool, and
//! their three-party variant with a helper.
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
//!
//! # Three parties: a helper
//!
//! [`Layer::with_helper`] builds the three-party variant: a *helper* H also holds a share `h`
//! of every input value and a mask `m` of every output, both known offline, so
//! `x = a + b + h` and the layer ends with an additive sharing of `f(x)` among three parties:
//! H keeps `m`, the garbler G its mask `r`, the evaluator E decodes `f(x) − m − r`. The circuit
//! ([`ZtCircuit::with_helper`]) takes E's offline share `c`, H's `t − h` per value and `m`, and
//! G's online words; it reconstructs `x = (c + h mod t) + b' mod t` with two of the two-party
//! circuits' reconstructions, so everything after them, and the exactness, is the two-party
//! circuit's; `m`'s bits are outputs themselves, weighted `−2^i`, so the mask costs no gate.
//!
//! Messages, per phase:
//!
//! * **Offline, G ↔ E**: the two-party messages (base OT, the OT extension of `c`'s bits, the
//!   KOS check).
//! * **Offline, G ↔ H**: the same OT messages with H as the receiver, one OT per bit of H's
//!   words, under the same `Δ`: H's OT strings are its active labels, G's `q_j` its zero labels
//!   of H's wires ([`protocol::HelperAwaitBase`], [`protocol::GarblerHelperAwaitBase`]). G's
//!   base-OT reply to H carries no hash key: H hashes nothing.
//! * **Offline, H → E**: H's active labels, 16 B per input bit ([`driver::HELPER_LABELS`]),
//!   before the tables. G garbles only after both extensions, then sends E the tables.
//! * **Online**: unchanged, G and E only (E re-shares, G sends labels, E evaluates and decodes).
//!
//! What each party sees: H only its OT messages from G (128 points and a challenge), which say
//! nothing about `Δ`; E, besides the two-party view, H's active labels, uniformly random labels
//! like its own OT strings, one of each wire's two; G the OT columns of both receivers, which are
//! uniform given its base-OT keys, and E's re-share `a − c`, uniform because `c` is. H with G
//! misses E's `c` and share; H with E misses `Δ`, so each wire's other label. **G with E see
//! everything**, as in any garbled circuit: G's zero labels and `Δ` decode every label E holds,
//! H's forwarded ones included, so the pair reads `h`, `m`, `x` and `f(x)`
//! (`protocol::tests::attack_garbler_and_evaluator_together_read_the_helpers_inputs`). A helper
//! protects its inputs against either party alone and against its own coalition with one of
//! them, never against the garbler and the evaluator together.
//!
//! # Security notes
//!
//! * **Model**: semi-honest (honest-but-curious) garbler and evaluator (and helper), as in
//!   PROTOCOLS.md section 5. No party learns anything beyond its output share; a malicious
//!   garbler could garble a different function, which this crate does not prevent.
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
//!   chooses a mask (the helper's masks `m` are its own output shares, its input like `h`).
//!   Secrets have opaque `Debug` and are wiped on drop.

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
pub use driver::{
    evaluator_offline, evaluator_offline_with_helper, evaluator_online, garbler_offline, garbler_offline_with_helper,
    garbler_online, helper_offline,
};
pub use error::{GcError, Input, Message, Result};
pub use modulus::Modulus;
pub use protocol::{Layer, MAX_FRAME, OutputShares};
pub use relu::{Nonlinear, ZtCircuit};
