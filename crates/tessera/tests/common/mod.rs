//! Helpers shared by the suites' end-to-end tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera_model::fixed::FixedModel;

/// Every shipped model with its in-repo evaluation set and how many of its real test images
/// the suite tests run (all MNIST-class models on 100, the CIFAR models on 20).
pub const SHIPPED: &[(&str, &str, usize)] = &[
    ("minionn-mnist", "mnist-test-200-images.idx", 100),
    ("lenet-mnist", "mnist-test-200-images.idx", 100),
    ("minionn-fashion", "fashion-mnist-test-200-images.idx", 100),
    ("pneumonia-cnn", "pneumoniamnist-test-200-images.idx", 100),
    ("minionn-cifar", "cifar10-test-200.bin", 20),
    ("resnet20-cifar", "cifar10-test-200.bin", 20),
];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `n` real test images of `model`'s dataset, encoded for the fixed-point model.
pub fn encoded(model: &str, evalset: &str, n: usize) -> (Arc<FixedModel>, Vec<u64>) {
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    let data = Dataset::open(&repo().join("data").join(evalset)).unwrap();
    let x = normalize(data.pixels(0..n), data.shape, m.meta());
    let fixed = m.fixed().unwrap();
    let input = fixed.encode_input(&x, n).unwrap();
    (fixed, input)
}

/// A multi-threaded runtime for the parties of an in-process run.
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
}
