//! Suite serpens2 with both servers and the user in this process (in-memory channels): secure
//! logits against the fixed-point reference on real test images of every shipped model;
//! refusals.

mod common;

use common::{SHIPPED, check_logits, encoded, runtime};
use std::sync::Arc;
use std::time::Duration;

use tessera_field::zt;
use tessera_he::HeParams;
use tessera_suites::SuiteError;
use tessera_suites::serpens_2::run_in_memory;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every shipped model: 50 real test images per MNIST-class model, 10 per CIFAR model.
#[test]
fn secure_logits_match_the_fixed_point_reference() {
    let rt = runtime(4);
    let he = Arc::new(HeParams::standard().unwrap());
    for &(model, evalset, n) in SHIPPED {
        let n = n / 2;
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        let outcome = rt.block_on(run_in_memory(&fixed, &he, &input, n, TIMEOUT)).unwrap();
        check_logits(&format!("{model}, serpens-2"), &fixed, &outcome.logits, &reference, n);
        // Every party reported: the user and both servers.
        assert_eq!(outcome.reports.len(), 3);
    }
}

#[test]
fn overflowing_inputs_are_refused() {
    let rt = runtime(4);
    let he = Arc::new(HeParams::standard().unwrap());
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    // Activations that wrap around the field: the key owner sees `k·x` beyond what the bound
    // allows and refuses.
    let loud: Vec<u64> = input.iter().map(|&v| zt::mul(v, 1 << 45)).collect();
    let err = rt.block_on(run_in_memory(&fixed, &he, &loud, 1, TIMEOUT)).unwrap_err();
    assert!(matches!(err, SuiteError::ActivationOverflow { .. }), "{err}");
}
