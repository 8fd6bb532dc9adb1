//! Suite seco deployed: the gateway and both remote servers each in their own OS process, every
//! link mutual TLS on loopback, each party loading its own file of the split model.
//!
//! * The logits equal the fixed-point reference exactly, on real test images of two shipped
//!   models, each cut at a split point of its own.
//! * A remote server's file holds shares only: no plaintext weight, every stored word of the
//!   weights after the cut spread over `Z_t`, and B's and C's words summing to the weights.
//! * A certificate from another CA, or a valid one of another party, is refused with a typed
//!   error; a remote server that vanishes fails the next query with a typed error naming it,
//!   while the gateway and the other remote server keep serving (the same processes answer
//!   again once it is back); so does one killed at a random point of a query.
//!
//! The file has its own `main` (`harness = false`): the test binary re-executes itself as each
//! server party (`TESSERA_SECO_PARTY` set), which prints the readiness line local clusters wait
//! for and serves until it is killed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tessera::cluster::{ClusterConfig, PartyConfig};
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera::local::{LocalCluster, LocalOptions};
use tessera::model::part::{PartWeights, SplitFile};
use tessera::net::tls::{Identity, connect};
use tessera::net::{NetError, SessionId, certs};
use tessera::suites::SuiteError;
use tessera::{Error, LoadedModel, Role, Suite, query_split};
use tessera_field::{fixed, zt};
use tessera_model::fixed::FixedOp;

const PARTY: &str = "TESSERA_SECO_PARTY";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Serves the party the environment names, as `tessera serve` does, until killed.
fn serve_party(party: &str) {
    let (role, name, config) = (
        std::env::var("TESSERA_SECO_ROLE").unwrap(),
        party.to_string(),
        PathBuf::from(std::env::var("TESSERA_SECO_CONFIG").unwrap()),
    );
    let config = ClusterConfig::load(&config).unwrap();
    let role: Role = role.parse().unwrap();
    let ready = |addr| {
        use std::io::Write;
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime
        .block_on(tessera::serve(&config, role, Some(&name), Default::default(), ready, std::future::pending()))
        .unwrap();
}

/// A local seco cluster of `model` cut after `split` weighted layers, each server party this
/// executable in a process of its own.
fn start(model: &str, split: usize) -> LocalCluster {
    let launch = |party: &PartyConfig, config: &Path| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .env(PARTY, &party.name)
            .env("TESSERA_SECO_ROLE", party.role.name())
            .env("TESSERA_SECO_CONFIG", config)
            .env("RUST_LOG", "off");
        command
    };
    let options = LocalOptions { split: Some(split), timeout: Some(Duration::from_secs(60)), ..Default::default() };
    LocalCluster::start(launch, Suite::Seco, &repo().join("models").join(model), &options).unwrap()
}

/// `n` real test images of `model`'s dataset, normalized, and their fixed-point reference
/// logits decoded as a query's are.
fn images(model: &str, n: usize) -> (Vec<f32>, Vec<f32>) {
    let m = LoadedModel::load(&repo().join("models").join(model)).unwrap();
    let data = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(&data.stratified(n).pixels, data.shape, m.meta());
    let fixed = m.fixed().unwrap();
    let reference = fixed.run_encoded(fixed.encode_input(&x, n).unwrap(), n).unwrap();
    let bits = fixed.output_bits();
    (x, reference.iter().map(|&v| fixed::decode(v, bits) as f32).collect())
}

fn user_file(cluster: &LocalCluster) -> SplitFile {
    cluster.config.load_split(cluster.config.party(Role::User).unwrap()).unwrap()
}

/// One query of `n` images, which must give exactly the reference's logits.
fn exact_query(runtime: &tokio::runtime::Runtime, cluster: &LocalCluster, x: &[f32], reference: &[f32], n: usize) {
    let user = user_file(cluster);
    let r = runtime.block_on(query_split(&cluster.config, &user, x, n as u32)).unwrap();
    assert_eq!(r.logits, reference, "seco's logits are the fixed-point reference's");
    let parties: Vec<&str> = r.reports.iter().map(|p| p.party.as_str()).collect();
    assert_eq!(parties, ["user", "gateway", "remote-b", "remote-c"]);
}

/// Every weight word of both remote servers' files: shares only, spread over `Z_t`, summing
/// to the weights after the cut.
fn remote_files_hold_shares_only(cluster: &LocalCluster, model: &str, split: usize) {
    let remotes = cluster.config.parties_with(Role::Remote);
    let files: Vec<SplitFile> = remotes.iter().map(|p| cluster.config.load_split(p).unwrap()).collect();
    let m = LoadedModel::load(&repo().join("models").join(model)).unwrap();
    let suffix = m.fixed().unwrap().split(split).unwrap().suffix.unwrap();
    let (mut words, mut near_zero) = (0usize, 0usize);
    for (node, op) in suffix.ops().iter().enumerate() {
        let FixedOp::Linear { kernel, bias } = op else { continue };
        let shares: Vec<_> = files
            .iter()
            .map(|f| {
                assert!(f.prefix.is_none(), "a remote server holds nothing before the cut");
                match &f.suffix.as_ref().unwrap().weights {
                    PartWeights::Shares(s) => s.layer(node).unwrap(),
                    _ => panic!("a remote server's file holds shares only"),
                }
            })
            .collect();
        let plain: Vec<u64> = kernel.group_weights().into_iter().map(zt::from_i64).collect();
        let bias = bias.clone().unwrap_or_else(|| vec![0; shares[0].bias().len()]);
        for (plain, [b, c]) in
            [(plain, [shares[0].weights(), shares[1].weights()]), (bias, [shares[0].bias(), shares[1].bias()])]
        {
            assert_eq!(plain.len(), b.len());
            for ((&w, &b), &c) in plain.iter().zip(b).zip(c) {
                assert_eq!(zt::add(b, c), w, "B's and C's shares sum to the weight");
                for v in [b, c] {
                    words += 1;
                    // Every plaintext weight and bias lies within 2^48 of zero in Z_t; a uniform
                    // word does with probability 2^-12.
                    near_zero += usize::from(!(1 << 48..=zt::T - (1 << 48)).contains(&v));
                }
            }
        }
    }
    assert!(words > 10_000, "{words} words");
    assert!(near_zero <= words / 512 + 2, "{near_zero} of {words} stored words look like plaintext weights");
}

/// A stranger's certificate (another CA) and a valid certificate of another party are refused.
fn wrong_certificates_are_refused(runtime: &tokio::runtime::Runtime, cluster: &LocalCluster) {
    let config = &cluster.config;
    let gateway = config.party(Role::Gateway).unwrap().address.clone().unwrap();
    let ca = std::fs::read_to_string(config.resolve(&config.ca)).unwrap();
    let (_, strangers) = certs::dev_cluster("elsewhere", &[("user", certs::KeyUse::Client)]).unwrap();
    let stranger = Identity::from_pem("user", &ca, &strangers[0].cert, &strangers[0].key).unwrap();
    let remote_c = config.identity(config.parties_with(Role::Remote)[1]).unwrap();
    let user = config.identity(config.party(Role::User).unwrap()).unwrap();
    let c_address = config.parties_with(Role::Remote)[1].address.clone().unwrap();
    runtime.block_on(async {
        for (who, identity, address, name) in [
            ("a stranger", &stranger, &gateway, "gateway"),
            ("remote-c", &remote_c, &gateway, "gateway"),
            ("the user", &user, &c_address, "remote-c"),
        ] {
            let refused = match connect(identity, address, name, config.timeout(), config.max_frame_bytes).await {
                Err(e) => e,
                // TLS 1.3: the server's refusal of a client certificate arrives on the first read.
                Ok(mut c) => {
                    let s = SessionId::random();
                    let _ = c.send(tessera::suites::seco::PREPARE, s, 0, &[0; 36]).await;
                    c.recv(tessera::suites::seco::KEYS, s, 0).await.unwrap_err()
                }
            };
            assert!(
                matches!(refused, NetError::Tls { .. } | NetError::PeerClosed { .. } | NetError::Io { .. }),
                "{who} to {name}: {refused:?}"
            );
        }
    });
}

fn minionn_mnist_across_processes() {
    let (model, split, n) = ("minionn-mnist.onnx", 1, 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut cluster = start(model, split);
    let (x, reference) = images(model, n);
    exact_query(&runtime, &cluster, &x, &reference, n);
    remote_files_hold_shares_only(&cluster, model, split);
    wrong_certificates_are_refused(&runtime, &cluster);
    let kept = [cluster.pid("gateway"), cluster.pid("remote-b")];

    // C vanishes: the next query fails with a typed error naming it.
    cluster.kill("remote-c").unwrap();
    let user = user_file(&cluster);
    let failed = runtime.block_on(query_split(&cluster.config, &user, &x[..784], 1)).unwrap_err();
    match &failed {
        Error::Suite(SuiteError::Net(NetError::Aborted { peer, reason, .. })) => {
            assert_eq!(peer, "gateway");
            assert!(reason.contains("remote-c"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // The gateway and B kept serving: once C is back, the same processes answer exactly.
    cluster.restart("remote-c").unwrap();
    exact_query(&runtime, &cluster, &x[..784], &reference[..10], 1);
    assert_eq!([cluster.pid("gateway"), cluster.pid("remote-b")], kept);

    // B vanishes at a random point of a query: a typed error, the peer's fault, naming it (or
    // the exact result, if the query was done); the gateway and C serve the next query.
    let after = Duration::from_millis(rand::random_range(0..1500));
    let (start, config) = (Instant::now(), cluster.config.clone());
    let outcome = std::thread::scope(|s| {
        let query = s.spawn(|| runtime.block_on(query_split(&config, &user, &x, n as u32)));
        std::thread::sleep(after);
        cluster.kill("remote-b").unwrap();
        query.join().unwrap()
    });
    match outcome {
        Ok(r) => assert_eq!(r.logits, reference),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(e.fault(), tessera::error::Fault::Peer, "{text}");
            assert!(text.contains("remote-b"), "{text}");
            assert!(start.elapsed() < Duration::from_secs(30), "error after {:?}: {text}", start.elapsed());
        }
    }
    let kept = [cluster.pid("gateway"), cluster.pid("remote-c")];
    cluster.restart("remote-b").unwrap();
    exact_query(&runtime, &cluster, &x[784..], &reference[10..], 1);
    assert_eq!([cluster.pid("gateway"), cluster.pid("remote-c")], kept);
}

fn lenet_mnist_across_processes() {
    let (model, split, n) = ("lenet-mnist.onnx", 2, 2);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster = start(model, split);
    let (x, reference) = images(model, n);
    exact_query(&runtime, &cluster, &x, &reference, n);
}

fn main() {
    if let Ok(party) = std::env::var(PARTY) {
        return serve_party(&party);
    }
    let tests: [(&str, fn()); 2] = [
        ("minionn_mnist_across_processes", minionn_mnist_across_processes),
        ("lenet_mnist_across_processes", lenet_mnist_across_processes),
    ];
    if std::env::args().any(|a| a == "--list") {
        tests.iter().for_each(|(name, _)| println!("{name}: test"));
        return;
    }
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        test();
        println!("test {name} ... ok ({:.1} s)", start.elapsed().as_secs_f64());
    }
}
