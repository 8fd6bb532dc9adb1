//! Suite bayes end to end in one process: every sample's logits equal the fixed-point reference
//! evaluated with the same sampled weights, exactly, on real test images of both shipped
//! Bayesian models.

mod common;

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera_he::HeParams;
use tessera_net::StageKind;
use tessera_suites::bayes::{BayesServer, Sampling, run_in_memory};

fn server(m: &LoadedModel, sampling: Sampling) -> Arc<BayesServer> {
    let he = Arc::new(HeParams::standard().unwrap());
    Arc::new(BayesServer::new(
        m.original.clone(),
        m.posterior.clone().expect("a Bayesian model"),
        m.params().unwrap(),
        he,
        sampling,
        64,
    ))
}

#[test]
fn every_sample_equals_the_reference_with_the_same_weights() {
    let rt = common::runtime(2);
    let he = HeParams::standard().unwrap();
    for (name, set, n) in [
        ("bayes-minionn-mnist", "mnist-test-200-images.idx", 20),
        ("bayes-pneumonia-cnn", "pneumoniamnist-test-200-images.idx", 20),
    ] {
        let m = LoadedModel::load(&common::repo().join("models").join(format!("{name}.onnx"))).unwrap();
        let data = Dataset::open(&common::repo().join("data").join(set)).unwrap();
        let fixed = m.fixed().unwrap();
        let input = fixed.encode_input(&normalize(data.pixels(0..n), data.shape, m.meta()), n).unwrap();
        let seed = [42u8; 32];
        let samples = 3;
        let outcome =
            rt.block_on(run_in_memory(&fixed, server(&m, Sampling::Replay(seed)), &he, &input, n, samples)).unwrap();
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut correct = 0;
        for s in 0..samples {
            let posterior = m.posterior.as_ref().unwrap();
            let sampled = posterior.sample_fixed(&m.original, m.params().unwrap(), &mut rng).unwrap();
            let reference = sampled.run_encoded(input.clone(), n).unwrap();
            assert_eq!(outcome.samples[s], reference, "{name}, sample {s}");
            // A sample is not the mean model.
            assert_ne!(reference, fixed.run_encoded(input.clone(), n).unwrap(), "{name}, sample {s}");
        }
        assert_ne!(outcome.samples[0], outcome.samples[1], "{name}: samples are independent");
        let classes = fixed.output_len();
        for (image, probs) in outcome.probabilities.chunks(classes).enumerate() {
            assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            let label = (0..classes).fold(0, |b, i| if probs[i] > probs[b] { i } else { b });
            correct += (label == data.labels[image] as usize) as usize;
        }
        assert!(correct * 10 >= n * 8, "{name}: meta-prediction right on {correct} of {n}");
        eprintln!("{name}: {samples} samples exact on {n} images, meta-prediction right on {correct}");
    }
}

#[test]
fn fresh_sampling_draws_new_weights_every_query() {
    let rt = common::runtime(2);
    let he = HeParams::standard().unwrap();
    let m = LoadedModel::load(&common::repo().join("models/bayes-minionn-mnist.onnx")).unwrap();
    let data = Dataset::open(&common::repo().join("data/mnist-test-200-images.idx")).unwrap();
    let fixed = m.fixed().unwrap();
    let input = fixed.encode_input(&normalize(data.pixels(0..1), data.shape, m.meta()), 1).unwrap();
    let srv = server(&m, Sampling::Fresh);
    let a = rt.block_on(run_in_memory(&fixed, srv.clone(), &he, &input, 1, 1)).unwrap();
    let b = rt.block_on(run_in_memory(&fixed, srv, &he, &input, 1, 1)).unwrap();
    assert_ne!(a.samples[0], b.samples[0]);
    assert_eq!(a.reports.len(), 2);
    assert!(a.reports.iter().all(|r| r.stages.iter().any(|s| s.kind == StageKind::HeLinear)));
}

/// A user that breaks the protocol gets the server to end that connection with a typed error
/// naming what was wrong, never a panic or a hang.
#[test]
fn malformed_queries_are_typed_errors() {
    use std::time::Duration;
    use tessera_net::{Channel, SessionId};
    use tessera_suites::SuiteError;
    use tessera_suites::bayes::{JOIN, LAYER};

    let rt = common::runtime(2);
    let he = HeParams::standard().unwrap();
    let m = LoadedModel::load(&common::repo().join("models/bayes-minionn-mnist.onnx")).unwrap();
    let srv = server(&m, Sampling::Fresh);
    let mut key = Vec::new();
    let mut rng = tessera_field::seed::os_rng();
    tessera_he::SecretKey::generate(&he, &mut rng).unwrap().public_key(&mut rng).unwrap().write(&he, &mut key).unwrap();
    let join = |batch: u32, samples: u32, key: &[u8]| {
        let mut j = batch.to_le_bytes().to_vec();
        j.extend_from_slice(&samples.to_le_bytes());
        j.extend_from_slice(key);
        j
    };
    let good_join = join(1, 1, &key);
    type Frame = (tessera_net::MessageKind, u32, Vec<u8>);
    let cases: Vec<(&str, Vec<Frame>)> = vec![
        ("layer before join", vec![(LAYER, 0, vec![1, 0, 0, 0])]),
        ("truncated join", vec![(JOIN, 0, vec![1, 0])]),
        ("no samples", vec![(JOIN, 0, join(1, 0, &key))]),
        ("too many samples", vec![(JOIN, 0, join(1, 1000, &key))]),
        ("oversized batch", vec![(JOIN, 0, join(1 << 20, 1, &key))]),
        ("garbled key", vec![(JOIN, 0, join(1, 1, &key[..key.len() - 3]))]),
        ("layer out of order", vec![(JOIN, 0, good_join.clone()), (LAYER, 3, vec![1, 0, 0, 0])]),
        ("short ciphertexts", vec![(JOIN, 0, good_join.clone()), (LAYER, 0, vec![1, 0, 0, 0, 9, 9])]),
        ("bad shared flag", vec![(JOIN, 0, good_join.clone()), (LAYER, 0, vec![7, 0, 0, 0])]),
    ];
    for (what, frames) in cases {
        let (mut ours, mut theirs) = Channel::pair("user", "server", Duration::from_secs(5), 1 << 26);
        let s = srv.clone();
        let task = rt.spawn(async move { s.serve("server", &mut theirs).await });
        let session = SessionId::random();
        rt.block_on(async {
            for (kind, layer, payload) in frames {
                let _ = ours.send(kind, session, layer, &payload).await;
            }
        });
        let result = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        let err = result.expect("no hang").expect("no panic").expect_err(what);
        assert!(matches!(err, SuiteError::Protocol { .. } | SuiteError::Net(_)), "{what}: {err}");
        drop(ours);
    }
}
