//! Oblivious transfer: 128 base OTs (Chou–Orlandi) extended to as many correlated OTs as a
//! layer needs (IKNP with the KOS consistency check).
//!
//! The evaluator is the OT-extension *receiver* (it chooses input bits) and therefore the
//! base-OT *sender*; the garbler is the extension sender, whose secret `s` is the garbling
//! `Δ`. The extension yields correlated OTs: the garbler gets `q_j`, the evaluator with choice
//! `r_j` gets `t_j = q_j ⊕ r_j·Δ` — exactly a wire's zero label and the evaluator's active label.
//! The three-party [`crate::gmw`] runs the same base OT and extension in both directions between
//! every two parties and hashes the correlated OTs into random ones ([`crate::gmw::Mesh`]).

pub mod base;
pub mod extension;
pub mod transpose;
