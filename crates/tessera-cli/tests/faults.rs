//! Faults across real processes: a party of a serpens-n, serpens-2, bayes or clientserver
//! cluster killed at a random point of a query, or stalled, gives the user a typed error within
//! the timeout, and once the party is back the cluster answers the next query correctly. Also a burst of concurrent users.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::Rng;
use tessera::LoadedModel;
use tessera::Suite;
use tessera::dataset::Dataset;
use tessera::error::Fault;
use tessera::input::normalize;
use tessera::local::{LocalCluster, LocalOptions};
use tessera::query;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Case {
    model: LoadedModel,
    x: Vec<f32>,
    reference: Vec<f64>,
    bound: f64,
}

fn case(model: &str, data: &str, batch: usize) -> Case {
    let model = LoadedModel::load(&repo().join("models").join(model)).unwrap();
    let set = Dataset::open(&repo().join("data").join(data)).unwrap();
    let x = normalize(&set.stratified(batch).pixels, set.shape, model.meta());
    let reference = model.fixed().unwrap().run(&x, batch).unwrap();
    let bound = model.calibration().unwrap().logit_tolerance;
    Case { model, x, reference, bound }
}

fn check(case: &Case, logits: &[f32]) {
    assert_eq!(logits.len(), case.reference.len());
    for (a, b) in logits.iter().zip(&case.reference) {
        assert!((*a as f64 - b).abs() <= case.bound, "{a} vs {b}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Kills each of `victims` at a random point in the first `within` of a query of `batch` images:
/// the user gets a typed
/// error within a few timeouts (or a correct result if the query was done), and once the party
/// is restarted the cluster answers correctly again.
fn kill_each_and_recover(
    rt: &tokio::runtime::Runtime,
    cluster: &mut LocalCluster,
    c: &Case,
    batch: u32,
    victims: &[&str],
    within: Duration,
    timeout: Duration,
) {
    let mut rng = rand::rng();
    for &victim in victims {
        let config = cluster.config.clone();
        let (model, x) = (&c.model, &c.x);
        let start = Instant::now();
        let outcome = std::thread::scope(|s| {
            let user = s.spawn(|| rt.block_on(query(&config, model, x, batch)));
            std::thread::sleep(within.mul_f64(rng.random_range(0.0..1.0)));
            cluster.kill(victim).unwrap();
            user.join().unwrap()
        });
        let waited = start.elapsed();
        match outcome {
            // The query finished before the kill.
            Ok(r) => check(c, &r.logits),
            Err(e) => {
                let text = e.to_string();
                assert!(!text.is_empty() && !text.contains("panicked"), "{victim}: {text}");
                assert!(waited < 3 * timeout, "{victim}: error after {waited:?}: {text}");
                // A peer's fault, naming the party the user lost (or the one that told it why).
                assert_eq!(e.fault(), Fault::Peer, "{victim}: {text}");
                assert!(config.parties.iter().any(|p| text.contains(&p.name)), "{victim}: {text}");
            }
        }
        cluster.restart(victim).unwrap();
        check(c, &rt.block_on(query(&cluster.config, &c.model, &c.x, batch)).unwrap().logits);
    }
}

#[test]
fn killed_or_stalled_parties_give_typed_errors_and_the_cluster_recovers() {
    let timeout = Duration::from_secs(2);
    let c = case("minionn-cifar.onnx", "cifar10-test-200.bin", 4);
    let options = LocalOptions { holders: 2, timeout: Some(timeout), ..Default::default() };
    let mut cluster =
        common::start_local(Suite::SerpensN, &repo().join("models/minionn-cifar.onnx"), &options).unwrap();
    let rt = runtime();
    let run = |cluster: &LocalCluster| rt.block_on(query(&cluster.config, &c.model, &c.x, 4));
    check(&c, &run(&cluster).unwrap().logits);
    kill_each_and_recover(
        &rt,
        &mut cluster,
        &c,
        4,
        &["holder-1", "holder-2", "central"],
        Duration::from_millis(60),
        timeout,
    );
    // A stalled central server: the user gets an error within the timeouts, not a hang.
    let pid = cluster.pid("central").unwrap().to_string();
    std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let start = Instant::now();
    let err = run(&cluster).unwrap_err();
    let waited = start.elapsed();
    std::process::Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert!(waited >= timeout / 2 && waited < 4 * timeout, "stall answered after {waited:?}: {err}");
    let text = err.to_string();
    assert!(text.contains("central") || text.contains("no message within"), "{text}");
    // And the cluster serves again.
    check(&c, &run(&cluster).unwrap().logits);
}

/// Suite serpens-2: either server killed in the middle of a query.
#[test]
fn a_killed_serpens_2_server_gives_a_typed_error_and_the_pair_recovers() {
    // The user's wait for the output spans the whole secure computation: a test build on a busy
    // 2-core machine needs seconds for it.
    let timeout = Duration::from_secs(10);
    let c = case("minionn-cifar.onnx", "cifar10-test-200.bin", 2);
    let options = LocalOptions { timeout: Some(timeout), ..Default::default() };
    let mut cluster =
        common::start_local(Suite::Serpens2, &repo().join("models/minionn-cifar.onnx"), &options).unwrap();
    let rt = runtime();
    check(&c, &rt.block_on(query(&cluster.config, &c.model, &c.x, 2)).unwrap().logits);
    kill_each_and_recover(&rt, &mut cluster, &c, 2, &["server-1", "server-2"], Duration::from_millis(800), timeout);
}

#[test]
fn concurrent_users_all_get_correct_results() {
    let c = case("minionn-mnist.onnx", "mnist-test-200-images.idx", 8);
    let options = LocalOptions { holders: 2, ..Default::default() };
    let cluster = common::start_local(Suite::SerpensN, &repo().join("models/minionn-mnist.onnx"), &options).unwrap();
    let rt = runtime();
    // 8 users, 10 queries each, one image per query.
    let users = (0..8).map(|u| {
        let (config, c) = (&cluster.config, &c);
        async move {
            for q in 0..10 {
                let i = (u + q) % 8;
                let r = query(config, &c.model, &c.x[i * 784..(i + 1) * 784], 1).await.unwrap();
                for (a, b) in r.logits.iter().zip(&c.reference[i * 10..(i + 1) * 10]) {
                    assert!((*a as f64 - b).abs() <= c.bound, "user {u}, query {q}: {a} vs {b}");
                }
            }
        }
    });
    rt.block_on(futures::future::join_all(users));
}

/// The single server of `plain` and of `verify`: killed, a typed error naming it; restarted,
/// correct results again.
#[test]
fn a_killed_single_server_gives_a_typed_error_and_serves_after_restart() {
    let c = case("minionn-cifar.onnx", "cifar10-test-200.bin", 4);
    let options = LocalOptions { timeout: Some(Duration::from_secs(2)), ..Default::default() };
    let rt = runtime();
    let plain = tessera::model::plain::PlainEngine::new(&c.model.merged).run(&c.x, 4).unwrap();
    for (suite, server) in [(Suite::Plain, "server"), (Suite::Verify, "cloud")] {
        let mut cluster = common::start_local(suite, &repo().join("models/minionn-cifar.onnx"), &options).unwrap();
        let expect_right = |logits: &[f32]| match suite.is_exact() {
            false => assert_eq!(logits, &plain[..]),
            true => check(&c, logits),
        };
        expect_right(&rt.block_on(query(&cluster.config, &c.model, &c.x, 4)).unwrap().logits);
        cluster.kill(server).unwrap();
        let start = Instant::now();
        let err = rt.block_on(query(&cluster.config, &c.model, &c.x, 4)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(4), "{suite}: {err}");
        assert!(err.to_string().contains(server), "{suite}: {err}");
        assert_eq!(err.fault(), Fault::Peer, "{suite}: {err}");
        cluster.restart(server).unwrap();
        expect_right(&rt.block_on(query(&cluster.config, &c.model, &c.x, 4)).unwrap().logits);
    }
}

/// Suite bayes: the server killed at a random point of a query. The user gets a typed error
/// within the timeout (or its result, if the kill came after); restarted, the server answers
/// the next query.
#[test]
fn a_killed_bayes_server_gives_a_typed_error_and_serves_after_restart() {
    let timeout = Duration::from_secs(5);
    let path = repo().join("models/bayes-minionn-mnist.onnx");
    let model = LoadedModel::load(&path).unwrap();
    let set = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(set.pixels(0..2), set.shape, model.meta());
    let options = LocalOptions { timeout: Some(timeout), ..Default::default() };
    let mut cluster = common::start_local(Suite::Bayes, &path, &options).unwrap();
    let rt = runtime();
    let labels = |logits: &[f32]| logits.chunks(10).map(tessera::eval::argmax).collect::<Vec<_>>();
    let expected: Vec<usize> = set.labels[..2].iter().map(|&l| l as usize).collect();
    assert_eq!(labels(&rt.block_on(query(&cluster.config, &model, &x, 2)).unwrap().logits), expected);
    let mut rng = rand::rng();
    for _ in 0..2 {
        let after = Duration::from_millis(rng.random_range(0..300));
        kill_server_mid_query(&rt, &mut cluster, &model, &x, after, timeout, |l| assert_eq!(labels(l), expected));
        assert_eq!(labels(&rt.block_on(query(&cluster.config, &model, &x, 2)).unwrap().logits), expected);
    }
}

/// Kills the party named `server` `after` the start of a query of the two images `x`: the user
/// gets a typed error naming it, the peer's fault, within two `timeout`s (or its result, which
/// `right` checks, if the kill came after); then restarts it.
fn kill_server_mid_query(
    rt: &tokio::runtime::Runtime,
    cluster: &mut LocalCluster,
    model: &LoadedModel,
    x: &[f32],
    after: Duration,
    timeout: Duration,
    right: impl Fn(&[f32]),
) {
    let config = cluster.config.clone();
    let start = Instant::now();
    let outcome = std::thread::scope(|s| {
        let user = s.spawn(|| rt.block_on(query(&config, model, x, 2)));
        std::thread::sleep(after);
        cluster.kill("server").unwrap();
        user.join().unwrap()
    });
    match outcome {
        Ok(r) => right(&r.logits),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains("panicked"), "{text}");
            assert!(start.elapsed() < 2 * timeout, "error after {:?}: {text}", start.elapsed());
            assert_eq!(e.fault(), Fault::Peer, "{text}");
            assert!(text.contains("server"), "{text}");
        }
    }
    cluster.restart("server").unwrap();
}

/// Suite clientserver across processes (mutual TLS): two models' logits equal the fixed-point
/// reference exactly; then the server killed at a random point of a query gives the user a typed
/// error within the timeout (or its exact result, if the kill came after), and restarted, the
/// server answers the next query exactly.
#[test]
fn clientserver_is_exact_across_processes_and_recovers_from_a_killed_server() {
    let timeout = Duration::from_secs(5);
    let options = LocalOptions { timeout: Some(timeout), ..Default::default() };
    let rt = runtime();
    let exact = |c: &Case, logits: &[f32]| {
        let expected: Vec<f32> = c.reference.iter().map(|&v| v as f32).collect();
        assert_eq!(logits, &expected[..]);
    };
    for model in ["lenet-mnist.onnx", "minionn-mnist.onnx"] {
        let c = case(model, "mnist-test-200-images.idx", 2);
        let mut cluster =
            common::start_local(Suite::ClientServer, &repo().join("models").join(model), &options).unwrap();
        let r = rt.block_on(query(&cluster.config, &c.model, &c.x, 2)).unwrap();
        exact(&c, &r.logits);
        assert!(r.user_storage_bytes().is_some_and(|b| b > 0));
        if model != "minionn-mnist.onnx" {
            continue;
        }
        let mut rng = rand::rng();
        for _ in 0..2 {
            let after = Duration::from_millis(rng.random_range(0..1500));
            kill_server_mid_query(&rt, &mut cluster, &c.model, &c.x, after, timeout, |l| exact(&c, l));
            exact(&c, &rt.block_on(query(&cluster.config, &c.model, &c.x, 2)).unwrap().logits);
        }
    }
}
