//! Helpers shared by the suites' end-to-end tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera_model::fixed::FixedModel;

/// Every shipped model with its in-repo evaluation set and how many of its real test images
/// the suite tests run (all MNIST-class models on 100, the CIFAR models on 20).
#[allow(dead_code)]
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
#[allow(dead_code)]
pub fn encoded(model: &str, evalset: &str, n: usize) -> (Arc<FixedModel>, Vec<u64>) {
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    let data = Dataset::open(&repo().join("data").join(evalset)).unwrap();
    let x = normalize(data.pixels(0..n), data.shape, m.meta());
    let fixed = m.fixed().unwrap();
    let input = fixed.encode_input(&x, n).unwrap();
    (fixed, input)
}

/// Checks secure logits against the fixed-point reference: every logit within the model's
/// propagated bound, and labels equal wherever the reference's margin is a whole logit, on all
/// but 2% of the images (or two near-ties). Each truncation rounds stochastically within one
/// unit of the reference's rounding, so only near-ties may flip. Returns the largest error in
/// LSB and how many labels differ.
#[allow(dead_code)]
pub fn check_logits(what: &str, fixed: &FixedModel, secure: &[u64], reference: &[u64], n: usize) -> (i64, usize) {
    use tessera::eval::argmax;
    use tessera_field::zt;
    assert_eq!(secure.len(), reference.len(), "{what}: logit count");
    let bound = fixed.error_bound();
    let classes = fixed.output_len();
    let mut worst = 0i64;
    for (i, (&s, &r)) in secure.iter().zip(reference).enumerate() {
        let d = (zt::to_i64(s) - zt::to_i64(r)).abs();
        assert!(d as f64 <= bound, "{what}, logit {i}: off by {d} > bound {bound}");
        worst = worst.max(d);
    }
    let labels = |v: &[u64]| -> Vec<usize> {
        v.chunks(classes).map(|c| argmax(&c.iter().map(|&x| zt::to_i64(x)).collect::<Vec<_>>())).collect()
    };
    let one = 1i64 << fixed.output_bits();
    let mut differ = 0;
    for (i, (a, b)) in labels(secure).iter().zip(&labels(reference)).enumerate() {
        let mut row: Vec<i64> = reference[i * classes..(i + 1) * classes].iter().map(|&x| zt::to_i64(x)).collect();
        row.sort_unstable();
        let margin = row[classes - 1] - row[classes - 2];
        if a != b {
            differ += 1;
            println!("{what}, image {i}: label {a} vs {b}, reference margin {margin} LSB");
            assert!(margin < one, "{what}, image {i}: labels differ at margin {margin}");
        }
    }
    assert!(differ <= (n / 50).max(2), "{what}: {differ} of {n} labels differ");
    println!(
        "{what}: {n} images, max |Δ| {worst} LSB = {:.4} (bound {bound} LSB), {differ} labels differ",
        worst as f64 / (fixed.output_bits() as f64).exp2()
    );
    (worst, differ)
}

/// A multi-threaded runtime for the parties of an in-process run.
#[allow(dead_code)]
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
}
