//! Suite seco with the user, the gateway and both remote servers in this process (in-memory
//! channels): secure logits **equal** to the fixed-point reference on real test images of every
//! shipped model at several split points, every nonlinear layer after the cut exact on its own
//! input; and the servers' views, two at a time, against what they must not learn.

mod common;

use common::{SHIPPED, assert_uniform, check_layers, chi2_bytes, elements, encoded, runtime};
use std::sync::Arc;

use tessera_field::zt;
use tessera_gc::gmw::{COLUMNS, CORRECTIONS, ROUND, SHIFTS};
use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_model::runner::LayerTrace;
use tessera_net::{StageKind, TappedFrame};
use tessera_suites::seco::{
    CUT, InMemoryOutcome, InMemoryRun, KEYS, LOGITS, OPEN, OPENING, OUTPUT, PREPARED, PROGRESS, QUERY, REPORT,
    run_in_memory,
};

fn run(fixed: &Arc<FixedModel>, split: usize, input: &[u64], batch: usize, settings: &InMemoryRun) -> InMemoryOutcome {
    let he = Arc::new(HeParams::standard().unwrap());
    runtime(4).block_on(run_in_memory(fixed, split, &he, input, batch, settings)).unwrap()
}

/// Three split points of `fixed`: the first (everything remote), one in the middle, the last
/// (everything at the gateway).
fn three_splits(fixed: &FixedModel) -> Vec<usize> {
    let points = fixed.split_points();
    let mut three = vec![points[0], points[points.len() / 2], points[points.len() - 1]];
    three.dedup();
    three
}

/// Runs `model` on `n` real test images of its evaluation set in batches of `batch` at each of
/// `splits`: every logit exactly the reference's, and every nonlinear layer after the cut exactly
/// the reference layer on the input the three servers' shares add up to.
fn exact_on(model: &str, n: usize, batch: usize, splits: &[usize]) {
    let &(_, evalset, _) = SHIPPED.iter().find(|(m, ..)| *m == model).expect("a shipped model");
    let (fixed, input) = encoded(model, evalset, n);
    let reference = fixed.run_encoded(input.clone(), n).unwrap();
    let per_batch = batch * fixed.input_shape().len();
    for &split in splits {
        let suffix = fixed.split(split).unwrap().suffix;
        for (k, images) in input.chunks(per_batch).enumerate() {
            let traces: [LayerTrace; 3] = Default::default();
            let settings = InMemoryRun { layer_shares: Some(traces.clone()), ..InMemoryRun::default() };
            let run = run(&fixed, split, images, batch, &settings);
            let what = format!("{model}, seco split {split}, batch {k}");
            if let Some(suffix) = &suffix {
                check_layers(&what, suffix, &traces, 3, batch, true);
            }
            let expected = &reference[k * batch * fixed.output_len()..][..batch * fixed.output_len()];
            assert_eq!(run.outcome.logits, expected, "{what}: logits");
            let parties = if suffix.is_some() { 4 } else { 2 };
            assert_eq!(run.outcome.reports.len(), parties, "{what}: one report per party");
            for report in &run.outcome.reports {
                assert!(report.stages.iter().any(|s| s.kind == StageKind::Output), "{what}: {} online", report.party);
            }
        }
        println!("{model}, split {split}: {n} images, logits identical to the fixed-point reference");
    }
}

/// Every split point of MiniONN-MNIST, the cut before the first layer and after the last
/// included.
#[test]
fn every_split_point_of_minionn_mnist_is_exact() {
    let (fixed, _) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let points = fixed.split_points();
    assert_eq!(points, (0..=fixed.weighted_layers()).collect::<Vec<_>>());
    exact_on("minionn-mnist", 4, 4, &points);
}

/// One test per shipped model. By default MNIST-class models run at three split points and
/// CIFAR models (an image's preprocessing moves gigabytes) at the middle one, on image counts that
/// keep the suite's time on two cores in budget. With `TESSERA_SECO_FULL=1` every model runs at
/// three split points on 56 images (MNIST-class) or 10 (CIFAR).
macro_rules! exact {
    ($($name:ident: $model:literal, $batch:literal, $n:literal, $splits:literal, $n_full:literal;)*) => {$(
        #[test]
        fn $name() {
            let (fixed, _) = encoded($model, SHIPPED.iter().find(|(m, ..)| *m == $model).unwrap().1, 1);
            let splits = three_splits(&fixed);
            if std::env::var_os("TESSERA_SECO_FULL").is_some() {
                exact_on($model, $n_full, $batch, &splits);
            } else {
                let splits = if $splits == 1 { vec![splits[splits.len() / 2]] } else { splits };
                exact_on($model, $n, $batch, &splits);
            }
        }
    )*
        /// Every shipped model has its test above.
        #[test]
        fn every_shipped_model_is_tested() {
            for (model, ..) in SHIPPED {
                assert!([$($model),*].contains(model), "{model} has no seco exactness test");
            }
        }
    };
}

exact! {
    minionn_mnist_logits_equal_the_fixed_point_reference: "minionn-mnist", 8, 8, 3, 56;
    lenet_mnist_logits_equal_the_fixed_point_reference: "lenet-mnist", 4, 4, 3, 56;
    minionn_fashion_logits_equal_the_fixed_point_reference: "minionn-fashion", 4, 4, 3, 56;
    pneumonia_cnn_logits_equal_the_fixed_point_reference: "pneumonia-cnn", 4, 4, 3, 56;
    vgg_mnist_logits_equal_the_fixed_point_reference: "vgg-mnist", 4, 4, 3, 56;
    minionn_cifar_logits_equal_the_fixed_point_reference: "minionn-cifar", 1, 1, 1, 10;
    resnet20_cifar_logits_equal_the_fixed_point_reference: "resnet20-cifar", 1, 1, 1, 10;
    mobilenet_cifar_logits_equal_the_fixed_point_reference: "mobilenet-cifar", 2, 2, 1, 10;
}

/// The field-element messages a server receives: the opened, cut and output values, and the
/// three-party circuits' conversion shifts.
fn field_frames(frames: &[TappedFrame]) -> Vec<&TappedFrame> {
    frames.iter().filter(|f| [CUT, OPEN, OPENING, OUTPUT, QUERY, SHIFTS].contains(&f.header.kind)).collect()
}

/// Any two of the three servers pool every field-element message they received, one by one, on a
/// query
/// cut after the first layer (so the transition, the remote linear layers and the three-party
/// circuits all run), and attack it:
/// * every field-element message (openings, the cut value, padded outputs, the user's query)
///   looks uniform and holds no small value;
/// * the pair's best linear attack: every message, every sum and difference of two messages
///   of the same length, and the pair's own two shares of every activation added up, are
///   compared with every activation of that length (the cut value and every nonlinear layer's
///   input and output, from the three servers' shares added up): no position agrees beyond
///   chance, and no candidate correlates with the activation;
/// * the three-party circuits' bit messages (OT columns, triple corrections, the openings of
///   every round), pooled per kind, are uniform bytes.
///
/// What the pair can do with its two shares of every wire and triple is attacked in
/// tessera-gc (`attack_two_parties_pooling_openings_and_triples_read_no_wire`).
#[test]
fn attack_any_two_servers_learn_no_activation() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    for split in [0, 1] {
        let traces: [LayerTrace; 3] = Default::default();
        let settings = InMemoryRun { views: true, layer_shares: Some(traces.clone()), ..InMemoryRun::default() };
        let run = run(&fixed, split, &input, 1, &settings);
        // The activations after the cut, from the three servers' shares.
        let [a, b, c] = traces.map(|t| t.layers());
        let mut truth: Vec<(String, Vec<u64>)> = vec![];
        for ((a, b), c) in a.iter().zip(&b).zip(&c) {
            for (what, x, y, z) in
                [("input", &a.input, &b.input, &c.input), ("output", &a.output, &b.output, &c.output)]
            {
                let v: Vec<u64> = x.iter().zip(y).zip(z).map(|((&p, &q), &r)| zt::add(zt::add(p, q), r)).collect();
                truth.push((format!("layer {} {what}", a.layer.node), v));
            }
        }
        let cut = fixed.split(split).unwrap().prefix.run_encoded(input.clone(), 1).unwrap();
        truth.push(("the cut value".into(), cut));
        let names = ["gateway", "remote-b", "remote-c"];
        for (i, j) in [(1, 2), (1, 3), (2, 3)] {
            let pair = format!("{{{}, {}}}, split {split}", names[i - 1], names[j - 1]);
            let frames: Vec<&TappedFrame> =
                field_frames(&run.views[i].frames).into_iter().chain(field_frames(&run.views[j].frames)).collect();
            assert!(frames.len() >= 3, "{pair}: {} field messages", frames.len());
            // The gateway sends both remote servers the same opening: the pair holds it once.
            let mut messages: Vec<(String, Vec<u64>)> = Vec::new();
            for f in frames {
                let m = elements(&f.payload);
                if !messages.iter().any(|(_, seen)| *seen == m) {
                    messages.push((format!("{:?} from {} (layer {})", f.header.kind, f.from, f.header.layer), m));
                }
            }
            for (what, m) in &messages {
                if m.len() >= 64 {
                    assert_uniform(&format!("{pair}: {what}"), m);
                } else {
                    assert!(
                        m.iter().all(|&v| zt::to_i64(v).unsigned_abs() >= 1 << 40),
                        "{pair}: {what} holds a small value"
                    );
                }
            }
            let mut candidates: Vec<(String, Vec<u64>)> = messages.clone();
            // What the pair holds of every activation: its two shares, added.
            let held = [&a, &b, &c];
            for (x, y) in held[i - 1].iter().zip(held[j - 1]) {
                for (what, p, q) in [("input", &x.input, &y.input), ("output", &x.output, &y.output)] {
                    let sum = p.iter().zip(q).map(|(&u, &v)| zt::add(u, v)).collect();
                    candidates.push((format!("the pair's shares of layer {} {what}", x.layer.node), sum));
                }
            }
            for (x, (wx, mx)) in messages.iter().enumerate() {
                for (wy, my) in &messages[x + 1..] {
                    if mx.len() == my.len() {
                        let sum = mx.iter().zip(my).map(|(&p, &q)| zt::add(p, q)).collect();
                        let diff = mx.iter().zip(my).map(|(&p, &q)| zt::sub(p, q)).collect();
                        candidates.push((format!("{wx} + {wy}"), sum));
                        candidates.push((format!("{wx} − {wy}"), diff));
                    }
                }
            }
            for kind in [COLUMNS, CORRECTIONS, ROUND] {
                // A party sends both peers the same openings: the pair holds them once.
                let mut payloads: Vec<&[u8]> = run.views[i]
                    .frames
                    .iter()
                    .chain(&run.views[j].frames)
                    .filter(|f| f.header.kind == kind)
                    .map(|f| f.payload.as_slice())
                    .collect();
                payloads.sort_unstable();
                payloads.dedup();
                let bytes: Vec<u8> = payloads.concat();
                assert!(bytes.len() >= 1 << 14, "{pair}: {} bytes of {kind:?}", bytes.len());
                let chi2 = chi2_bytes(&bytes);
                assert!(chi2 < 370.0, "{pair}: {kind:?} bytes have χ² = {chi2:.1} over {} bytes", bytes.len());
            }
            let mut compared = 0;
            for (wc, cand) in &candidates {
                for (wt, t) in truth.iter().filter(|(_, t)| t.len() == cand.len()) {
                    let equal = cand.iter().zip(t).filter(|(p, q)| p == q).count();
                    assert!(equal <= 1, "{pair}: {wc} agrees with {wt} in {equal} of {} positions", t.len());
                    let corr = correlation(cand, t);
                    let bound = 5.0 / (t.len() as f64).sqrt();
                    assert!(corr.abs() < bound, "{pair}: {wc} correlates with {wt} ({corr:.3}, bound {bound:.3})");
                    compared += 1;
                }
            }
            println!(
                "{pair}: {} messages, {} candidates, {compared} comparisons with activations",
                messages.len(),
                candidates.len()
            );
        }
    }
}

/// Pearson correlation of the signed representatives.
fn correlation(x: &[u64], y: &[u64]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) =
        x.iter().zip(y).map(|(&a, &b)| (zt::to_i64(a) as f64, zt::to_i64(b) as f64)).unzip();
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let (vx, vy): (f64, f64) = (x.iter().map(|a| (a - mx).powi(2)).sum(), y.iter().map(|b| (b - my).powi(2)).sum());
    if vx == 0.0 || vy == 0.0 { 0.0 } else { cov / (vx * vy).sqrt() }
}

/// The user's device with everything remote: in preprocessing it exchanges keys and receives
/// reports; online it sends one message (the image under the two seeds' streams, uniform) and
/// receives the padded logits and the reports.
#[test]
fn the_user_sends_one_online_message_with_every_layer_remote() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let run = run(&fixed, 0, &input, 1, &InMemoryRun { views: true, ..InMemoryRun::default() });
    // Progress notes (empty, naming no layer, at most one a second) aside.
    let notes: Vec<_> = run.views[0].frames.iter().filter(|f| f.header.kind == PROGRESS).collect();
    assert!(notes.iter().all(|f| f.payload.is_empty() && f.header.layer == 0), "a progress note says more");
    let kinds: Vec<_> = run.views[0].frames.iter().map(|f| f.header.kind).filter(|&k| k != PROGRESS).collect();
    assert_eq!(kinds, [KEYS, PREPARED, LOGITS, REPORT]);
    let query = run.views[1].frames.iter().find(|f| f.header.kind == QUERY).unwrap();
    assert_eq!(query.from, "user");
    let masked = elements(&query.payload);
    assert_uniform("the user's query", &masked);
    assert!(masked.iter().zip(&input).all(|(m, x)| m != x), "an input value in the query");
    // The remote servers' reports reach the user as totals: no stage names a layer after the cut.
    for report in &run.outcome.reports[2..] {
        let names: Vec<&str> = report.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["layers after the cut"; 2], "{}'s report", report.party);
    }
    let user = &run.outcome.reports[0];
    let sent: u64 = user.links.iter().map(|l| l.traffic.bytes_sent).sum();
    println!("user: {} bytes sent in all, storage {} bytes", sent, run.user_storage);
}

/// No remote server holds a plaintext weight: each server's shares of every layer (as dealt for
/// its file) are uniform in `Z_t` and never small, and no frame B or C receives, ciphertexts and
/// garbled-circuit messages included, holds a small aligned word (a weight, bias or activation
/// in the clear would be one).
#[test]
fn remote_servers_hold_no_plaintext_weight() {
    use tessera_model::shares::WeightShares;
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let suffix = fixed.split(1).unwrap().suffix.unwrap();
    for (server, shares) in
        ["remote-b", "remote-c"].iter().zip(WeightShares::deal(&suffix, &mut tessera_field::seed::os_rng()))
    {
        for node in 0..suffix.ops().len() {
            if let Some(layer) = shares.layer(node) {
                assert_uniform(&format!("{server}'s weight shares of node {node}"), layer.weights());
            }
        }
    }
    let run = run(&fixed, 1, &input, 1, &InMemoryRun { views: true, ..InMemoryRun::default() });
    for view in &run.views[2..] {
        let mut words = 0;
        for frame in view.frames.iter().filter(|f| ![tessera_suites::seco::REMOTE_PREPARED].contains(&f.header.kind)) {
            let small =
                elements(&frame.payload).iter().filter(|&&w| zt::to_i64(w % zt::T).unsigned_abs() < 1 << 24).count();
            assert_eq!(small, 0, "{:?} from {} holds {small} small words", frame.header.kind, frame.from);
            words += frame.payload.len() / 8;
        }
        println!("{} frames, {words} words, none small", view.frames.len());
    }
}

/// The in-process cluster (what the Python package's local clusters run) splits the model in
/// memory at its default point, gives each party what its file would hold, and answers exactly.
#[test]
fn the_in_process_cluster_splits_the_model_and_answers_exactly() {
    use tessera::dataset::Dataset;
    use tessera::input::normalize;
    let m = tessera::LoadedModel::load(&common::repo().join("models/minionn-mnist.onnx")).unwrap();
    let data = Dataset::open(&common::repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(&data.stratified(2).pixels, data.shape, m.meta());
    let reference: Vec<f32> = m.fixed().unwrap().run(&x, 2).unwrap().iter().map(|&v| v as f32).collect();
    let cluster = tessera::InProcessCluster::start(tessera::Suite::Seco, m, 0, Default::default()).unwrap();
    let r = runtime(4).block_on(cluster.query(&x, 2, &Default::default())).unwrap();
    assert_eq!(r.logits, reference);
    let parties: Vec<&str> = r.reports.iter().map(|p| p.party.as_str()).collect();
    assert_eq!(parties, ["user", "gateway", "remote-b", "remote-c"]);
}
