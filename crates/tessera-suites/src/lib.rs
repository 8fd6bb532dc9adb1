//! Tessera's protocol suites. Each is written once against [`tessera_net::Channel`], so the same
//! code runs with every party in one process (in-memory channels) and across processes (TLS).
//!
//! * [`plain`]: the baseline of "plaintext inference served over the network": the user sends
//!   the image in the clear to one server, which returns the logits. No privacy at all; it
//!   measures what the transport alone costs.

pub mod error;
pub mod plain;

pub use error::{Result, SuiteError};
