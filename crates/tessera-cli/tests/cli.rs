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
/// one query; four flights per nonlinear layer after the key exchange, both ways.
#[test]
fn infer_serpens_2_across_processes() {
    let out = tessera(&[
        "infer",
        "--suite",
        "serpens-2",
        "models/minionn-cifar.onnx",
        "examples/images/cifar10-test00000-airplane.png",
        "examples/images/cifar10-test06700-frog.png",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["results"][0]["label"], 0);
    assert_eq!(v["results"][1]["label"], 6);
    let parties: Vec<&str> = v["parties"].as_array().unwrap().iter().map(|p| p["party"].as_str().unwrap()).collect();
    assert_eq!(parties, ["user", "server-1", "server-2"]);
    let link = |p: usize| v["parties"][p]["links"].as_array().unwrap().iter().find(|l| l["peer"] != "user").cloned();
    let (one, two) = (link(1).unwrap(), link(2).unwrap());
    assert_eq!(one["rounds"], 1 + 4 * 7);
    assert_eq!(one["bytes_sent"], two["bytes_received"]);
    assert!(one["bytes_sent"].as_u64().unwrap() > 2 * 147_456 * 7, "every layer's ciphertexts crossed");
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
    for suite in ["serpens-n", "serpens-2", "plain", "verify"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args([
                "infer",
                "--suite",
                suite,
                "models/minionn-mnist.onnx",
                "examples/images/mnist-test00000-7.png",
                "--json",
            ])
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
