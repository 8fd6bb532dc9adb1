//! The `plain` suite over mutual TLS with the server loop in this process: correct logits,
//! a server that survives misbehaving and vanishing clients, and refused configurations.

use std::path::{Path, PathBuf};

use tessera::LoadedModel;
use tessera::cluster::{ClusterConfig, dev_parties};
use tessera::dataset::Dataset;
use tessera::error::Error;
use tessera::input::normalize;
use tessera::{Role, Suite};
use tessera::{query, serve};
use tessera_model::plain::PlainEngine;
use tessera_net::frame::FrameError;
use tessera_net::tls::connect;
use tessera_net::{FrameHeader, MessageKind, NetError, SessionId};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tessera-cluster-test-{tag}-{}", std::process::id()))
}

fn free_port() -> tessera::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// Suite seco's split point in these tests.
const SECO_SPLIT: usize = 1;

fn dev_config_for(tag: &str, suite: Suite, model: &str, holders: usize) -> ClusterConfig {
    let parties = dev_parties(suite, holders, free_port).unwrap();
    let mut model = repo().join("models").join(model);
    if suite.splits_model() {
        let dir = temp_dir(tag).join("split");
        tessera::split::write_split(&LoadedModel::load(&model).unwrap(), SECO_SPLIT, &dir).unwrap();
        model = dir;
    }
    let path = ClusterConfig::write_dev(&temp_dir(tag), suite, &model, &parties).unwrap();
    ClusterConfig::load(&path).unwrap()
}

fn dev_config(tag: &str) -> ClusterConfig {
    dev_config_for(tag, Suite::Plain, "minionn-mnist.onnx", 0)
}

/// Starts every server party of `config` in this process; the sender stops them.
async fn start_servers(config: &ClusterConfig) -> (tokio::sync::watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for p in config.parties.iter().filter(|p| p.role != Role::User) {
        let (config, name, role, mut stopped) = (config.clone(), p.name.clone(), p.role, stopped.clone());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            serve(&config, role, Some(&name), Default::default(), |a| ready_tx.send(a).unwrap(), shutdown)
                .await
                .unwrap();
        }));
        ready_rx.await.unwrap();
    }
    (stop, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_suite_serves_and_survives_bad_clients() {
    let config = dev_config("serve");
    let (stop, servers) = start_servers(&config).await;

    let model = LoadedModel::load(&repo().join("models/minionn-mnist.onnx")).unwrap();
    let data = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(data.pixels(0..4), data.shape, model.meta());
    let expected = PlainEngine::new(&model.merged).run(&x, 4).unwrap();
    let r = query(&config, &model, &x, 4).await.unwrap();
    assert_eq!(r.logits, expected);
    let user_link = &r.reports[0].links[0].traffic;
    assert_eq!(user_link.rounds, 1);
    assert_eq!(user_link.bytes_sent, 30 + 4 + 4 * 4 * 784);

    let user = config.identity(config.party(Role::User).unwrap()).unwrap();
    let address = config.party(Role::Server).unwrap().address.clone().unwrap();
    // A client that sends a frame of the wrong kind, one that dies mid-frame, one that sends a
    // malformed query: each ends its own connection only.
    let mut bad = connect(&user, &address, "server", config.timeout(), config.max_frame_bytes).await.unwrap();
    bad.send(tessera_suites::plain::LOGITS, SessionId::random(), 0, b"junk").await.unwrap();
    assert!(bad.recv(tessera_suites::plain::LOGITS, SessionId::random(), 0).await.is_err());
    let mut dying = connect(&user, &address, "server", config.timeout(), config.max_frame_bytes).await.unwrap();
    dying
        .send_raw_for_tests(
            &tessera_net::FrameHeader {
                kind: tessera_suites::plain::QUERY,
                layer: 0,
                session: SessionId::random(),
                len: 1000,
            }
            .encode(),
        )
        .await
        .unwrap();
    drop(dying);
    let mut short = connect(&user, &address, "server", config.timeout(), config.max_frame_bytes).await.unwrap();
    let s = SessionId::random();
    short.send(tessera_suites::plain::QUERY, s, 0, &[1, 0, 0, 0, 9, 9]).await.unwrap();
    assert!(matches!(short.recv(tessera_suites::plain::LOGITS, s, 0).await, Err(NetError::PeerClosed { .. })));

    // The server still answers correctly.
    let again = query(&config, &model, &x, 4).await.unwrap();
    assert_eq!(again.logits, expected);
    stop.send(true).unwrap();
    for s in servers {
        s.await.unwrap();
    }
    let _ = std::fs::remove_dir_all(temp_dir("serve"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serpens_n_over_tls_serves_concurrent_queries() {
    let config = dev_config_for("serpens", Suite::SerpensN, "lenet-mnist.onnx", 3);
    let (stop, servers) = start_servers(&config).await;
    let model = LoadedModel::load(&repo().join("models/lenet-mnist.onnx")).unwrap();
    let fixed = model.fixed().unwrap();
    let data = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(&data.stratified(8).pixels, data.shape, model.meta());
    let reference = fixed.run(&x, 8).unwrap();
    let bound = model.calibration().unwrap().logit_tolerance;
    // Four queries at once, each on its own sessions.
    let queries = (0..4).map(|i| {
        let (config, model) = (config.clone(), &model);
        let batch = &x[i * 2 * 784..(i + 1) * 2 * 784];
        async move { query(&config, model, batch, 2).await }
    });
    let results = futures::future::join_all(queries).await;
    for (i, r) in results.into_iter().enumerate() {
        let r = r.unwrap();
        for (a, b) in r.logits.iter().zip(&reference[i * 20..(i + 1) * 20]) {
            assert!((*a as f64 - b).abs() <= bound + 1e-6, "query {i}: {a} vs {b}");
        }
        let names: Vec<&str> = r.reports.iter().map(|p| p.party.as_str()).collect();
        assert_eq!(names, ["user", "holder-1", "holder-2", "holder-3", "central"]);
    }
    // A holder that names itself wrongly is refused by S0; the cluster still serves.
    let holder = config.identity(config.parties_with(Role::Holder)[1]).unwrap();
    let central = config.party(Role::Central).unwrap().address.clone().unwrap();
    let mut rogue = connect(&holder, &central, "central", config.timeout(), config.max_frame_bytes).await.unwrap();
    rogue.send(tessera_suites::serpens_n::JOIN, SessionId::random(), 0, b"short").await.unwrap();
    let again = query(&config, &model, &x[..784], 1).await.unwrap();
    assert!((again.logits[0] as f64 - reference[0]).abs() <= bound + 1e-6);
    stop.send(true).unwrap();
    for s in servers {
        s.await.unwrap();
    }
    let _ = std::fs::remove_dir_all(temp_dir("serpens"));
}

#[test]
fn bad_configurations_are_refused() {
    let config = dev_config("bad");
    let path = temp_dir("bad").join("cluster.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let write = |name: &str, t: String| {
        let p = temp_dir("bad").join(name);
        std::fs::write(&p, t).unwrap();
        p
    };
    let cases = [
        ("hash.toml", text.replace(&config.model_hash, &"0".repeat(64))),
        ("suite.toml", text.replace("suite = \"plain\"", "suite = \"telepathy\"")),
        ("role.toml", text.replace("role = \"server\"", "role = \"oracle\"")),
        ("address.toml", text.replace("127.0.0.1:", "nowhere:")),
        ("missing.toml", text.replace("model_hash", "#model_hash")),
        ("unknown.toml", format!("colour = \"blue\"\n{text}")),
    ];
    for (name, t) in cases {
        let p = write(name, t);
        let r = ClusterConfig::load(&p).and_then(|c| c.load_model());
        match (name, r) {
            ("hash.toml", Err(Error::ModelMismatch { .. })) => {}
            (_, Err(Error::Config { problem, .. })) => assert!(!problem.to_string().is_empty()),
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    // Unreadable certificates.
    std::fs::write(temp_dir("bad").join("user.pem"), "garbage").unwrap();
    let c = ClusterConfig::load(&path).unwrap();
    assert!(matches!(c.identity(c.party(Role::User).unwrap()), Err(Error::Net(NetError::Certificate(_)))));
    let _ = std::fs::remove_dir_all(temp_dir("bad"));
}

/// Sends `party` → `server` a bare header of `kind` declaring `len` bytes it never sends, and
/// returns the reason the server gave in its abort.
async fn refusal(
    config: &ClusterConfig,
    party: Role,
    index: usize,
    server: &str,
    kind: MessageKind,
    len: u32,
) -> String {
    let me = config.identity(config.parties_with(party)[index]).unwrap();
    let address = config.parties.iter().find(|p| p.name == server).unwrap().address.clone().unwrap();
    let mut c = connect(&me, &address, server, config.timeout(), config.max_frame_bytes).await.unwrap();
    let session = SessionId::random();
    c.send_raw_for_tests(&FrameHeader { kind, layer: 0, session, len }.encode()).await.unwrap();
    match c.recv(kind, session, 0).await {
        Err(NetError::Aborted { reason, .. }) => reason,
        other => panic!("{server}: {other:?}"),
    }
}

/// The reason a server gives for a frame of `kind` from `peer` above its kind's `max`.
fn oversized(peer: &str, kind: MessageKind, len: u32, max: u32) -> String {
    let error = FrameError::OversizedKind { kind, len, max };
    NetError::Malformed { peer: peer.into(), error }.to_string()
}

/// Every suite's servers refuse, at the header, a frame above its kind's limit (derived from the
/// model and the batch the frame limit allows) and any kind they never receive from that peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_suite_refuses_oversized_and_unexpected_kinds_at_the_header() {
    use tessera_suites::{bayes, clientserver, plain, seco, serpens_2, serpens_n, verify};
    let he = tessera_he::HeParams::standard().unwrap();
    let cases = [
        (Suite::Plain, "minionn-mnist.onnx", 0),
        (Suite::SerpensN, "minionn-mnist.onnx", 2),
        (Suite::Serpens2, "minionn-mnist.onnx", 0),
        (Suite::Verify, "minionn-mnist.onnx", 0),
        (Suite::Bayes, "bayes-minionn-mnist.onnx", 0),
        (Suite::ClientServer, "minionn-mnist.onnx", 0),
        (Suite::Seco, "minionn-mnist.onnx", 0),
    ];
    for (suite, file, holders) in cases {
        let tag = format!("limits-{suite}");
        let config = dev_config_for(&tag, suite, file, holders);
        let (stop, servers) = start_servers(&config).await;
        let model = LoadedModel::load(&repo().join("models").join(file)).unwrap();
        let fixed = model.fixed().unwrap();
        let max = config.max_frame_bytes;
        let holder = tessera_suites::serpens_n::holder_name(1);
        // (sender, its index in its role, server, kind, that kind's limit there)
        let checks: Vec<(Role, usize, &str, MessageKind, u32)> = match suite {
            Suite::Plain => {
                let l = plain::frame_limits(&model.merged, max);
                vec![
                    (Role::User, 0, "server", plain::QUERY, l.max(plain::QUERY)),
                    (Role::User, 0, "server", plain::LOGITS, 0),
                ]
            }
            Suite::Serpens2 => {
                let l = serpens_2::frame_limits(&fixed, &he, max);
                let [s1, s2] = serpens_2::SERVERS;
                vec![
                    (Role::User, 0, s1, serpens_2::INPUT, l.user.max(serpens_2::INPUT)),
                    (Role::User, 0, s2, serpens_2::CORRELATIONS, l.user.max(serpens_2::CORRELATIONS)),
                    (Role::User, 0, s2, serpens_2::OWNED, 0),
                    (Role::ShareServer, 0, s2, serpens_2::JOIN, l.peer.max(serpens_2::JOIN)),
                    (Role::ShareServer, 0, s2, serpens_2::MASKED, l.peer.max(serpens_2::MASKED)),
                    (Role::ShareServer, 0, s2, serpens_2::INPUT, 0),
                ]
            }
            Suite::Verify => {
                let l = verify::frame_limits(&fixed, max);
                vec![
                    (Role::User, 0, "cloud", verify::OFFLOAD, l.max(verify::OFFLOAD)),
                    (Role::User, 0, "cloud", verify::DONE, 0),
                    (Role::User, 0, "cloud", verify::PRODUCT, 0),
                ]
            }
            Suite::Bayes => {
                // A layer of sixteen images and samples is larger than any frame: `LAYER` is
                // bounded by the channel's maximum alone.
                let l = bayes::frame_limits(&fixed, &he, 16).unwrap();
                assert!(l.max(bayes::LAYER) > max);
                vec![
                    (Role::User, 0, "server", bayes::JOIN, l.max(bayes::JOIN)),
                    (Role::User, 0, "server", bayes::DONE, 0),
                    (Role::User, 0, "server", bayes::PRODUCT, 0),
                ]
            }
            Suite::ClientServer => {
                let l = clientserver::frame_limits(&fixed, &he, clientserver::MAX_BATCH).unwrap();
                vec![
                    (Role::User, 0, "server", clientserver::PREPARE, l.max(clientserver::PREPARE)),
                    (Role::User, 0, "server", clientserver::QUERY, l.max(clientserver::QUERY)),
                    (Role::User, 0, "server", clientserver::ENCRYPTED, l.max(clientserver::ENCRYPTED)),
                    (Role::User, 0, "server", clientserver::PRODUCT, 0),
                    (Role::User, 0, "server", clientserver::LOGITS, 0),
                ]
            }
            Suite::Seco => {
                let split = fixed.split(SECO_SPLIT).unwrap();
                let l = seco::frame_limits(Some(&split.prefix), split.suffix.as_deref(), &he).unwrap();
                vec![
                    (Role::User, 0, "gateway", seco::PREPARE, l.user.max(seco::PREPARE)),
                    (Role::User, 0, "gateway", seco::TRANSITION, l.user.max(seco::TRANSITION)),
                    (Role::User, 0, "gateway", seco::LOGITS, 0),
                    (Role::Gateway, 0, "remote-b", seco::LINK, 0),
                    (Role::Gateway, 0, "remote-b", seco::CUT, l.gateway.max(seco::CUT)),
                    (Role::Gateway, 0, "remote-c", seco::OPENING, l.gateway.max(seco::OPENING)),
                    (Role::Gateway, 0, "remote-c", seco::OUTPUT, 0),
                    (Role::Remote, 0, "remote-c", seco::OPEN, l.peer.max(seco::OPEN)),
                    (Role::Remote, 0, "remote-c", seco::CUT, 0),
                ]
            }
            Suite::SerpensN => {
                let l = serpens_n::frame_limits(&fixed, max);
                let central = serpens_n::CENTRAL;
                vec![
                    (Role::User, 0, holder.as_str(), serpens_n::INPUT, l.holder.max(serpens_n::INPUT)),
                    (Role::User, 0, holder.as_str(), serpens_n::OUTPUT, 0),
                    (Role::Holder, 0, central, serpens_n::JOIN, l.central.max(serpens_n::JOIN)),
                    (Role::Holder, 0, central, serpens_n::MASKED, l.central.max(serpens_n::MASKED)),
                    (Role::Holder, 0, central, serpens_n::INPUT, 0),
                ]
            }
        };
        for (role, index, server, kind, limit) in checks {
            assert!(limit < max, "{suite}: {kind:?} may be as large as any frame");
            let from = config.parties_with(role)[index].name.clone();
            let expected = oversized(&from, kind, limit + 1, limit);
            let got = refusal(&config, role, index, server, kind, limit + 1).await;
            assert_eq!(got, expected, "{suite}: {kind:?} from {from} to {server}");
        }
        stop.send(true).unwrap();
        for s in servers {
            s.await.unwrap();
        }
        let _ = std::fs::remove_dir_all(temp_dir(&tag));
    }
}
