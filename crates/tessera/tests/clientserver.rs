//! Suite clientserver with the user and the model owner in this process (in-memory channels):
//! secure logits **equal** to the fixed-point reference on real test images of every shipped
//! model, layer by layer; the user's storage; and each party's exact view of a query, message
//! by message, against what it must not learn.

mod common;

use common::{SHIPPED, check_layers, encoded, runtime};
use std::sync::Arc;

use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::StageKind;
use tessera_suites::clientserver::{InMemoryOutcome, InMemoryRun, run_in_memory};

fn run(fixed: &Arc<FixedModel>, input: &[u64], batch: usize, settings: &InMemoryRun) -> InMemoryOutcome {
    let he = Arc::new(HeParams::standard().unwrap());
    runtime(4).block_on(run_in_memory(fixed, &he, input, batch, settings)).unwrap()
}

/// Every shipped model on real test images of every class (100 per MNIST-class model, 20 per
/// CIFAR model, in batches of 4): every nonlinear layer and every logit exactly the reference's.
#[test]
fn secure_logits_equal_the_fixed_point_reference() {
    for &(model, evalset, n) in SHIPPED {
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        let batch = 4;
        let per_batch = batch * fixed.input_shape().len();
        for (k, images) in input.chunks(per_batch).enumerate() {
            let traces = [LayerTrace::default(), LayerTrace::default()];
            let settings = InMemoryRun { layer_shares: Some(traces.clone()), ..InMemoryRun::default() };
            let run = run(&fixed, images, batch, &settings);
            let what = format!("{model}, clientserver, batch {k}");
            check_layers(&what, &fixed, &traces, 2, batch, true);
            let expected = &reference[k * batch * fixed.output_len()..][..batch * fixed.output_len()];
            assert_eq!(run.outcome.logits, expected, "{what}: logits");
            let [user, server] = &run.outcome.reports[..] else { panic!("{what}: two reports") };
            for report in [user, server] {
                assert!(report.stages.iter().any(|s| s.kind == StageKind::Preprocess), "{what}: preprocessing");
                assert!(report.stages.iter().any(|s| s.kind == StageKind::Output), "{what}: online");
            }
            if k == 0 {
                println!("{model}: user stores {} bytes per preprocessed batch of {batch}", run.user_storage);
            }
        }
        println!("{model}: {n} images, logits identical to the fixed-point reference");
    }
}
