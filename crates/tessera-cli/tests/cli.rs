//! The `tessera` binary end to end: JSON output, tables, and clear errors with a failing exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tessera(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).current_dir(repo()).output().expect("runs")
}

#[test]
fn infer_plain_json() {
    let out =
        tessera(&["infer", "--plain", "models/minionn-mnist.onnx", "examples/images/mnist-test00000-7.png", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["label"], 7);
    assert_eq!(v["f32_label"], 7);
    assert_eq!(v["logits"].as_array().unwrap().len(), 10);
}

/// A model without its calibration: `infer --plain` gives the f32 result and says how to
/// calibrate; `calibrate` takes a folder of images or an `.npy` batch of pixels, and names a file
/// that does not fit; then `infer --plain` gives the fixed-point result too.
/// `bench plain --layers` times every node of the merged model, in order.
#[test]
fn bench_plain_times_every_node() {
    let out =
        tessera(&["bench", "plain", "models/minionn-mnist.onnx", "--runs", "3", "--batch", "2", "--layers", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let layers = v["layers"].as_array().expect("per-node times");
    let ops: Vec<&str> = layers.iter().map(|n| n["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["Conv", "MaxPool+Relu", "Conv", "MaxPool+Relu", "Reshape", "Dense", "Relu", "Dense"]);
    for n in layers {
        let (min, median) = (n["min_ms"].as_f64().unwrap(), n["median_ms"].as_f64().unwrap());
        assert!(min >= 0.0 && min <= median, "{n}");
    }
    assert_eq!(layers[0]["output"], "16×24×24");
}

#[test]
fn calibrate_from_a_folder_of_images_or_an_npy_batch() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("calibrate-from-files");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let model = dir.join("mnist.onnx");
    std::fs::copy(repo().join("models/minionn-mnist.onnx"), &model).unwrap();
    for name in ["mnist-test00000-7.png", "mnist-test00050-6.png", "mnist-test00100-6.png"] {
        std::fs::copy(repo().join("examples/images").join(name), dir.join("images").join(name)).unwrap();
    }
    std::fs::write(dir.join("images/README.txt"), "not an image").unwrap();
    let (model, images) = (model.to_str().unwrap(), dir.join("images"));
    let image = "examples/images/mnist-test00000-7.png";
    let json = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON object")
    };

    let v = json(tessera(&["infer", "--plain", model, image, "--json"]));
    assert_eq!((v["calibrated"].as_bool(), v["f32_label"].as_u64()), (Some(false), Some(7)));
    assert!(v["hint"].as_str().unwrap().contains("tessera calibrate"), "{v}");

    let v = json(tessera(&["calibrate", model, images.to_str().unwrap(), "--json"]));
    assert_eq!(v["calibration"]["samples"], 3, "the three PNGs, not the text file");
    let v = json(tessera(&["infer", "--plain", model, image, "--json"]));
    assert_eq!((v["label"].as_u64(), v["f32_label"].as_u64()), (Some(7), Some(7)));

    // 16 MNIST test images as one N×1×28×28 array of u8 pixels.
    let idx = std::fs::read(repo().join("data/mnist-test-200-images.idx")).unwrap();
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (16, 1, 28, 28), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<width$}\n", width = 64 * (10 + header.len() + 1).div_ceil(64) - 11);
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    npy.extend_from_slice(&idx[16..16 + 16 * 784]);
    let batch = dir.join("batch.npy");
    std::fs::write(&batch, npy).unwrap();
    let v = json(tessera(&["calibrate", model, batch.to_str().unwrap(), "--samples", "10", "--json"]));
    assert_eq!(v["calibration"]["samples"], 10);

    std::fs::copy(repo().join("examples/images/cifar10-test00000-airplane.png"), images.join("airplane.png")).unwrap();
    let out = tessera(&["calibrate", model, images.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("airplane.png"), "{err}");
}

/// The README's demo: every party its own process, over mutual TLS; two images in one query.
#[test]
fn infer_serpens_n_across_processes() {
    let out = tessera(&[
        "infer",
        "--suite",
        "serpens-n",
        "--holders",
        "3",
        "models/minionn-mnist.onnx",
        "examples/images/mnist-test00000-7.png",
        "examples/images/mnist-test00050-6.png",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["results"][0]["label"], 7);
    assert_eq!(v["results"][1]["label"], 6);
    let parties: Vec<&str> = v["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties, ["user", "holder-1", "holder-2", "holder-3", "central"]);
    // One round trip per nonlinear layer between holder 1 and the central server.
    let holder = &v["parties"][1];
    let link = holder["links"].as_array().unwrap().iter().find(|l| l["peer"] == "central").unwrap();
    assert_eq!(link["rounds"], 3);
}

/// Suite serpens-2 as processes: the user and two servers over mutual TLS, two CIFAR images in
/// one query; five flights per nonlinear layer after the key exchange, both ways (four in the
/// comparison layout, which has no way back to natural order); the user's correlations are its
/// preprocessing.
#[test]
fn infer_serpens_2_across_processes() {
    for (layout, flights) in [("hidden", 5), ("seed", 4)] {
        let out = tessera(&[
            "infer",
            "--suite",
            "serpens-2",
            "--layout",
            layout,
            "models/minionn-cifar.onnx",
            "examples/images/cifar10-test00000-airplane.png",
            "examples/images/cifar10-test06700-frog.png",
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        assert_eq!(v["results"][0]["label"], 0);
        assert_eq!(v["results"][1]["label"], 6);
        let parties: Vec<&str> =
            v["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
        assert_eq!(parties, ["user", "server-1", "server-2"]);
        let link =
            |p: usize| v["parties"][p]["links"].as_array().unwrap().iter().find(|l| l["peer"] != "user").cloned();
        let (one, two) = (link(1).unwrap(), link(2).unwrap());
        assert_eq!(one["rounds"], 1 + flights * 7, "{layout}");
        assert_eq!(one["bytes_sent"], two["bytes_received"]);
        assert!(one["bytes_sent"].as_u64().unwrap() > 2 * 147_456 * 7, "every layer's ciphertexts crossed");
        // The hidden layout's correlations: `Δ` and `Δ'`, 16 bytes per ReLU of the batch.
        let user = v["parties"][0]["links"].as_array().unwrap();
        let sent: u64 = user.iter().map(|l| l["bytes_sent"].as_u64().unwrap()).sum();
        let correlations = if layout == "hidden" { 16 * 2 * 173_056 } else { 0 };
        assert!(sent > correlations && sent < correlations + 200_000, "{layout}: the user sent {sent} bytes");
    }
}

#[test]
fn infer_bayes_across_processes() {
    let out = tessera(&[
        "infer",
        "--suite",
        "bayes",
        "--samples",
        "3",
        "models/bayes-minionn-mnist.onnx",
        "examples/images/mnist-test00000-7.png",
        "examples/images/mnist-test00050-6.png",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["results"][0]["label"], 7);
    assert_eq!(v["results"][1]["label"], 6);
    let samples = v["sample_logits"].as_array().unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].as_array().unwrap().len(), 20);
    assert_ne!(samples[0], samples[1], "every sample draws its own weights");
    let parties: Vec<&str> = v["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties, ["user", "server"]);
    let link = &v["parties"][0]["links"][0];
    // The key, then one round trip per linear layer (two convolutions, two FC layers).
    assert_eq!(link["rounds"], 5);
    assert_eq!(link["bytes_sent"], v["parties"][1]["links"][0]["bytes_received"]);
    // Without a posterior the server refuses to start the suite.
    let out =
        tessera(&["infer", "--suite", "bayes", "models/minionn-mnist.onnx", "examples/images/mnist-test00000-7.png"]);
    assert!(!out.status.success());
}

#[test]
fn inspect_and_eval_json() {
    let out = tessera(&["inspect", "models/lenet-mnist.onnx", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["macs"], 2_293_000);
    assert_eq!(v["merge_report"]["relus_fused"], 2);
    let out = tessera(&[
        "eval",
        "--plain",
        "models/minionn-mnist.onnx",
        "data/mnist-test-200-images.idx",
        "--limit",
        "50",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["report"]["images"], 50);
    assert!(v["report"]["fixed_accuracy"].as_f64().unwrap() > 0.9);
}

#[test]
fn bad_arguments_fail_clearly() {
    for (args, needle) in [
        (vec!["infer", "--plain", "models/nope.onnx", "examples/images/mnist-test00000-7.png"], "nope.onnx"),
        (
            vec!["infer", "--plain", "models/minionn-mnist.onnx", "examples/images/cifar10-test00000-airplane.png"],
            "32×32",
        ),
        (vec!["infer", "models/minionn-mnist.onnx", "examples/images/mnist-test00000-7.png"], "--plain"),
        (vec!["eval", "--plain", "models/minionn-mnist.onnx", "README.md"], "unknown dataset format"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ] {
        let out = tessera(&args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Every party of a query of each suite logs at trace level; no field element (shares, masks,
/// masked values: numbers of 10 or more digits) and no input or output value reaches the logs.
#[test]
fn logs_carry_no_values_at_trace_level() {
    for (suite, model) in [
        ("serpens-n", "minionn-mnist"),
        ("serpens-2", "minionn-mnist"),
        ("plain", "minionn-mnist"),
        ("verify", "minionn-mnist"),
        ("bayes", "bayes-minionn-mnist"),
    ] {
        let model = format!("models/{model}.onnx");
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["infer", "--suite", suite, &model, "examples/images/mnist-test00000-7.png", "--json"])
            .env("RUST_LOG", "trace")
            .current_dir(repo())
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(logs.contains("serving"), "{suite}: the parties log at trace level: {logs}");
        let longest_digits = logs.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
        assert!(longest_digits < 10, "{suite}: a long number in the logs: {logs}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for logit in v["results"][0]["logits"].as_array().unwrap() {
            let text = format!("{:.4}", logit.as_f64().unwrap());
            assert!(!logs.contains(&text), "{suite}: logit {text} in the logs");
        }
    }
}

/// Suite verify across processes: an honest cloud, a cheating one caught, and recomputation.
#[test]
fn infer_verify_catches_a_cheating_cloud() {
    let args = |extra: &[&str]| {
        let mut a =
            vec!["infer", "--suite", "verify", "models/minionn-mnist.onnx", "examples/images/mnist-test00000-7.png"];
        a.extend_from_slice(extra);
        tessera(&a)
    };
    let honest = args(&["--json"]);
    assert!(honest.status.success(), "{}", String::from_utf8_lossy(&honest.stderr));
    let v: serde_json::Value = serde_json::from_slice(&honest.stdout).unwrap();
    assert_eq!(v["results"][0]["label"], 7);
    let cheated = args(&["--cheat", "swap-channels"]);
    assert!(!cheated.status.success());
    let err = String::from_utf8_lossy(&cheated.stderr);
    assert!(err.contains("failed verification") && !err.contains("panicked"), "{err}");
    let recomputed = args(&["--cheat", "noise-channel", "--recompute", "--json"]);
    assert!(recomputed.status.success(), "{}", String::from_utf8_lossy(&recomputed.stderr));
    let v: serde_json::Value = serde_json::from_slice(&recomputed.stdout).unwrap();
    assert_eq!(v["results"][0]["label"], 7);
    assert_eq!(v["recomputed_layers"].as_array().unwrap().len(), 4, "every conv and FC layer of MiniONN-MNIST");
}

/// `tessera bench` on the Bayesian MiniONN-MNIST (its mean network serves every suite; its
/// posterior serves bayes): every suite as processes, one timed query each; the JSON's totals
/// agree with its per-layer and per-link figures, and its ratios with its own baselines.
#[test]
fn bench_compares_every_suite_with_consistent_figures() {
    let dir = std::env::temp_dir().join(format!("tessera-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("suites.png");
    let out = tessera(&[
        "bench",
        "models/bayes-minionn-mnist.onnx",
        "--suites",
        "serpens-n,serpens-2,verify,bayes",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--plot",
        png.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    let u = |v: &serde_json::Value| v.as_u64().unwrap();
    let (f32_median, fixed_median) = (f(&v["baselines"]["f32_ms"]["median"]), f(&v["baselines"]["fixed_ms"]["median"]));
    assert!(f32_median > 0.0 && fixed_median > 0.0);
    let results = v["results"].as_array().unwrap();
    let suites: Vec<&str> = results.iter().map(|r| r["suite"].as_str().unwrap()).collect();
    assert_eq!(suites, ["plain", "serpens-n", "serpens-2", "verify", "bayes"]);
    let plain_median = f(&results[0]["latency_ms"]["median"]);
    for r in results {
        let suite = r["suite"].as_str().unwrap();
        let latency = &r["latency_ms"];
        let (min, median, max) = (f(&latency["min"]), f(&latency["median"]), f(&latency["max"]));
        assert!(0.0 < min && min <= median && median <= max, "{suite}: {latency}");
        assert_eq!(r["latencies_ms"].as_array().unwrap().len(), 1, "{suite}");
        // Ratios come from this run's own baselines.
        assert!((f(&r["vs_f32"]) - median / f32_median).abs() < 1e-9 * median / f32_median, "{suite}");
        assert!((f(&r["vs_fixed"]) - median / fixed_median).abs() < 1e-9 * median / fixed_median, "{suite}");
        if suite != "plain" {
            assert!((f(&r["vs_plain_suite"]) - median / plain_median).abs() < 1e-9 * median, "{suite}");
        }
        let layers = r["layers"].as_array().unwrap();
        let (bytes, rounds) = (u(&r["bytes"]), u(&r["rounds"]));
        assert!(bytes > 0 && rounds > 0, "{suite}: {bytes} bytes, {rounds} rounds");
        assert_eq!(bytes, layers.iter().map(|l| u(&l["bytes"])).sum::<u64>(), "{suite}: bytes by layer");
        assert_eq!(rounds, layers.iter().map(|l| u(&l["rounds"])).sum::<u64>(), "{suite}: rounds by layer");
        let parties = r["parties"].as_array().unwrap();
        let reporting: Vec<&str> = parties.iter().map(|p| p["party"].as_str().unwrap()).collect();
        let links: Vec<&serde_json::Value> = parties.iter().flat_map(|p| p["links"].as_array().unwrap()).collect();
        // Bytes at their sender; a peer without a report (the plain suite's server) where they arrive.
        let by_link: u64 = links
            .iter()
            .map(|l| {
                u(&l["bytes_sent"])
                    + if reporting.contains(&l["peer"].as_str().unwrap()) { 0 } else { u(&l["bytes_received"]) }
            })
            .sum();
        assert_eq!(bytes, by_link, "{suite}: bytes by link");
        assert!(links.iter().all(|l| u(&l["rounds"]) <= rounds), "{suite}: a link with more rounds than the query");
        // The rows are the pacing party's timeline within the query (one query: the median); an
        // input-independent row takes the longest party's time and may overlap the pacing
        // party's first rows (bayes' weight sampling), so only the online rows must fit.
        let time: f64 = layers.iter().map(|l| f(&l["time_ms"])).sum();
        let online_rows: f64 = layers.iter().filter(|l| l["phase"] != "preprocess").map(|l| f(&l["time_ms"])).sum();
        assert!(
            time > 0.3 * median && online_rows <= median * 1.02 + 0.5,
            "{suite}: rows {time} ms ({online_rows} online), query {median} ms"
        );
        let online = f(&r["online_median_ms"]) + f(&r["preprocess_median_ms"]);
        assert!((online - median).abs() < 1e-6 * median || f(&r["preprocess_median_ms"]) > median, "{suite}");
    }
    let by_suite = |s: &str| results.iter().find(|r| r["suite"] == s).unwrap();
    // Layers the model has, by name, in every secure suite; nonlinear layers cost serpens-n and
    // serpens-2 a round each; bayes and verify send every linear layer to the server.
    for suite in ["serpens-n", "serpens-2", "verify", "bayes"] {
        let names: Vec<&str> =
            by_suite(suite)["layers"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap()).collect();
        assert!(names.contains(&"/conv1/Conv") && names.contains(&"/fc2/Gemm"), "{suite}: {names:?}");
    }
    let kinds = |s: &str| -> Vec<(String, u64)> {
        by_suite(s)["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["kind"].as_str().unwrap().to_string(), u(&l["rounds"])))
            .collect()
    };
    assert!(kinds("serpens-n").iter().filter(|(k, _)| k == "maxpool" || k == "relu").all(|(_, r)| *r >= 1));
    assert!(kinds("serpens-2").iter().any(|(k, _)| k == "keys"));
    assert_eq!(kinds("bayes").iter().filter(|(k, r)| k == "he-linear" && *r == 1).count(), 4);
    assert_eq!(kinds("verify").iter().filter(|(k, r)| k == "offloaded" && *r == 1).count(), 4);
    assert_eq!(by_suite("serpens-2")["pacing_party"], "server-1");
    assert_eq!(by_suite("verify")["pacing_party"], "user");
    // The figure: a PNG of the promised size.
    let bytes = std::fs::read(&png).expect("the plot is written");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap())),
        (1600, 1100)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SVG figure names every suite and the network profiles; a model without a posterior
/// skips bayes and says why.
#[test]
fn bench_plots_svg_and_skips_bayes_without_a_posterior() {
    let dir = std::env::temp_dir().join(format!("tessera-bench-svg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("suites.svg");
    let out = tessera(&[
        "bench",
        "models/minionn-mnist.onnx",
        "--suites",
        "verify,bayes",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--users",
        "2",
        "--queries",
        "4",
        "--plot",
        svg.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["skipped"][0]["suite"], "bayes");
    let verify = &v["results"][1];
    assert_eq!(verify["suite"], "verify");
    let t = &verify["throughput"];
    assert_eq!((t["users"].as_u64(), t["queries"].as_u64(), t["wrong"].as_u64()), (Some(2), Some(4), Some(0)));
    assert!(t["queries_per_second"].as_f64().unwrap() > 0.0);
    let text = std::fs::read_to_string(&svg).expect("the plot is written");
    assert!(text.starts_with("<svg"), "{}", &text[..40.min(text.len())]);
    for label in ["plain", "verify", "time per layer", "bytes per layer", "loopback", "offloaded linear layers"] {
        assert!(text.contains(label), "{label} missing from the figure");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Suite seco from the command line: `split-model` writes one file per party and refuses an
/// invalid split point naming the valid ones; `infer --suite seco` runs the local demo (every
/// party its own process over mutual TLS); `certs` on a split folder and `serve` per role run a
/// cluster by hand, which `infer --config` queries with the user's file.
#[test]
fn seco_split_model_serve_and_infer_across_processes() {
    let dir = std::env::temp_dir().join(format!("tessera-seco-cli-{}", std::process::id()));
    let split = dir.join("split");
    let split_arg = split.to_str().unwrap();
    let bad = tessera(&["split-model", "models/minionn-mnist.onnx", "--split", "7", "--out", split_arg]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid split points: [0, 1, 2, 3, 4]"));
    let out = tessera(&["split-model", "models/minionn-mnist.onnx", "--split", "2", "--out", split_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in ["user.tsplit", "gateway.tsplit", "remote-b.tsplit", "remote-c.tsplit"] {
        assert!(split.join(file).is_file(), "{file}");
    }
    let image = "examples/images/mnist-test00000-7.png";
    let bad = tessera(&["infer", "--suite", "seco", "--split", "9", "models/minionn-mnist.onnx", image]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("valid split points: [0, 1, 2, 3, 4]"));
    let bad = tessera(&["infer", "--suite", "plain", "--split", "1", "models/minionn-mnist.onnx", image]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--split cuts the model for suite seco only"));

    // The local demo.
    let six = "examples/images/mnist-test00050-6.png";
    let out = tessera(&["infer", "--suite", "seco", "--split", "1", "models/minionn-mnist.onnx", image, six, "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["results"][0]["label"], 7);
    assert_eq!(v["results"][1]["label"], 6);
    let parties: Vec<&str> = v["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties, ["user", "gateway", "remote-b", "remote-c"]);

    // A cluster by hand: certificates for the split folder, each server started by role, the
    // gateway and B from their own copies of their files.
    let certs = dir.join("certs");
    let port = free_ports(3).to_string();
    let out =
        tessera(&["certs", "--suite", "seco", "--model", split_arg, "--out", certs.to_str().unwrap(), "--port", &port]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = certs.join("cluster.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("model_hash").count(), 5, "the model's and each party's file's");
    let own = dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    let mut servers = Servers(Vec::new());
    for (role, name) in [("gateway", "gateway"), ("remote", "remote-b"), ("remote", "remote-c")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command.args(["serve", "--role", role, "--name", name, "--config"]).arg(&config);
        if name != "remote-c" {
            let copy = own.join(format!("{name}.tsplit"));
            std::fs::copy(split.join(format!("{name}.tsplit")), &copy).unwrap();
            command.arg("--model").arg(&copy);
        }
        let mut child = command.stdout(std::process::Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert!(line.starts_with("listening on"), "{name}: {line}");
        servers.0.push(child);
    }
    let user = split.join("user.tsplit");
    let config_arg = config.to_str().unwrap();
    let out = tessera(&["infer", "--suite", "seco", "--config", config_arg, user.to_str().unwrap(), six, "--json"]);
    // B's shares of another deal are refused by their hash.
    let other = dir.join("other");
    let out_other =
        tessera(&["split-model", "models/minionn-mnist.onnx", "--split", "2", "--out", other.to_str().unwrap()]);
    assert!(out_other.status.success());
    let wrong = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--role", "remote", "--name", "remote-b", "--config", config_arg, "--model"])
        .arg(other.join("remote-b.tsplit"))
        .output()
        .unwrap();
    drop(servers);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["results"][0]["label"], 6);
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("has hash"), "{}", String::from_utf8_lossy(&wrong.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Server processes, killed when dropped (a failing assertion included).
struct Servers(Vec<std::process::Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.0 {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

/// The first of `n` consecutive loopback ports that are free now.
fn free_ports(n: u16) -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if first < u16::MAX - n && (1..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", first + i)).is_ok()) {
            return first;
        }
    }
}
