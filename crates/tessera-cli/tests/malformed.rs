//! Malformed input of every kind, each run for real (the `tessera` binary, or a channel for
//! frames): each must fail with a clear, typed error and never panic. The table of cases and
//! the errors they gave is `docs/robustness.md`'s first table; this test checks that it is
//! current, and `TESSERA_WRITE_DOCS=1 cargo test -p tessera-cli --test malformed` rewrites it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use prost::Message;
use tessera::net::frame::FrameHeader;
use tessera::net::{Channel, MessageKind, SessionId};
use tessera::onnx::proto::ModelProto;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cases run so far: (input kind, case, first line of the error).
#[derive(Default)]
struct Cases(Vec<(&'static str, String, String)>);

impl Cases {
    /// Runs `tessera args` and records its error.
    fn cli(&mut self, kind: &'static str, case: &str, args: &[&str]) {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(args).current_dir(repo()).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{case}: must fail");
        self.record(kind, case, &err);
    }

    fn record(&mut self, kind: &'static str, case: &str, err: &str) {
        assert!(!err.contains("panicked"), "{case}: {err}");
        let lines: Vec<&str> = err.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect();
        let first = lines.iter().find(|l| l.starts_with("error")).or(lines.first()).copied().unwrap_or("");
        assert!(!first.is_empty(), "{case}: no error message");
        // Multi-line errors (TOML) say what is wrong on their last line.
        let last = lines.last().copied().unwrap_or("");
        let mut line = if last != first && !last.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            format!("{first} … {last}")
        } else {
            first.to_string()
        };
        line = line.trim_start_matches("error: ").to_string();
        let root = std::fs::canonicalize(repo()).unwrap().display().to_string();
        line = line.replace(&format!("{root}/"), "").replace(&format!("{}/", repo().display()), "");
        // Temporary folders carry process ids: name them by their role only.
        let tmp = std::env::temp_dir().display().to_string();
        while let Some(at) = line.find(&format!("{tmp}/")) {
            let rest = &line[at + tmp.len() + 1..];
            let end = rest.find('/').map_or(rest.len(), |e| e + 1);
            line = format!("{}$TMP/{}", &line[..at], &rest[end..]);
        }
        self.0.push((kind, case.to_string(), line));
    }

    fn table(&self) -> String {
        let mut t = String::from("| input | case | error |\n|---|---|---|\n");
        for (kind, case, err) in &self.0 {
            let err = err.replace('|', "\\\\|");
            t.push_str(&format!("| {kind} | {case} | `` {err} `` |\n"));
        }
        t
    }
}

fn temp(name: &str, bytes: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("tessera-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn shipped() -> ModelProto {
    ModelProto::decode(&*std::fs::read(repo().join("models/minionn-mnist.onnx")).unwrap()).unwrap()
}

fn edited(name: &str, edit: impl FnOnce(&mut ModelProto)) -> String {
    let mut m = shipped();
    edit(&mut m);
    temp(name, &m.encode_to_vec())
}

fn onnx_cases(c: &mut Cases) {
    let model = std::fs::read(repo().join("models/minionn-mnist.onnx")).unwrap();
    let mut inspect = |case: &str, path: String| c.cli("ONNX", case, &["inspect", &path]);
    inspect("empty file", temp("empty.onnx", b""));
    inspect("truncated", temp("truncated.onnx", &model[..model.len() / 3]));
    inspect("not protobuf", temp("text.onnx", b"this is not a model at all"));
    inspect("opset 7", edited("opset.onnx", |m| m.opset_import[0].version = Some(7)));
    inspect("unknown op", edited("op.onnx", |m| m.graph.as_mut().unwrap().node[0].op_type = Some("Softplus".into())));
    inspect(
        "missing initializer",
        edited("init.onnx", |m| {
            m.graph.as_mut().unwrap().initializer.remove(0);
        }),
    );
    inspect(
        "NaN weight",
        edited("nan.onnx", |m| {
            let t = &mut m.graph.as_mut().unwrap().initializer[0];
            match t.raw_data.as_mut() {
                Some(raw) => raw[..4].copy_from_slice(&f32::NAN.to_le_bytes()),
                None => t.float_data[0] = f32::NAN,
            }
        }),
    );
    inspect(
        "absurd input dimensions",
        edited("dims.onnx", |m| {
            let input = &mut m.graph.as_mut().unwrap().input[0];
            let shape = input.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
            shape.dim[2].dim_value = Some(1 << 40);
        }),
    );
    inspect(
        "inconsistent weight shape",
        edited("shape.onnx", |m| {
            let t = &mut m.graph.as_mut().unwrap().initializer[0];
            t.dims[0] += 1;
        }),
    );
    inspect(
        "dilation 2",
        edited("dilation.onnx", |m| {
            let conv =
                m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type.as_deref() == Some("Conv")).unwrap();
            conv.attribute.retain(|a| a.name.as_deref() != Some("dilations"));
            conv.attribute.push(tessera::onnx::proto::AttributeProto {
                name: Some("dilations".into()),
                ints: vec![2, 2],
                r#type: Some(7),
                ..Default::default()
            });
        }),
    );
    inspect("missing file", "models/no-such-model.onnx".into());
}

fn image_cases(c: &mut Cases) {
    let png = std::fs::read(repo().join("examples/images/mnist-test00000-7.png")).unwrap();
    let mut infer = |case: &str, path: String| {
        c.cli("image", case, &["infer", "--plain", "models/minionn-mnist.onnx", &path]);
    };
    infer("wrong size (CIFAR image, MNIST model)", "examples/images/cifar10-test03350-cat.png".into());
    infer("truncated PNG", temp("cut.png", &png[..png.len() / 2]));
    infer("empty file", temp("empty.png", b""));
    infer("text named .png", temp("text.png", b"not an image"));
    let npy = |dtype: &str, shape: &str, body: &[u8]| {
        let mut h = format!("{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(body);
        b
    };
    infer("npy of the wrong shape", temp("shape.npy", &npy("|u1", "(3, 28, 28)", &[0; 3 * 784])));
    infer("npy of an unsupported dtype", temp("dtype.npy", &npy("<i8", "(1, 28, 28)", &[0; 8 * 784])));
    infer("npy with NaN", temp("nan.npy", &npy("<f4", "(1, 28, 28)", &f32::NAN.to_le_bytes().repeat(784))));
}

fn frame_cases(c: &mut Cases) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let session = SessionId([7; 16]);
    let header = |kind: u16, layer: u32, len: u32| {
        FrameHeader { kind: MessageKind(kind), layer, session, len }.encode().to_vec()
    };
    // Receives the expected steps (kind, layer, session) in order; the bytes must break one.
    // `close`: the peer closes its end after the bytes (else it stays connected, silent).
    let mut run = |case: &str, bytes: Vec<u8>, close: bool, steps: &[(u16, u32, SessionId)]| {
        let err = rt.block_on(async {
            let (mut ours, mut theirs) = Channel::pair("server", "peer", Duration::from_millis(200), 1 << 20);
            theirs.send_raw_for_tests(&bytes).await.unwrap();
            let mut peer = Some(theirs);
            if close {
                peer.take().unwrap().close().await;
            }
            let mut outcome = Ok(Vec::new());
            for &(kind, layer, s) in steps {
                outcome = ours.recv(MessageKind(kind), s, layer).await;
                if outcome.is_err() {
                    break;
                }
            }
            drop(peer);
            outcome.expect_err("must fail").to_string()
        });
        c.record("frame", case, &err);
    };
    let ok = |kind, layer, len: usize| {
        let mut b = header(kind, layer, len as u32);
        b.extend(vec![0u8; len]);
        b
    };
    let first = [(5, 0, session)];
    run("truncated payload, then closed", [header(5, 0, 100), vec![0; 10]].concat(), true, &first);
    run("oversized length", header(5, 0, u32::MAX), false, &first);
    let mut magic = header(5, 0, 0);
    magic[0] = b'X';
    run("garbled magic", magic, false, &first);
    let mut version = header(5, 0, 0);
    version[2] = 9;
    run("wrong version", version, false, &first);
    run("wrong kind", ok(6, 0, 4), false, &first);
    run("wrong session", ok(5, 0, 4), false, &[(5, 0, SessionId([8; 16]))]);
    run(
        "replayed frame (layer 3 again where layer 5 is next)",
        [ok(5, 3, 4), ok(5, 3, 4)].concat(),
        false,
        &[(5, 3, session), (5, 5, session)],
    );
    run("out of order (layer 5 before layer 3)", ok(5, 5, 4), false, &[(5, 3, session)]);
    run("peer vanished inside a header", header(5, 0, 100)[..20].to_vec(), true, &first);
    run("peer closed before the frame", Vec::new(), true, &first);
    run("silent peer", Vec::new(), false, &first);
}

fn config_cases(c: &mut Cases) {
    let dir = std::env::temp_dir().join(format!("tessera-malformed-cluster-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["certs", "--out", dir.to_str().unwrap(), "--model", "models/minionn-mnist.onnx", "--suite", "serpens-n"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    let mut serve = |case: &str, name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        c.cli("config", case, &["serve", "--role", "holder", "--name", "holder-1", "--config", p.to_str().unwrap()]);
    };
    serve("missing field", "missing.toml", text.replace("model_hash", "#model_hash"));
    serve("unknown field", "unknown.toml", format!("colour = \"blue\"\n{text}"));
    serve("unknown role", "role.toml", text.replacen("role = \"holder\"", "role = \"oracle\"", 1));
    serve("too few holders", "count.toml", text.replacen("role = \"holder\"", "role = \"user\"", 1));
    serve("bad address", "address.toml", text.replace("127.0.0.1:", "nowhere:"));
    serve("model hash mismatch", "hash.toml", {
        let hash = text.lines().find(|l| l.starts_with("model_hash")).unwrap();
        text.replace(hash, &format!("model_hash = \"{}\"", "0".repeat(64)))
    });
    serve("unreadable certificate", "cert.toml", text.replace("holder-1.pem", "nowhere.pem"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn cli_cases(c: &mut Cases) {
    let image = "examples/images/mnist-test00000-7.png";
    c.cli("CLI", "unknown subcommand", &["frobnicate"]);
    c.cli("CLI", "no engine chosen", &["infer", "models/minionn-mnist.onnx", image]);
    c.cli("CLI", "9 holders", &["infer", "--suite", "serpens-n", "--holders", "9", "models/minionn-mnist.onnx", image]);
    c.cli("CLI", "unknown suite", &["infer", "--suite", "telepathy", "models/minionn-mnist.onnx", image]);
    c.cli("CLI", "unknown role", &["serve", "--role", "oracle", "--config", "nowhere.toml"]);
    c.cli("CLI", "unknown network profile", &["bench", "models/minionn-mnist.onnx", "--net", "moon"]);
    c.cli("CLI", "unknown bench suite", &["bench", "models/minionn-mnist.onnx", "--suites", "serpens-9"]);
    c.cli("CLI", "plot neither SVG nor PNG", &["bench", "models/minionn-mnist.onnx", "--plot", "chart.gif"]);
    c.cli("CLI", "bench without a model", &["bench", "--runs", "1"]);
}

#[test]
fn malformed_input_gives_clear_errors_and_the_table_is_current() {
    let mut cases = Cases::default();
    onnx_cases(&mut cases);
    image_cases(&mut cases);
    frame_cases(&mut cases);
    config_cases(&mut cases);
    cli_cases(&mut cases);
    assert!(cases.0.len() >= 30, "{} cases", cases.0.len());
    let doc_path = repo().join("docs/robustness.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (begin, end) = ("<!-- malformed-input table: begin -->\n", "<!-- malformed-input table: end -->");
    let (head, rest) = doc.split_once(begin).expect("table markers in docs/robustness.md");
    let (_, tail) = rest.split_once(end).expect("table end marker");
    let fresh = format!("{head}{begin}{}{end}{tail}", cases.table());
    if std::env::var_os("TESSERA_WRITE_DOCS").is_some() {
        std::fs::write(&doc_path, fresh).unwrap();
    } else {
        assert!(
            fresh == doc,
            "docs/robustness.md is stale: TESSERA_WRITE_DOCS=1 cargo test -p tessera-cli --test malformed"
        );
    }
}
