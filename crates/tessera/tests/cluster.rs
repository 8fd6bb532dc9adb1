//! The `plain` suite over mutual TLS with the server loop in this process: correct logits,
//! a server that survives misbehaving and vanishing clients, and refused configurations.

use std::path::{Path, PathBuf};

use tessera::LoadedModel;
use tessera::cluster::{ClusterConfig, Role};
use tessera::dataset::Dataset;
use tessera::error::Error;
use tessera::input::normalize;
use tessera::serve::{query, serve};
use tessera_model::plain::PlainEngine;
use tessera_net::tls::connect;
use tessera_net::{NetError, SessionId};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn temp_dir(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tessera-cluster-test-{tag}-{}", std::process::id()))
}

fn dev_config(tag: &str) -> ClusterConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let parties = [("server", Role::Server, Some(format!("127.0.0.1:{port}"))), ("user", Role::User, None)];
    let path =
        ClusterConfig::write_dev(&temp_dir(tag), "plain", &repo().join("models/minionn-mnist.onnx"), &parties).unwrap();
    ClusterConfig::load(&path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_suite_serves_and_survives_bad_clients() {
    let config = dev_config("serve");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let server_config = config.clone();
    let server = tokio::spawn(async move {
        serve(&server_config, Role::Server, |a| ready_tx.send(a).unwrap(), async {
            stopped.await.ok();
        })
        .await
    });
    ready_rx.await.unwrap();

    let model = LoadedModel::load(&repo().join("models/minionn-mnist.onnx")).unwrap();
    let data = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(data.pixels(0..4), data.shape, model.meta());
    let expected = PlainEngine::new(&model.merged).run(&x, 4).unwrap();
    let r = query(&config, &model, &x, 4).await.unwrap();
    assert_eq!(r.logits, expected);
    assert_eq!(r.meter.rounds, 1);
    assert_eq!(r.meter.bytes_sent, 30 + 4 + 4 * 4 * 784);

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
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(temp_dir("serve"));
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
            (_, Err(Error::Config { reason, .. })) => assert!(!reason.is_empty()),
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    // Unreadable certificates.
    std::fs::write(temp_dir("bad").join("user.pem"), "garbage").unwrap();
    let c = ClusterConfig::load(&path).unwrap();
    assert!(matches!(c.identity(c.party(Role::User).unwrap()), Err(Error::Net(NetError::Certificate(_)))));
    let _ = std::fs::remove_dir_all(temp_dir("bad"));
}
