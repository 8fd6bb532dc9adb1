//! Suite clientserver with the user and the model owner in this process (in-memory channels):
//! secure logits **equal** to the fixed-point reference on real test images of every shipped
//! model, layer by layer; the user's storage; and each party's exact view of a query, message
//! by message, against what it must not learn.

mod common;

use common::{SHIPPED, assert_uniform, check_layers, chi2_bytes, elements, encoded, runtime};
use std::sync::Arc;

use tessera_field::kernels::conv2d_zt;
use tessera_field::zt;
use tessera_gc::driver::{BASE_RECEIVER, BASE_SENDER, CHALLENGE, COLUMNS, LABELS, PROOF, RESHARE, TABLES};
use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::StageKind;
use tessera_suites::clientserver::{
    ENCRYPTED, InMemoryOutcome, InMemoryRun, LOGITS, PREPARE, PREPARED, PRODUCT, QUERY, REPORT, run_in_memory,
};

fn run(fixed: &Arc<FixedModel>, input: &[u64], batch: usize, settings: &InMemoryRun) -> InMemoryOutcome {
    let he = Arc::new(HeParams::standard().unwrap());
    runtime(4).block_on(run_in_memory(fixed, &he, input, batch, settings)).unwrap()
}

/// Runs `model` on `n` real test images of `evalset` in batches of `batch`: every nonlinear
/// layer and every logit exactly the reference's.
fn exact_on(model: &str, evalset: &str, n: usize, batch: usize) {
    let (fixed, input) = encoded(model, evalset, n);
    let reference = fixed.run_encoded(input.clone(), n).unwrap();
    let per_batch = batch * fixed.input_shape().len();
    for (k, images) in input.chunks(per_batch).enumerate() {
        // The last batch may be short.
        let size = images.len() / fixed.input_shape().len();
        let traces = [LayerTrace::default(), LayerTrace::default()];
        let settings = InMemoryRun { layer_shares: Some(traces.clone()), ..InMemoryRun::default() };
        let run = run(&fixed, images, size, &settings);
        let what = format!("{model}, clientserver, batch {k}");
        check_layers(&what, &fixed, &traces, 2, size, true);
        let expected = &reference[k * batch * fixed.output_len()..][..size * fixed.output_len()];
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

/// One test per shipped model, so the harness runs them side by side (one per core), on real
/// test images of every class: in batches of 4 per MNIST-class model, and one at a time for
/// MiniONN-CIFAR and ResNet-20 (an image's preprocessing moves 1.55 and 1.7 GB) and in batches of
/// 2 for the MobileNet-style net (about 0.4 GB an image). By default half the shipped counts: 50
/// images per MNIST-class model and 10 per CIFAR model (one per class), which keeps the suite's time on two cores in
/// budget; with `TESSERA_CLIENTSERVER_FULL=1` the shipped counts (100 and 20).
macro_rules! exact {
    ($($name:ident: $model:literal, $batch:literal;)*) => {$(
        #[test]
        fn $name() {
            let &(model, evalset, full) = SHIPPED.iter().find(|(m, ..)| *m == $model).expect("a shipped model");
            let n = if std::env::var_os("TESSERA_CLIENTSERVER_FULL").is_some() { full } else { full / 2 };
            exact_on(model, evalset, n, $batch);
        }
    )*
        /// Every shipped model has its test above.
        #[test]
        fn every_shipped_model_is_tested() {
            for (model, ..) in SHIPPED {
                assert!([$($model),*].contains(model), "{model} has no clientserver exactness test");
            }
        }
    };
}

exact! {
    minionn_mnist_logits_equal_the_fixed_point_reference: "minionn-mnist", 4;
    lenet_mnist_logits_equal_the_fixed_point_reference: "lenet-mnist", 4;
    minionn_fashion_logits_equal_the_fixed_point_reference: "minionn-fashion", 4;
    pneumonia_cnn_logits_equal_the_fixed_point_reference: "pneumonia-cnn", 4;
    minionn_cifar_logits_equal_the_fixed_point_reference: "minionn-cifar", 1;
    resnet20_cifar_logits_equal_the_fixed_point_reference: "resnet20-cifar", 1;
    vgg_mnist_logits_equal_the_fixed_point_reference: "vgg-mnist", 4;
    mobilenet_cifar_logits_equal_the_fixed_point_reference: "mobilenet-cifar", 2;
}

/// One query of `fixed` on `input` with both views and both parties' layer shares.
fn observed(fixed: &Arc<FixedModel>, input: &[u64]) -> (InMemoryOutcome, [LayerTrace; 2]) {
    let traces = [LayerTrace::default(), LayerTrace::default()];
    let settings = InMemoryRun { views: true, layer_shares: Some(traces.clone()), ..InMemoryRun::default() };
    (run(fixed, input, 1, &settings), traces)
}

/// The model owner's view, message by message, attacked: the masked input is uniform and holds
/// no input value; every ciphertext-free frame (tables, labels, OT points) is uniform bytes; and
/// the owner's shares of every nonlinear layer's input and output are uniform and never the true
/// activation (which it would need to learn anything of the image).
#[test]
fn attack_the_server_view_reveals_nothing_of_the_image() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (run, traces) = observed(&fixed, &input);
    let server = &run.views[1];
    let mut kinds = std::collections::BTreeMap::new();
    for frame in &server.frames {
        assert_eq!(frame.from, "user");
        *kinds.entry(frame.header.kind.0).or_insert(0usize) += 1;
        let what = format!("frame {:?} of layer {}", frame.header.kind, frame.header.layer);
        match frame.header.kind {
            QUERY => {
                let masked = elements(&frame.payload);
                assert_uniform(&what, &masked);
                for (i, (&m, &x)) in masked.iter().zip(&input).enumerate() {
                    assert_ne!(m, x, "{what}: element {i} is the input");
                }
                assert!(!masked.iter().any(|m| input.contains(m)), "{what}: an input value appears");
            }
            TABLES | LABELS => {
                let chi2 = chi2_bytes(&frame.payload);
                assert!(chi2 < 370.0, "{what}: byte χ² = {chi2:.1} over {} bytes", frame.payload.len());
            }
            PREPARE | ENCRYPTED | BASE_RECEIVER | CHALLENGE => {}
            other => panic!("the server received an unexpected {other:?}"),
        }
    }
    println!("server view: frames per kind {kinds:?}");
    let [user, server] = traces.map(|t| t.layers());
    for (u, s) in user.iter().zip(&server) {
        let what = format!("server shares of layer {}", s.layer.node);
        assert_uniform(&format!("{what}, input"), &s.input);
        assert_uniform(&format!("{what}, output"), &s.output);
        let truth: Vec<u64> = u.output.iter().zip(&s.output).map(|(&a, &b)| zt::add(a, b)).collect();
        assert!(truth.iter().zip(&s.output).all(|(t, o)| t != o), "{what}: a share equals the activation");
    }
}

/// The user's view, message by message, of the same image against two models of the same
/// architecture with different weights: the same frames in the same order with the same sizes,
/// and in both the decrypted products (the user's shares of every nonlinear layer's input), the
/// re-shares and the OT columns pass the same uniformity tests, so no weight shows through.
#[test]
fn attack_the_user_view_is_the_same_for_two_models_and_shows_no_weight() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let other = Arc::new(reweighted(&fixed));
    assert_ne!(fixed.run_encoded(input.clone(), 1).unwrap(), other.run_encoded(input.clone(), 1).unwrap());
    let mut shapes = Vec::new();
    for model in [&fixed, &other] {
        let (run, traces) = observed(model, &input);
        let view = &run.views[0];
        // Cost reports carry timings (JSON of varying length) and no values: their kind and
        // place count, not their size.
        let shape: Vec<(u16, u32, Option<usize>)> = view
            .frames
            .iter()
            .map(|f| {
                let report = [PREPARED, REPORT].contains(&f.header.kind);
                (f.header.kind.0, f.header.layer, (!report).then_some(f.payload.len()))
            })
            .collect();
        shapes.push(shape);
        let [user, server] = traces.map(|t| t.layers());
        for (u, s) in user.iter().zip(&server) {
            let what = format!("user shares of layer {}", u.layer.node);
            assert_uniform(&format!("{what}, input (decrypted products)"), &u.input);
            let truth: Vec<u64> = u.input.iter().zip(&s.input).map(|(&a, &b)| zt::add(a, b)).collect();
            assert!(truth.iter().zip(&u.input).all(|(t, o)| t != o), "{what}: a share equals the activation");
        }
        // The user's best attack on its first product: it knows its input share `r_1` (here
        // recovered from the server's view and the image) and `W`'s output shape; without the
        // mask `s`, its share would be exactly `W r_1` and would give `W` by linear algebra.
        let query = run.views[1].frames.iter().find(|f| f.header.kind == QUERY).unwrap();
        let r1: Vec<u64> = input.iter().zip(elements(&query.payload)).map(|(&x, a)| zt::sub(x, a)).collect();
        let w_r1 = conv2d_zt(model.linear_kernel(0).unwrap(), &r1, 1, 1);
        let first = &user[0];
        assert_eq!(first.layer.node, 1, "MiniONN-MNIST's first nonlinear layer reads conv1");
        assert!(first.input.iter().zip(&w_r1).all(|(p, w)| p != w), "a product share is unmasked");
        let minus_s: Vec<u64> = first.input.iter().zip(&w_r1).map(|(&p, &w)| zt::sub(p, w)).collect();
        assert_uniform("the mask on the user's first product", &minus_s);
        for frame in &view.frames {
            let what = format!("frame {:?} of layer {}", frame.header.kind, frame.header.layer);
            match frame.header.kind {
                RESHARE => {
                    let e = elements(&frame.payload);
                    if e.len() >= 64 {
                        assert_uniform(&what, &e);
                    }
                    let layer = server.iter().find(|l| l.layer.node == frame.header.layer).unwrap();
                    assert!(!e.iter().any(|v| layer.input.contains(v)), "{what}: a re-share is the server's share");
                }
                COLUMNS => {
                    let chi2 = chi2_bytes(&frame.payload);
                    assert!(chi2 < 370.0, "{what}: byte χ² = {chi2:.1}");
                }
                PRODUCT | LOGITS | PREPARED | REPORT | BASE_SENDER | PROOF => {}
                other => panic!("the user received an unexpected {other:?}"),
            }
        }
    }
    assert_eq!(shapes[0], shapes[1], "the user's view depends on the weights");
    println!("user view: {} frames, identical kinds and sizes for two models", shapes[0].len());
}

/// MiniONN-MNIST with other weights and the same architecture: every weight negated, every bias
/// shifted, quantized with the shipped model's parameters.
fn reweighted(fixed: &FixedModel) -> FixedModel {
    use tessera_model::ir::{Model, Op};
    let m = tessera::LoadedModel::load(&common::repo().join("models/minionn-mnist.onnx")).unwrap();
    let nodes = m
        .merged
        .nodes()
        .iter()
        .map(|n| {
            let mut op = n.op.clone();
            if let Op::Linear(l) = &mut op {
                l.weight.iter_mut().for_each(|w| *w = -*w);
                l.bias.iter_mut().flatten().for_each(|b| *b += 0.25);
            }
            (n.name.clone(), op, n.inputs.clone())
        })
        .collect();
    let model = Model::new(m.merged.input_shape(), nodes, m.merged.output(), m.merged.meta.clone()).unwrap();
    Arc::unwrap_or_clone(FixedModel::new(&model, fixed.params()).unwrap())
}

/// The model owner refuses a query it holds no material for, a second query on used material,
/// a preprocessing request beyond its pool, and malformed preprocessing messages: a typed error
/// naming the peer and the message, and no panic.
#[test]
fn unprepared_reused_and_malformed_requests_are_typed_errors() {
    use tessera_net::{Channel, SessionId};
    use tessera_suites::clientserver::{self, ClientServerServer};
    use tessera_suites::error::{SuiteError, Violation};
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let he = Arc::new(HeParams::standard().unwrap());
    let rt = runtime(4);
    // Runs a server with a pool of one query and `budget` bytes on a fresh connection and `user`
    // against it; returns the server's result.
    let serve_within =
        |budget: usize, user: Box<dyn FnOnce(Channel) -> futures::future::BoxFuture<'static, ()> + Send>| {
            let (ours, mut theirs) = Channel::pair("user", "server", std::time::Duration::from_secs(60), 1 << 30);
            let server = ClientServerServer::new(fixed.clone(), he.clone(), 4, 1, budget);
            rt.block_on(async move {
                let task = tokio::spawn(async move { server.serve("server", &mut theirs).await });
                user(ours).await;
                task.await.unwrap()
            })
        };
    let serve = |user| serve_within(usize::MAX, user);
    let violation = |r: Result<(), SuiteError>| match r {
        Err(SuiteError::Protocol { peer, violation, .. }) => {
            assert_eq!(peer, "user");
            violation
        }
        other => panic!("expected a protocol error, got {other:?}"),
    };
    // A query with no material.
    let r = serve(Box::new(|mut ch| {
        Box::pin(async move { ch.send(QUERY, SessionId::random(), 0, &[0u8; 8 * 784]).await.unwrap() })
    }));
    assert_eq!(violation(r), Violation::Unprepared);
    // A second query on the material of the first.
    let (f, h, x) = (fixed.clone(), he.clone(), input.clone());
    let r = serve(Box::new(move |mut ch| {
        Box::pin(async move {
            let material = clientserver::prepare("user", f.clone(), &h, &mut ch, 1).await.unwrap();
            let session = material.session();
            let first = clientserver::run("user", &f, &mut ch, material, &x).await.unwrap();
            assert_eq!(first.logits, f.run_encoded(x.clone(), 1).unwrap());
            ch.send(QUERY, session, 0, &tessera_suites::wire::elements_to_bytes(&x)).await.unwrap();
        })
    }));
    assert_eq!(violation(r), Violation::Unprepared);
    // A second preprocessing beyond the pool of one.
    let (f, h) = (fixed.clone(), he.clone());
    let r = serve(Box::new(move |mut ch| {
        Box::pin(async move {
            clientserver::prepare("user", f.clone(), &h, &mut ch, 1).await.unwrap();
            assert!(clientserver::prepare("user", f, &h, &mut ch, 1).await.is_err());
        })
    }));
    assert!(matches!(violation(r), Violation::OutOfRange { field: "preprocessed queries", value: 2, .. }));
    // A preprocessing beyond the server's memory budget for material.
    let needed = ClientServerServer::material_bytes(&fixed, 1).unwrap();
    let (f, h) = (fixed.clone(), he.clone());
    let r = serve_within(
        needed - 1,
        Box::new(move |mut ch| {
            Box::pin(async move { assert!(clientserver::prepare("user", f, &h, &mut ch, 1).await.is_err()) })
        }),
    );
    assert!(
        matches!(violation(r), Violation::OutOfRange { value, max, .. } if value == needed as u64 && max == needed as u64 - 1)
    );
    // Malformed preprocessing: a short request, a batch of 0, then ciphertexts of the wrong size.
    for (prepare, encrypted) in [(vec![1u8, 0], None), (vec![0u8; 4], None), (valid_prepare(&he), Some(vec![7u8; 100]))]
    {
        let r = serve(Box::new(move |mut ch| {
            Box::pin(async move {
                let session = SessionId::random();
                ch.send(PREPARE, session, 0, &prepare).await.unwrap();
                if let Some(bytes) = encrypted {
                    ch.send(ENCRYPTED, session, 0, &bytes).await.unwrap();
                }
                let _ = ch.recv_any().await;
            })
        }));
        let v = violation(r);
        assert!(
            matches!(
                v,
                Violation::Truncated { .. } | Violation::OutOfRange { field: "batch", .. } | Violation::Length { .. }
            ),
            "{v:?}"
        );
    }
}

/// A well-formed PREPARE for one image: batch 1 and a fresh public key.
fn valid_prepare(he: &HeParams) -> Vec<u8> {
    let mut rng = tessera_field::seed::os_rng();
    let key = tessera_he::SecretKey::generate(he, &mut rng).unwrap();
    let mut bytes = 1u32.to_le_bytes().to_vec();
    key.public_key(&mut rng).unwrap().write(he, &mut bytes).unwrap();
    bytes
}

/// A pool of two preprocessed queries on one connection, used in the other order: each query
/// finds its own material and both are exact; the reports of each count its own traffic only.
#[test]
fn pooled_material_serves_queries_in_any_order() {
    use tessera_net::Channel;
    use tessera_suites::clientserver::{self, ClientServerServer};
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    let he = Arc::new(HeParams::standard().unwrap());
    let (mut user, mut theirs) = Channel::pair("user", "server", std::time::Duration::from_secs(60), 1 << 30);
    let server = ClientServerServer::new(fixed.clone(), he.clone(), 4, 2, usize::MAX);
    let images: Vec<&[u64]> = input.chunks(fixed.input_shape().len()).collect();
    let rt = runtime(4);
    let outcomes = rt.block_on(async {
        let task = tokio::spawn(async move { server.serve("server", &mut theirs).await });
        let first = clientserver::prepare("user", fixed.clone(), &he, &mut user, 1).await.unwrap();
        let second = clientserver::prepare("user", fixed.clone(), &he, &mut user, 1).await.unwrap();
        let b = clientserver::run("user", &fixed, &mut user, second, images[1]).await.unwrap();
        let a = clientserver::run("user", &fixed, &mut user, first, images[0]).await.unwrap();
        drop(user);
        task.await.unwrap().unwrap();
        [a, b]
    });
    let classes = fixed.output_len();
    for (k, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.logits, reference[k * classes..(k + 1) * classes], "query {k}");
    }
    let sent = |o: &clientserver::Outcome| o.reports[0].links[0].traffic.bytes_sent;
    assert_eq!(sent(&outcomes[0]), sent(&outcomes[1]), "each report counts its own query's traffic");
}
