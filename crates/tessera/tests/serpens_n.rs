//! Suite serpensN with every party in this process (in-memory channels): secure logits against
//! the fixed-point reference on real test images of every shipped model, for 2, 3 and 5
//! holders; what the central server sees; fresh masks per query; refusals.

mod common;

use common::{SHIPPED, check_layers, check_logits, encoded, runtime, tolerance};
use std::sync::Arc;
use std::time::Duration;

use tessera_field::zt;
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::LayerTrace;
use tessera_net::Wiretap;
use tessera_suites::SuiteError;
use tessera_suites::serpens_n::attack::LayerView;
use tessera_suites::serpens_n::{InMemoryRun, run_in_memory};

fn settings(holders: usize, central_view: Option<Wiretap>) -> InMemoryRun {
    InMemoryRun { holders, timeout: Duration::from_secs(60), central_view, layer_shares: None }
}

/// What `S0` can add up from one layer's messages: every element's `z = k·x + e` (its sign
/// comparison) and `w = x + R`, in the order `π`.
struct Sums {
    node: u32,
    z: Vec<u64>,
    w: Vec<u64>,
}

/// The sums of the holders' messages per nonlinear layer, from `S0`'s recorded view.
fn sums(tap: &Wiretap, layers: &[NonlinearLayer]) -> Vec<Sums> {
    LayerView::from_frames(&tap.frames(), layers)
        .into_iter()
        .map(|v| Sums { node: v.node, z: v.sign_sums(), w: v.sums().1 })
        .collect()
}

#[test]
fn secure_logits_match_the_fixed_point_reference() {
    let rt = runtime(4);
    for &(model, evalset, n) in SHIPPED {
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        for holders in [2, 3, 5] {
            let traces: Vec<LayerTrace> = (0..holders).map(|_| LayerTrace::default()).collect();
            let run = InMemoryRun { layer_shares: Some(traces.clone()), ..settings(holders, None) };
            let outcome = rt.block_on(run_in_memory(&fixed, &input, n, &run)).unwrap();
            check_layers(&format!("{model}, {holders} holders"), &fixed, &traces, holders, n, false);
            check_logits(
                &format!("{model}, {holders} holders"),
                &fixed,
                tolerance(model),
                &outcome.logits,
                &reference,
                n,
            );
            // Every party reported: user, each holder, S0.
            assert_eq!(outcome.reports.len(), holders + 2);
        }
    }
}

/// The reference's input to every nonlinear layer, in order.
fn nonlinear_inputs(fixed: &Arc<FixedModel>, input: &[u64], batch: usize) -> Vec<Vec<u64>> {
    let mut runner = tessera_model::runner::Runner::new(fixed.clone(), input.to_vec(), batch, true);
    let mut seen = Vec::new();
    while let Some(layer) = runner.advance() {
        let x = runner.pending_input().to_vec();
        let out = layer.eval_plain(&x, batch);
        seen.push(x);
        runner.complete(out);
    }
    seen
}

#[test]
fn the_central_server_sees_only_masked_values_with_fresh_masks() {
    let rt = runtime(4);
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let bound = 1i64 << fixed.params().bound_bits();
    let kappa = fixed.params().mask_bits() as usize;
    let clear = nonlinear_inputs(&fixed, &input, 1);
    let run = |holders| {
        let tap = Wiretap::new();
        rt.block_on(run_in_memory(&fixed, &input, 1, &settings(holders, Some(tap.clone())))).unwrap();
        sums(&tap, &fixed.nonlinear_layers())
    };
    let (first, second) = (run(2), run(3));
    assert_eq!(first.len(), clear.len());
    for ((a, b), x) in first.iter().zip(&second).zip(&clear) {
        let values: std::collections::HashSet<i64> = x.iter().map(|&v| zt::to_i64(v)).filter(|&v| v != 0).collect();
        for view in [a, b] {
            // x + R with R uniform below 2^(ℓx+σ): no revealed w looks like an activation.
            assert!(view.w.iter().all(|&w| zt::to_i64(w) >= bound), "layer {}: unmasked w", view.node);
            // k·x + e with log2 k uniform in [0, κ]: an activation appears as it is only where
            // k = 1 (probability 1/κ; S0 cannot tell where).
            let exposed = view.z.iter().filter(|&&z| values.contains(&zt::to_i64(z))).count();
            assert!(exposed * kappa <= 2 * view.z.len(), "layer {}: {exposed} unmasked z", view.node);
        }
        // The same image twice: fresh permutations and masks, so the views differ everywhere.
        let same_z = a.z.iter().zip(&b.z).filter(|(p, q)| p == q && zt::to_i64(**p) != 0).count();
        let same_w = a.w.iter().zip(&b.w).filter(|(p, q)| p == q).count();
        assert!(same_z * 100 <= a.z.len() && same_w == 0, "layer {}: masks repeat across queries", a.node);
    }
    // Layers of one query use different masks: no two layers' w share a value.
    let all: Vec<u64> = first.iter().flat_map(|v| v.w.iter().copied()).collect();
    let distinct: std::collections::HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a truncation mask repeats across layers");
}

#[test]
fn overflowing_inputs_and_bad_holder_counts_are_refused() {
    let rt = runtime(4);
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    // Activations that wrap around the field: S0 sees `w` outside the masks' range and refuses.
    // (A value only slightly above 2^ℓx is not detected; docs/suites/serpens-n.md says so.)
    let loud: Vec<u64> = input.iter().map(|&v| zt::mul(v, 1 << 45)).collect();
    assert!(fixed.run_encoded(loud.clone(), 1).is_err());
    let err = rt.block_on(run_in_memory(&fixed, &loud, 1, &settings(2, None))).unwrap_err();
    assert!(matches!(err, SuiteError::ActivationOverflow { .. }), "{err}");
    for holders in [1, 9] {
        let err = rt.block_on(run_in_memory(&fixed, &input, 1, &settings(holders, None))).unwrap_err();
        assert!(matches!(err, SuiteError::HolderCount { .. }), "{err}");
    }
}

/// A peer's declared batch is bounded by what fits in a frame before anything is sized by it.
#[test]
fn absurd_batches_are_refused_before_allocation() {
    use tessera_suites::serpens_n::{HolderInput, JOIN, join_from_frame, max_batch};
    let (fixed, _) = encoded("minionn-cifar", "cifar10-test-200.bin", 1);
    let limit = max_batch(&fixed, 64 << 20);
    // MiniONN-CIFAR's largest layer sends 16 bytes for each of 65,536 elements per image.
    assert_eq!(limit, (64 << 20) / (16 * 65_536));
    let mut join = [2u32, 2, u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    join.extend([0u8; 32]);
    let header = tessera_net::FrameHeader { kind: JOIN, layer: 0, session: tessera_net::SessionId([0; 16]), len: 0 };
    assert!(matches!(join_from_frame("holder-2", header, &join, limit), Err(SuiteError::Protocol { .. })));
    let mut input = [1u32, 2, u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    input.extend([0u8; 32]);
    assert!(HolderInput::parse("user", &input, 3072, limit).is_err());
}

/// `S0` itself (no admission rules in front of it) refuses a second `JOIN` for a place its
/// query already holds, from the very holder configured there, and tells that connection why.
#[test]
fn central_refuses_a_duplicate_join_for_a_taken_place() {
    use tessera_net::{Channel, NetError, SessionId};
    use tessera_suites::error::Violation;
    use tessera_suites::serpens_n::{CentralService, JOIN};
    use tessera_suites::service::{Limits, Service};
    let (fixed, _) = encoded("lenet-mnist", "mnist-test-200-images.idx", 1);
    let limits = Limits { timeout: Duration::from_secs(1), max_frame: 64 << 20 };
    let central = CentralService::new("central", vec!["holder-1".into(), "holder-2".into()], fixed, limits);
    let session = SessionId::random();
    // Holder 1 of 2, batch 1, a pair seed.
    let mut join = [1u32, 2, 1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    join.extend([7u8; 32]);
    runtime(2).block_on(async {
        let (mut first, first_at_s0) = Channel::pair("holder-1", "central", limits.timeout, limits.max_frame);
        let (mut second, second_at_s0) = Channel::pair("holder-1", "central", limits.timeout, limits.max_frame);
        first.send(JOIN, session, 0, &join).await.unwrap();
        second.send(JOIN, session, 0, &join).await.unwrap();
        let waiting = central.handle(first_at_s0);
        let duplicate = async {
            // The first JOIN is gathered before the second arrives.
            tokio::time::sleep(Duration::from_millis(200)).await;
            central.handle(second_at_s0).await
        };
        let (waited, refused) = tokio::join!(waiting, duplicate);
        let Err(SuiteError::Protocol { peer, message, violation }) = refused else { panic!("{refused:?}") };
        assert_eq!((peer.as_str(), message), ("holder-1", "join"));
        assert_eq!(violation, Violation::Duplicate { what: "join for holder", index: 1 });
        let told = second.recv(JOIN, session, 0).await.unwrap_err();
        let NetError::Aborted { reason, .. } = told else { panic!("{told:?}") };
        assert!(reason.contains("join for holder 1"), "{reason}");
        // The first JOIN waited its timeout for holder 2, which never came.
        assert!(matches!(waited, Err(SuiteError::Net(NetError::Timeout { step: JOIN, .. }))), "{waited:?}");
    });
}
