//! ONNX → Tessera IR.
//!
//! [`proto`] declares the part of ONNX's protobuf schema Tessera reads (message and field numbers
//! are facts of the format); [`import`] maps each supported op to a builder and refuses anything
//! else with an [`ImportError`] naming the node and the op. Subgraphs that compute constants
//! (the shape arithmetic exporters emit) are folded at import (`fold`). Sizes are checked before
//! anything is allocated from them.

pub mod error;
mod fold;
pub mod import;
pub mod proto;

pub use error::{ImportError, Result};
pub use import::{Limits, import_bytes, import_bytes_with_posterior, import_file, import_file_with_posterior};
