//! The leakage suite bayes documents, demonstrated: a curious user recovers the first layer's
//! posterior means from the pre-activations it is given (Wong et al., IJCAI 2020).

mod common;

use std::sync::Arc;
use std::time::Duration;

use tessera::LoadedModel;
use tessera_he::HeParams;
use tessera_model::Op;
use tessera_net::Channel;
use tessera_suites::bayes::extract::{first_layer_draws, mean_of};
use tessera_suites::bayes::{BayesServer, Sampling};

/// 64 draws (4 queries × 16 samples) recover every first-layer mean of the Bayesian
/// MiniONN-MNIST within `5 σ / √64` plus one quantization step, where `σ` is that weight's own
/// posterior deviation.
#[test]
fn chosen_inputs_recover_the_first_layer_means() {
    let rt = common::runtime(2);
    let m = LoadedModel::load(&common::repo().join("models/bayes-minionn-mnist.onnx")).unwrap();
    let params = m.params().unwrap();
    let Op::Linear(linear) = &m.merged.nodes()[0].op else { panic!("the first node is a convolution") };
    let posterior = m.posterior.clone().unwrap();
    let sigma = posterior.layers()[0].weight_sigma.clone();
    let he = Arc::new(HeParams::standard().unwrap());
    let server = Arc::new(BayesServer::new(m.original.clone(), posterior, params, he.clone(), Sampling::Fresh, 16));
    let mut draws = Vec::new();
    for _ in 0..4 {
        let (mut ours, mut theirs) = Channel::pair("user", "server", Duration::from_secs(60), 1 << 30);
        let s = server.clone();
        let task = rt.spawn(async move { s.serve("server", &mut theirs).await });
        draws.extend(rt.block_on(first_layer_draws(&he, &mut ours, linear.geometry, 0, params.f(), 16)).unwrap());
        drop(ours);
        // The server sees the query abandoned after its first layer.
        assert!(rt.block_on(task).unwrap().is_err());
    }
    assert_eq!(draws.len(), 64);
    // Each draw is a different sample of the weights.
    assert_ne!(draws[0], draws[1]);
    let estimate = mean_of(&draws, params.f_w());
    let step = (-(params.f_w() as f64)).exp2();
    let mut worst = 0f64;
    for (i, ((e, &mu), &s)) in estimate.iter().zip(&linear.weight).zip(&sigma).enumerate() {
        let err = (e - mu as f64).abs();
        assert!(err <= 5.0 * s as f64 / 8.0 + step, "weight {i}: estimate {e}, mean {mu}, sigma {s}");
        worst = worst.max(err);
    }
    let one_draw = mean_of(&draws[..1], params.f_w());
    let single: f64 = one_draw.iter().zip(&linear.weight).map(|(e, &m)| (e - m as f64).abs()).fold(0.0, f64::max);
    assert!(worst < single, "64 draws ({worst}) beat one ({single})");
}
