//! Tessera's library API: the one surface the CLI (and any binding) uses.
//!
//! * [`load`]: import an ONNX model, run the merging pass, attach its fixed-point calibration.
//! * [`input`]: read images (PNG, JPEG, `.npy`) into normalized model inputs.
//! * [`dataset`]: read labelled evaluation sets (IDX, CIFAR-10 binary, MedMNIST `.npz`).
//! * [`eval`]: accuracy of the `f32` engine and the fixed-point reference, and their agreement.
//! * [`cluster`]: the TOML cluster configuration, certificates and party identities.
//! * [`suite`]: the suites, their roles, and what each runs at every party.
//! * [`mod@serve`]: a server party's accept loop; [`mod@query`]: the user's side of a query.
//! * [`split`]: a model cut for suite seco, one file per party (`tessera split-model`).
//! * [`local`]: a whole cluster as local processes on loopback, with fresh certificates.
//! * [`in_process`]: a whole cluster in this process, on in-memory channels.
//! * [`fuzzing`]: the parsers of untrusted bytes, as fuzzing entry points.
//! * [`emulate`]: LAN and WAN link profiles for local clusters (a delaying, pacing relay).
//! * [`cost`]: a query's cost from every party's report: per layer, per party and link, in total.
//!
//! # Quick start
//!
//! Load a model, calibrate its fixed-point arithmetic on real images, and classify one image
//! with suite serpens-n, every party in this process on in-memory channels (the code each
//! party runs is the same as across processes over TLS, see [`serve()`] and [`query()`]):
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use tessera::dataset::Dataset;
//! use tessera::input::normalize;
//! use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};
//!
//! let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
//! let mut model = LoadedModel::load(&repo.join("models/lenet-mnist.onnx"))?;
//! let data = Dataset::open(&repo.join("data/mnist-test-200-images.idx"))?;
//!
//! // f, f_w, the activation bound and the logit tolerance of secure runs from 32 real images
//! // (kept in memory, not written).
//! let samples = normalize(data.pixels(0..32), data.shape, model.meta());
//! let tolerance = model.calibrate(&samples, 32)?.logit_tolerance;
//!
//! // Two share-holders and a central server; the user splits the image into shares.
//! let image = normalize(data.pixels(32..33), data.shape, model.meta());
//! let reference = model.fixed()?.run(&image, 1)?;
//! let cluster = InProcessCluster::start(Suite::SerpensN, model, 2, ServeOptions::default())?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! let result = runtime.block_on(cluster.query(&image, 1, &QueryOptions::default()))?;
//!
//! // The fixed-point reference's logits, up to the rounding of the secure truncations.
//! let label = tessera::eval::argmax(&result.logits);
//! let error = result.logits.iter().zip(&reference).map(|(&a, &b)| (f64::from(a) - b).abs()).fold(0.0, f64::max);
//! assert!(error <= tolerance, "{error} > {tolerance}");
//! println!("label {label} (true label {}), max |logit - reference| {error:.5}", data.labels[32]);
//! # Ok(())
//! # }
//! ```

pub mod cluster;
pub mod cost;
pub mod dataset;
mod dial;
pub mod emulate;
pub mod error;
pub mod eval;
pub mod fuzzing;
mod gate;
pub mod in_process;
pub mod input;
pub mod load;
pub mod local;
pub mod query;
pub mod serve;
pub mod split;
pub mod suite;

// The layers below, for what the facade does not wrap: kernels and the plaintext engines
// (`model`, `field`), protocol internals and attack tooling (`suites`, `net`), ONNX protobufs.
pub use tessera_field as field;
pub use tessera_gc as gc;
pub use tessera_he as he;
pub use tessera_model as model;
pub use tessera_net as net;
pub use tessera_onnx as onnx;
pub use tessera_suites as suites;

pub use error::{Error, Result};
pub use in_process::InProcessCluster;
pub use load::LoadedModel;
pub use query::{Outcome, QueryOptions, QueryResult, query, query_split, query_with};
pub use serve::{ServeOptions, serve};
pub use suite::{Role, Suite};
