//! The central server's view over the real wire: two holder processes of a local serpens-n
//! cluster serve a query while a stand-in `S0` (at S0's address, with S0's certificate) runs the
//! central protocol and records every frame the holders send it, decrypted from TLS at its end.
//! On those bytes the ratio and gcd attacks recover nothing, every single message is uniform,
//! and the query still gives the right answer.

mod common;

use std::path::{Path, PathBuf};

use tessera::LoadedModel;
use tessera::Role;
use tessera::Suite;
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera::local::LocalOptions;
use tessera::net::Wiretap;
use tessera::net::tls::TlsServer;
use tessera::query;
use tessera::suites::serpens_n::attack::{LayerView, inside_mask_range, ratio, window_gcd};
use tessera::suites::serpens_n::{central, read_join};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn attack_on_what_holder_processes_send_the_central_server_recovers_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let model_path = repo().join("models/minionn-mnist.onnx");
    let options = LocalOptions { holders: 2, ..LocalOptions::default() };
    let mut cluster = common::start_local(Suite::SerpensN, &model_path, &options).expect("local cluster");
    cluster.kill("central").unwrap();
    let config = cluster.config.clone();
    let s0 = config.party(Role::Central).unwrap().clone();
    let identity = config.identity(&s0).unwrap();
    let model = LoadedModel::load(&model_path).unwrap();
    let fixed = model.fixed().unwrap();
    let layers = fixed.nonlinear_layers();
    let set = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
    let x = normalize(set.pixels(0..1), set.shape, model.meta());
    let reference = fixed.run(&x, 1).unwrap();

    let tap = Wiretap::new();
    let result = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(s0.address.clone().unwrap()).await.unwrap();
        let server = TlsServer::new(&identity, config.timeout(), config.max_frame_bytes).unwrap();
        let holders: Vec<String> = config.parties_with(Role::Holder).iter().map(|p| p.name.clone()).collect();
        let stand_in = async {
            let mut joined = Vec::new();
            while joined.len() < holders.len() {
                let accepted = tokio::time::timeout(config.timeout(), listener.accept()).await;
                let (tcp, _) = accepted.expect("a holder connects within the timeout").unwrap();
                let mut channel = server.accept(tcp, &holders).await.unwrap();
                channel.tap(tap.clone());
                let join = read_join(&mut channel, 1).await.unwrap();
                joined.push((channel, join));
            }
            central("central", fixed.params(), &layers, joined).await.unwrap()
        };
        let user = query(&config, &model, &x, 1);
        let (result, _channels) = tokio::join!(user, stand_in);
        result
    });
    let result = result.expect("the query through the stand-in S0");
    for (a, b) in result.logits.iter().zip(&reference) {
        assert!((*a as f64 - b).abs() < 0.25, "{a} vs {b}");
    }

    // The first nonlinear layer's exact input windows (no truncation before it).
    let encoded = fixed.encode_input(&x, 1).unwrap();
    let mut runner = tessera::model::runner::Runner::new(fixed.clone(), encoded, 1, true);
    let first = runner.advance().unwrap();
    let input = runner.pending_input().to_vec();
    let windows: std::collections::HashSet<Vec<i64>> = first
        .gather()
        .chunks(first.arity())
        .map(|w| sorted(w.iter().map(|&i| tessera::field::zt::to_i64(input[i as usize])).collect()))
        .collect();

    let frames = tap.frames();
    let from: std::collections::HashSet<&str> = frames.iter().map(|f| f.from.as_str()).collect();
    assert_eq!(from.len(), 2, "frames from both holder processes");
    let views = LayerView::from_frames(&frames, &layers);
    assert_eq!(views.len(), layers.len());
    let kappa = fixed.params().mask_bits();
    for view in &views {
        for j in 0..2 {
            let hits = ratio(view, j, kappa).iter().flatten().count();
            assert!(hits <= 1, "layer {}: {hits} ratios are possible masks", view.node);
            for part in [view.z_of(j), view.w_of(j)] {
                let inside = inside_mask_range(&part);
                if part.len() >= 2_000 {
                    assert!((0.46..0.54).contains(&inside), "layer {}, holder {}: {inside}", view.node, j + 1);
                }
            }
        }
        let (z, _) = view.sums();
        assert!(inside_mask_range(&z) > 0.999, "the sums carry the masked values");
    }
    // gcd per window finds a window only where k is tiny and every offset a multiple of it
    // (about 0.11% of windows, docs/suites/serpens-n.md).
    let claims = window_gcd(&views[0], kappa);
    let exact = claims.iter().flatten().filter(|w| windows.contains(&sorted(w.to_vec()))).count();
    assert!(exact * 1000 <= claims.len() * 3 + 1000, "{exact} of {} windows recovered", claims.len());
    drop(cluster);
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}
