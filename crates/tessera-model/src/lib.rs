//! Tessera's model layer: a typed IR of the CNN layers the suites support, the merging pass of
//! PROTOCOLS.md section 2, per-layer costs, a fast `f32` engine (the plaintext baseline) and the
//! fixed-point reference in `Z_t` that every secure run is checked against.

pub mod bayes;
pub mod calibrate;
pub mod cost;
pub mod error;
pub mod fixed;
pub mod ir;
pub mod meta;
pub mod nonlinear;
pub mod part;
pub mod passes;
pub mod plain;
pub mod runner;
pub mod shares;
pub mod split;
pub mod tolerance;

pub use bayes::{LayerPosterior, Posterior};
pub use error::{ModelError, Result};
pub use ir::{Linear, Model, Node, Op, ValueId};
pub use meta::ModelMeta;
