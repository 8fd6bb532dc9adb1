//! LeakyReLU under the Serpens suites, whose nonlinear protocols decide on the sign and then
//! select the slope, 1 or `α`: shipped models with every ReLU made leaky run under serpens-n and
//! serpens-2 (both layouts) on real test images of every class, each nonlinear layer within one
//! LSB of the fixed-point reference on its own input, logits within the measured tolerance and
//! labels equal; what the central server receives is masked exactly as for a ReLU.

mod common;

use common::{check_layers, check_logits, leaky_variant, runtime};
use std::sync::Arc;
use std::time::Duration;

use tessera_field::zt;
use tessera_he::HeParams;
use tessera_model::nonlinear::NonlinearKind;
use tessera_model::runner::LayerTrace;
use tessera_model::tolerance;
use tessera_net::Wiretap;
use tessera_suites::serpens_n::attack::LayerView;
use tessera_suites::{serpens_2, serpens_n};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The models, their evaluation sets, images per run and slopes: an MNIST-class model whose
/// leaky layers truncate from product scale, and the CIFAR model with depthwise blocks.
const MODELS: [(&str, &str, usize, f32); 3] = [
    ("minionn-mnist", "mnist-test-200-images.idx", 100, 0.1),
    ("lenet-mnist", "mnist-test-200-images.idx", 50, 0.01),
    ("mobilenet-cifar", "cifar10-test-200.bin", 10, 0.2),
];

#[test]
fn leaky_models_match_the_fixed_point_reference_layer_by_layer() {
    let rt = runtime(4);
    let he = Arc::new(HeParams::standard().unwrap());
    for (model, evalset, n, alpha) in MODELS {
        let (fixed, input) = leaky_variant(model, evalset, n, alpha);
        let leaky =
            fixed.nonlinear_layers().iter().filter(|l| matches!(l.kind, NonlinearKind::LeakyRelu { .. })).count();
        assert!(leaky > 0, "{model}: no leaky layer");
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        let allowed = tolerance::measure(&fixed, &input, n).unwrap();
        let check = |what: &str, traces: &[LayerTrace], parties: usize, logits: &[u64]| {
            let (layers, _) = check_layers(what, &fixed, traces, parties, n, false);
            assert_eq!(layers, fixed.nonlinear_layers().len());
            check_logits(what, &fixed, allowed, logits, &reference, n);
        };
        for holders in [2, 3] {
            let traces: Vec<LayerTrace> = (0..holders).map(|_| LayerTrace::default()).collect();
            let run = serpens_n::InMemoryRun {
                holders,
                timeout: TIMEOUT,
                central_view: None,
                layer_shares: Some(traces.clone()),
            };
            let outcome = rt.block_on(serpens_n::run_in_memory(&fixed, &input, n, &run)).unwrap();
            check(&format!("{model} leaky {alpha}, serpens-n, {holders} holders"), &traces, holders, &outcome.logits);
        }
        for layout in [serpens_2::Layout::Hidden, serpens_2::Layout::Seed] {
            let traces = [LayerTrace::default(), LayerTrace::default()];
            let run =
                serpens_2::InMemoryRun { timeout: TIMEOUT, layout, views: false, layer_shares: Some(traces.clone()) };
            let (outcome, _) = rt.block_on(serpens_2::run_in_memory(&fixed, &he, &input, n, &run)).unwrap();
            check(&format!("{model} leaky {alpha}, serpens-2, {layout:?} layout"), &traces, 2, &outcome.logits);
        }
    }
}

/// The leaky layers' selection is made where the ReLU's is: the central server's sums `w = x + R`
/// of a leaky layer never fall in the activations' range, and its sign sums `z = k·x + e` show
/// an activation as it is no more often than a ReLU layer's (only where `k = 1`).
#[test]
fn the_central_server_sees_a_leaky_layer_masked_as_a_relu() {
    let rt = runtime(4);
    let (fixed, input) = leaky_variant("minionn-mnist", "mnist-test-200-images.idx", 1, 0.1);
    let bound = 1i64 << fixed.params().bound_bits();
    let kappa = fixed.params().mask_bits() as usize;
    let tap = Wiretap::new();
    let run =
        serpens_n::InMemoryRun { holders: 2, timeout: TIMEOUT, central_view: Some(tap.clone()), layer_shares: None };
    rt.block_on(serpens_n::run_in_memory(&fixed, &input, 1, &run)).unwrap();
    let layers = fixed.nonlinear_layers();
    let views = LayerView::from_frames(&tap.frames(), &layers);
    assert_eq!(views.len(), layers.len());
    let mut runner = tessera_model::runner::Runner::new(fixed.clone(), input, 1, true);
    for view in views {
        let layer = runner.advance().unwrap();
        let x = runner.pending_input().to_vec();
        runner.complete(layer.eval_plain(&x, 1));
        assert_eq!(view.node, layer.node);
        let values: std::collections::HashSet<i64> = x.iter().map(|&v| zt::to_i64(v)).filter(|&v| v != 0).collect();
        let (_, w) = view.sums();
        assert!(w.iter().all(|&w| zt::to_i64(w) >= bound), "layer {}: unmasked w", view.node);
        let z = view.sign_sums();
        let exposed = z.iter().filter(|&&z| values.contains(&zt::to_i64(z))).count();
        assert!(exposed * kappa <= 2 * z.len(), "layer {}: {exposed} unmasked z", view.node);
    }
}
