//! Tessera's protocol suites. Each is written once against [`tessera_net::Channel`], so the same
//! code runs with every party in one process (in-memory channels) and across processes (TLS).
//!
//! * [`plain`]: the baseline of "plaintext inference served over the network": the user sends
//!   the image in the clear to one server, which returns the logits. No privacy at all; it
//!   measures what the transport alone costs.
//! * [`serpens_n`]: `m` share-holders run the linear layers on additive shares; a central server
//!   evaluates ReLU and max pool on masked, permuted values (PROTOCOLS.md section 4).
//! * [`serpens_2`]: two servers hold the shares and evaluate ReLU and max pool between
//!   themselves with BFV and random masks (PROTOCOLS.md section 3).
//! * [`bayes`]: the server evaluates linear layers on the user's BFV ciphertexts with weights
//!   sampled from a Bayesian posterior; the user computes the nonlinear layers in the clear
//!   (PROTOCOLS.md section 7).
//! * [`clientserver`]: a user and a model owner; linear layers on additive shares with masks
//!   prepared under the user's BFV key, ReLU and max pool as garbled circuits the user garbles
//!   ahead of the query; both the image and the weights stay private (PROTOCOLS.md section 5).
//! * [`verify`]: a client offloads its convolutions to an untrusted cloud under a one-time pad
//!   and checks every product (PROTOCOLS.md section 6).

pub mod bayes;
pub mod clientserver;
pub mod error;
mod he_layer;
mod masks;
mod parties;
pub mod plain;
pub mod seco;
pub mod serpens_2;
pub mod serpens_n;
pub mod service;
pub mod verify;
pub mod wire;

pub use error::{Result, SuiteError};
