//! Graphs in the shapes PyTorch's exporter emits (`scripts/import_fixtures.py` wrote them with
//! onnxruntime's logits): the flatten and padding idioms import through constant folding and give
//! onnxruntime's logits; a grouped convolution behind folded shape arithmetic is refused by the
//! convolution's name and attribute.

use std::path::PathBuf;

use tessera_model::calibrate::calibrate;
use tessera_model::fixed::FixedModel;
use tessera_model::passes::merge;
use tessera_model::plain::PlainEngine;
use tessera_onnx::{ImportError, Limits, import_file};

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

#[test]
fn exported_shape_arithmetic_folds_and_matches_onnxruntime() {
    for name in ["view_flatten", "sliced_flatten", "computed_pads", "in_model_affine", "input_normalization"] {
        let model = import_file(&fixture(&format!("{name}.onnx")), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (merged, _) = merge(&model).unwrap();
        let (input, reference) = expected(name);
        let logits = PlainEngine::new(&merged).run(&input, 1).unwrap();
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = logits.iter().zip(&reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        println!("{name}: largest difference from onnxruntime {worst:.2e} (logits up to {scale:.3})");
        assert_eq!(logits.len(), reference.len(), "{name}");
        assert!(worst <= 1e-4 * scale, "{name}: {worst} against logits up to {scale}");
    }
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
    let params = tessera_field::FixedPointParams::new(8, 8, 19).unwrap();
    let err = FixedModel::new(&merged, params).unwrap_err().to_string();
    assert!(err.contains("/normalize/Sub") && err.contains("mean and std metadata"), "{err}");
}

#[test]
fn a_grouped_convolution_is_refused_by_its_own_name() {
    let err = import_file(&fixture("grouped_conv.onnx"), &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, ImportError::Attribute { node, attribute, .. } if node == "/features/conv/Conv" && attribute == "group"),
        "{err}"
    );
}
