//! Suite verify with client and cloud in this process: exact results on every shipped model,
//! every cheating cloud caught, and recomputation on request.

mod common;

use common::{SHIPPED, encoded, runtime};
use std::sync::Arc;

use tessera_suites::SuiteError;
use tessera_suites::verify::{Challenge, Cheat, ClientSettings, Cloud, Disguise, run_in_memory};

const STRICT: ClientSettings = ClientSettings {
    disguise: Disguise::Pad,
    challenge: Challenge::Field,
    repetitions: 1,
    recompute_on_failure: false,
};
const MONOMIAL: ClientSettings = ClientSettings { disguise: Disguise::Monomial, ..STRICT };

#[test]
fn results_equal_the_fixed_point_reference_exactly() {
    let rt = runtime(2);
    for &(model, evalset, n) in SHIPPED {
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        for settings in [STRICT, MONOMIAL] {
            let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
            let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, n, settings, 1)).unwrap();
            assert_eq!(outcome.logits, reference, "{model}, {:?}", settings.disguise);
            assert!(outcome.recomputed.is_empty());
            assert_eq!(outcome.reports.len(), 2);
        }
    }
}

#[test]
fn every_cheating_cloud_is_caught() {
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-cifar", "cifar10-test-200.bin", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    for cheat in [Cheat::FlipOne, Cheat::NoiseChannel, Cheat::Stale, Cheat::SwapChannels, Cheat::OtherInput] {
        for (trial, settings) in [STRICT, STRICT, MONOMIAL, MONOMIAL].into_iter().enumerate() {
            let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
            let err = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 2)).unwrap_err();
            assert!(matches!(err, SuiteError::VerificationFailed { layer: 0, .. }), "{cheat:?} trial {trial}: {err}");
        }
        // Asked to, the client recomputes what failed and still gets the exact result.
        let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
        let settings = ClientSettings { recompute_on_failure: true, ..STRICT };
        let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 2)).unwrap();
        assert_eq!(outcome.logits, reference, "{cheat:?}");
        let linear = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).count();
        assert_eq!(outcome.recomputed.len(), linear, "{cheat:?}: every layer caught");
    }
}
