//! Tessera's library API: the one surface the CLI (and any binding) uses.
//!
//! * [`load`]: import an ONNX model, run the merging pass, attach its fixed-point calibration.
//! * [`input`]: read images (PNG, JPEG, `.npy`) into normalized model inputs.
//! * [`dataset`]: read labelled evaluation sets (IDX, CIFAR-10 binary, MedMNIST `.npz`).
//! * [`eval`]: accuracy of the `f32` engine and the fixed-point reference, and their agreement.
//! * [`cluster`]: the TOML cluster configuration, certificates and party identities.
//! * [`serve`]: a party's long-running server loop, and the user's side of a query.
//! * [`local`]: a whole cluster as local processes on loopback, with fresh certificates.
//! * [`fuzzing`]: the parsers of untrusted bytes, as fuzzing entry points.
//! * [`emulate`]: LAN and WAN link profiles for local clusters (a delaying, pacing relay).
//! * [`cost`]: a query's cost from every party's report: per layer, per party and link, in total.

pub mod cluster;
pub mod cost;
pub mod dataset;
pub mod emulate;
pub mod error;
pub mod eval;
pub mod fuzzing;
pub mod input;
pub mod load;
pub mod local;
pub mod serve;

pub use error::{Error, Result};
pub use load::LoadedModel;
