//! Graphs in the shapes PyTorch's exporter emits (`scripts/import_fixtures.py` wrote them with
//! onnxruntime's logits): the flatten and padding idioms import through constant folding and give
//! onnxruntime's logits; the linear ops beyond convolution and FC layers (grouped and depthwise
//! convolution, reshapes and transposes that relabel, channel concatenation, average pooling that
//! excludes the padding) also run in fixed point and under the share-based suites, with the
//! reference's labels; what fixed point cannot run is refused by the node's name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use tessera_field::{FixedPointParams, zt};
use tessera_he::HeParams;
use tessera_model::calibrate::calibrate;
use tessera_model::fixed::FixedModel;
use tessera_model::passes::merge;
use tessera_model::plain::PlainEngine;
use tessera_model::{LayerPosterior, Model, Op, Posterior, tolerance};
use tessera_onnx::{Limits, import_file};
use tessera_suites::{bayes, clientserver, serpens_2, serpens_n, verify};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The fixture's input and onnxruntime's logits for it.
fn expected(name: &str) -> (Vec<f32>, Vec<f32>) {
    let text = std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let floats = |key: &str| v[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    (floats("input"), floats("logits"))
}

/// The fixtures whose ops run in every engine and share-based suite: linear ops, and LeakyReLU,
/// whose slope the Serpens suites select by the sign.
const SHARE_SUITE_OPS: [&str; 6] =
    ["grouped_conv", "depthwise_separable", "relabel_layout", "channel_concat", "avgpool_exclude_pad", "leaky_relu"];

/// The fixture imported.
fn imported(name: &str) -> Model {
    import_file(&fixture(&format!("{name}.onnx")), &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The fixture imported and merged.
fn merged(name: &str) -> Model {
    merge(&imported(name)).unwrap().0
}

/// A runtime for the parties of an in-process run.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn exported_graphs_match_onnxruntime_in_f32() {
    let exported = ["view_flatten", "sliced_flatten", "computed_pads", "in_model_affine", "input_normalization"];
    let refused_in_fixed_point = ["avgpool_exclude_pad_conv"];
    for name in exported.into_iter().chain(SHARE_SUITE_OPS).chain(refused_in_fixed_point) {
        let model = merged(name);
        let (input, reference) = expected(name);
        let logits = PlainEngine::new(&model).run(&input, 1).unwrap();
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{name}: f32 {:.2e} from onnxruntime, relative to the largest logit {scale:.3}", worst / scale);
        assert_eq!(logits.len(), reference.len(), "{name}");
        assert!(worst <= 1e-4 * scale, "{name}: {worst} against logits up to {scale}");
    }
}

/// The largest logit difference between fixed point and onnxruntime a fixture may show, in
/// LSBs of the activations' `f` fractional bits: rounding at every layer, carried through three
/// or four layers (measured: at most 4.4, channel_concat's at f = 8; a layer that is wrong moves
/// logits by tenths).
const FIXED_POINT_LSBS: f64 = 8.0;

/// Each op's fixture in fixed point (near onnxruntime), under serpens-n (2 and 3
/// holders) and serpens-2 (within the measured tolerance of the fixed-point reference, with its
/// label), verify (exactly the reference) and bayes (each sample exactly the reference with its
/// weights).
#[test]
fn each_op_runs_in_fixed_point_and_every_share_suite() {
    let rt = runtime();
    let he = Arc::new(HeParams::standard().unwrap());
    let timeout = Duration::from_secs(120);
    for name in SHARE_SUITE_OPS {
        let model = merged(name);
        let (input, onnxruntime) = expected(name);
        let calibration = calibrate(&model, &input, 1).unwrap();
        let fixed = FixedModel::new(&model, calibration.params().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let real = fixed.run(&input, 1).unwrap();
        let worst = real.iter().zip(&onnxruntime).map(|(a, b)| (a - *b as f64).abs()).fold(0f64, f64::max);
        let lsb = (-(calibration.f as f64)).exp2();
        println!(
            "{name}: fixed point {worst:.2e} ({:.1} LSB) from onnxruntime (f = {}, f_w = {})",
            worst / lsb,
            calibration.f,
            calibration.f_w
        );
        assert!(worst <= FIXED_POINT_LSBS * lsb, "{name}: fixed point {worst} from onnxruntime");

        let encoded = fixed.encode_input(&input, 1).unwrap();
        let reference = fixed.run_encoded(encoded.clone(), 1).unwrap();
        let allowed = tolerance::measure(&fixed, &encoded, 1).unwrap();
        let check = |suite: &str, logits: &[u64]| {
            let worst = logits.iter().zip(&reference).map(|(&a, &b)| (zt::to_i64(a) - zt::to_i64(b)).abs()).max();
            assert!(worst.is_some_and(|w| w <= allowed), "{name}, {suite}: {worst:?} LSB > {allowed}");
            assert_eq!(label(logits), label(&reference), "{name}, {suite}: label");
        };
        for holders in [2, 3] {
            let settings = serpens_n::InMemoryRun { holders, timeout, central_view: None, layer_shares: None };
            let outcome = rt.block_on(serpens_n::run_in_memory(&fixed, &encoded, 1, &settings)).unwrap();
            check(&format!("serpens-n, {holders} holders"), &outcome.logits);
        }
        let settings =
            serpens_2::InMemoryRun { timeout, layout: serpens_2::Layout::Hidden, views: false, layer_shares: None };
        let (outcome, _) = rt.block_on(serpens_2::run_in_memory(&fixed, &he, &encoded, 1, &settings)).unwrap();
        check("serpens-2", &outcome.logits);
        let cloud = Arc::new(verify::Cloud::new(fixed.clone(), verify::Cheat::Honest));
        let settings = verify::ClientSettings {
            disguise: verify::Disguise::Pad,
            challenge: verify::Challenge::Field,
            repetitions: 1,
            recompute_on_failure: false,
            narrow_pad: true,
        };
        let outcome = rt.block_on(verify::run_in_memory(&fixed, cloud, &encoded, 1, settings, 1, None)).unwrap();
        assert_eq!(outcome.logits, reference, "{name}, verify");
        assert!(outcome.recomputed.is_empty(), "{name}, verify");
        bayes_samples_equal_the_reference(name, &imported(name), fixed.params(), &encoded);
    }
}

/// Suite bayes on `model` (unmerged) with a posterior of small deviations on every linear
/// layer: each sample's logits equal the fixed-point reference with the same sampled weights.
fn bayes_samples_equal_the_reference(name: &str, model: &Model, params: FixedPointParams, encoded: &[u64]) {
    let rt = runtime();
    let he = Arc::new(HeParams::standard().unwrap());
    let layers = model
        .nodes()
        .iter()
        .enumerate()
        .filter_map(|(node, n)| match &n.op {
            Op::Linear(l) => Some(LayerPosterior { node, weight_sigma: vec![1e-3; l.weight.len()], bias_sigma: None }),
            _ => None,
        })
        .collect();
    let posterior = Posterior::new(model, layers).unwrap();
    let mean = FixedModel::new(&merge(model).unwrap().0, params).unwrap();
    let seed = [23u8; 32];
    let server =
        bayes::BayesServer::new(model.clone(), posterior.clone(), params, he.clone(), bayes::Sampling::Replay(seed), 1);
    let outcome = rt.block_on(bayes::run_in_memory(&mean, Arc::new(server), &he, encoded, 1, 2)).unwrap();
    let mut rng = ChaCha20Rng::from_seed(seed);
    for (s, logits) in outcome.samples.iter().enumerate() {
        let sampled = posterior.sample_fixed(model, params, &mut rng).unwrap();
        assert_eq!(logits, &sampled.run_encoded(encoded.to_vec(), 1).unwrap(), "{name}, bayes sample {s}");
    }
}

/// The class with the largest logit.
fn label(logits: &[u64]) -> usize {
    (0..logits.len()).max_by_key(|&i| zt::to_i64(logits[i])).unwrap()
}

/// Constants scaling and shifting a linear layer's output fold into it, so the model also runs in
/// fixed point, with logits close to f32's; normalizing the input inside the model is refused by
/// the fixed-point model with the node's name and where it belongs.
#[test]
fn per_channel_constants_fold_into_the_layer_before_them() {
    let model = import_file(&fixture("in_model_affine.onnx"), &Limits::default()).unwrap();
    let (merged, report) = merge(&model).unwrap();
    assert_eq!(report.batchnorms_folded, 3, "Mul and Sub into the convolution, Div into the FC layer");
    let (input, reference) = expected("in_model_affine");
    let calibration = calibrate(&merged, &input, 1).unwrap();
    let fixed = FixedModel::new(&merged, calibration.params().unwrap()).unwrap();
    let logits = fixed.run(&input, 1).unwrap();
    let worst = logits.iter().zip(&reference).map(|(a, b)| (a - *b as f64).abs()).fold(0f64, f64::max);
    println!(
        "in_model_affine: fixed point {worst:.2e} from onnxruntime (f = {}, f_w = {})",
        calibration.f, calibration.f_w
    );
    // Measured 3e-3 at f = 8 (an input LSB is 4e-3); a fold gone wrong moves logits by tenths.
    assert!(worst <= 1e-2, "fixed point {worst} from onnxruntime");

    let model = import_file(&fixture("input_normalization.onnx"), &Limits::default()).unwrap();
    let (merged, _) = merge(&model).unwrap();
    let params = FixedPointParams::new(8, 8, 19).unwrap();
    let err = FixedModel::new(&merged, params).unwrap_err().to_string();
    assert!(err.contains("/normalize/Sub") && err.contains("mean and std metadata"), "{err}");
}

/// An average pool excluding the padding folds its per-position divisors into the FC layer
/// after it; with a convolution in between there is nowhere to fold them, and a LeakyReLU slope
/// above 1 would grow activations past their calibrated bound: the fixed-point model refuses
/// both by the node's name. The garbled-circuit suites refuse a LeakyReLU by what they lack.
#[test]
fn what_fixed_point_cannot_run_is_refused_by_name() {
    let model = import_file(&fixture("avgpool_exclude_pad.onnx"), &Limits::default()).unwrap();
    let (folded, report) = merge(&model).unwrap();
    assert_eq!(report.avgpools_folded, 1);
    assert!(folded.nodes().iter().all(|n| n.op.kind() != "AvgPool"));
    let params = FixedPointParams::new(8, 8, 19).unwrap();
    let steep = {
        let model = merged("leaky_relu");
        let nodes = model.nodes().iter().map(|n| {
            let op = match n.op {
                Op::LeakyRelu { .. } => Op::LeakyRelu { alpha: 1.5 },
                ref op => op.clone(),
            };
            (n.name.clone(), op, n.inputs.clone())
        });
        Model::new(model.input_shape(), nodes.collect(), model.output(), model.meta.clone()).unwrap()
    };
    for (name, model, node) in [
        ("avgpool_exclude_pad_conv", merged("avgpool_exclude_pad_conv"), "/features/pool/AveragePool"),
        ("leaky_relu, slope 1.5", steep, "/features/act/LeakyRelu"),
    ] {
        let err = FixedModel::new(&model, params).unwrap_err();
        assert!(matches!(&err, tessera_model::ModelError::NotFixedPoint { node: n, .. } if n == node), "{name}: {err}");
    }
    let leaky = FixedModel::new(&merged("leaky_relu"), params).unwrap();
    let he = HeParams::standard().unwrap();
    let err = clientserver::frame_limits(&leaky, &he, 1).unwrap_err().to_string();
    assert!(err.contains("no LeakyReLU"), "{err}");
}
