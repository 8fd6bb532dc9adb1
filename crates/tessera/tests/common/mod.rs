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
    ("vgg-mnist", "mnist-test-200-images.idx", 100),
    ("mobilenet-cifar", "cifar10-test-200.bin", 20),
];

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `n` real test images of `model`'s dataset drawn across its classes, encoded for the
/// fixed-point model.
#[allow(dead_code)]
pub fn encoded(model: &str, evalset: &str, n: usize) -> (Arc<FixedModel>, Vec<u64>) {
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    let data = Dataset::open(&repo().join("data").join(evalset)).unwrap();
    let x = normalize(&data.stratified(n).pixels, data.shape, m.meta());
    let fixed = m.fixed().unwrap();
    let input = fixed.encode_input(&x, n).unwrap();
    (fixed, input)
}

/// `model` with every ReLU (but those fused into a max pool) made a LeakyReLU of slope `alpha`,
/// at the shipped model's fixed-point parameters, and `n` of its real test images encoded: a
/// model the share suites must run as exactly as the shipped one.
#[allow(dead_code)]
pub fn leaky_variant(model: &str, evalset: &str, n: usize, alpha: f32) -> (Arc<FixedModel>, Vec<u64>) {
    use tessera_model::ir::{Model, Op};
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    let merged = &m.merged;
    let nodes = merged.nodes().iter().map(|node| {
        let op = if matches!(node.op, Op::Relu) { Op::LeakyRelu { alpha } } else { node.op.clone() };
        (node.name.clone(), op, node.inputs.clone())
    });
    let leaky = Model::new(merged.input_shape(), nodes.collect(), merged.output(), merged.meta.clone()).unwrap();
    let fixed = FixedModel::new(&leaky, m.fixed().unwrap().params()).unwrap();
    let data = Dataset::open(&repo().join("data").join(evalset)).unwrap();
    let x = normalize(&data.stratified(n).pixels, data.shape, m.meta());
    let input = fixed.encode_input(&x, n).unwrap();
    (fixed, input)
}

/// The logit tolerance of `model`'s secure runs, in LSB at its output scale, as its calibration
/// measured it.
#[allow(dead_code)]
pub fn tolerance(model: &str) -> i64 {
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    m.calibration().unwrap().tolerance_lsb(&m.fixed().unwrap())
}

/// Checks secure logits against the fixed-point reference: every logit within `tolerance` LSB
/// (measured at calibration), and labels equal except where the reference's own top-two margin
/// is at most twice the tolerance (counted and reported). Each truncation of a secure run rounds within
/// one unit of the reference's rounding, so only such near-ties may flip. Returns the largest
/// error in LSB and how many labels differ.
#[allow(dead_code)]
pub fn check_logits(
    what: &str,
    fixed: &FixedModel,
    tolerance: i64,
    secure: &[u64],
    reference: &[u64],
    n: usize,
) -> (i64, usize) {
    use tessera::eval::argmax;
    use tessera_field::zt;
    assert_eq!(secure.len(), reference.len(), "{what}: logit count");
    let classes = fixed.output_len();
    let mut worst = 0i64;
    for (i, (&s, &r)) in secure.iter().zip(reference).enumerate() {
        let d = (zt::to_i64(s) - zt::to_i64(r)).abs();
        assert!(d <= tolerance, "{what}, logit {i}: off by {d} LSB > tolerance {tolerance}");
        worst = worst.max(d);
    }
    let labels = |v: &[u64]| -> Vec<usize> {
        v.chunks(classes).map(|c| argmax(&c.iter().map(|&x| zt::to_i64(x)).collect::<Vec<_>>())).collect()
    };
    let mut differ = 0;
    for (i, (a, b)) in labels(secure).iter().zip(&labels(reference)).enumerate() {
        let mut row: Vec<i64> = reference[i * classes..(i + 1) * classes].iter().map(|&x| zt::to_i64(x)).collect();
        row.sort_unstable();
        let margin = row[classes - 1] - row[classes - 2];
        if a != b {
            differ += 1;
            println!("{what}, image {i}: label {a} vs {b}, reference margin {margin} LSB");
            // Two logits, each within the tolerance, can swap at a margin up to twice it.
            assert!(margin <= 2 * tolerance, "{what}, image {i}: labels differ at margin {margin} > 2 × {tolerance}");
        }
    }
    println!(
        "{what}: {n} images, max |Δ| {worst} LSB = {:.4} (tolerance {tolerance} LSB), {differ} labels differ at near-ties",
        worst as f64 / (fixed.output_bits() as f64).exp2()
    );
    (worst, differ)
}

/// Checks every nonlinear layer of a secure run on its own: the parties' `traces` (one per
/// party, each a share of every layer's input and output) are added up, and each layer's output
/// must equal the reference layer applied to that same reconstructed input: exactly when
/// `exact`, else within ±1 LSB where the layer rescales and exactly where it does not. Returns
/// how many layers were checked and the elements off by one.
#[allow(dead_code)]
pub fn check_layers(
    what: &str,
    fixed: &FixedModel,
    traces: &[tessera_model::runner::LayerTrace],
    parties: usize,
    batch: usize,
    exact: bool,
) -> (usize, usize) {
    use tessera_field::zt;
    assert_eq!(traces.len(), parties, "{what}: one trace per party");
    let per_party: Vec<_> = traces.iter().map(|t| t.layers()).collect();
    let expected: Vec<_> = fixed.nonlinear_layers();
    let layers = expected.len();
    for (p, traced) in per_party.iter().enumerate() {
        let seen: Vec<_> = traced.iter().map(|t| t.layer).collect();
        assert_eq!(seen, expected, "{what}: party {p} traced every nonlinear layer, in order");
        for t in traced {
            assert_eq!(t.input.len(), batch * t.layer.input.len(), "{what}: input length");
            assert_eq!(t.output.len(), batch * t.layer.output.len(), "{what}: output length");
        }
    }
    let sum = |k: usize, pick: &dyn Fn(&tessera_model::runner::TracedLayer) -> &Vec<u64>| -> Vec<u64> {
        let mut acc = vec![0u64; pick(&per_party[0][k]).len()];
        for party in &per_party {
            for (a, &v) in acc.iter_mut().zip(pick(&party[k])) {
                *a = zt::add(*a, v);
            }
        }
        acc
    };
    let mut off_by_one = 0;
    for (k, traced) in per_party[0].iter().enumerate() {
        let layer = traced.layer;
        let (input, output) = (sum(k, &|t| &t.input), sum(k, &|t| &t.output));
        let reference = layer.eval_plain(&input, batch);
        assert_eq!(output.len(), reference.len(), "{what}, layer {}: output length", layer.node);
        let allowed = i64::from(layer.rescales() && !exact);
        for (i, (&s, &r)) in output.iter().zip(&reference).enumerate() {
            let d = (zt::to_i64(s) - zt::to_i64(r)).abs();
            assert!(d <= allowed, "{what}, layer {}, element {i}: off by {d} LSB (allowed {allowed})", layer.node);
            off_by_one += usize::from(d == 1);
        }
    }
    println!(
        "{what}: {layers} nonlinear layers each within ±1 LSB of the reference on its own input ({off_by_one} elements off by one)"
    );
    (layers, off_by_one)
}

/// A multi-threaded runtime for the parties of an in-process run.
#[allow(dead_code)]
pub fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
}

/// χ² of `values` (elements of `Z_t`) over 16 equal buckets of `Z_t`: about 15 for uniform values
/// (15 degrees of freedom); 60 is exceeded by uniform values with probability below 10^−6.
#[allow(dead_code)]
pub fn chi2_field(values: &[u64]) -> f64 {
    let mut counts = [0f64; 16];
    for &v in values {
        counts[((v as u128 * 16) / tessera_field::zt::T as u128) as usize] += 1.0;
    }
    let expected = values.len() as f64 / 16.0;
    counts.iter().map(|c| (c - expected).powi(2) / expected).sum()
}

/// χ² of `bytes` over the 256 byte values (255 degrees of freedom; 370 is exceeded by uniform
/// bytes with probability below 10^−5).
#[allow(dead_code)]
pub fn chi2_bytes(bytes: &[u8]) -> f64 {
    let mut counts = [0f64; 256];
    for &b in bytes {
        counts[b as usize] += 1.0;
    }
    let expected = bytes.len() as f64 / 256.0;
    counts.iter().map(|c| (c - expected).powi(2) / expected).sum()
}

/// A payload's little-endian 64-bit words.
#[allow(dead_code)]
pub fn elements(payload: &[u8]) -> Vec<u64> {
    payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Asserts that `values` look uniform in `Z_t`: the χ² test, and no value small enough to be an
/// unmasked activation (|v| < 2^40 has probability 2^−20 per uniform value).
#[allow(dead_code)]
pub fn assert_uniform(what: &str, values: &[u64]) {
    assert!(values.len() >= 64, "{what}: too few values to test ({})", values.len());
    let chi2 = chi2_field(values);
    assert!(chi2 < 60.0, "{what}: χ² = {chi2:.1} over {} values", values.len());
    let small = values.iter().filter(|&&v| tessera_field::zt::to_i64(v).unsigned_abs() < 1 << 40).count();
    assert!(small <= values.len() / (1 << 16) + 1, "{what}: {small} of {} values are small", values.len());
}
