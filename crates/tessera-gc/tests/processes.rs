//! The two-party ReLU protocol with the garbler and the evaluator in two separate OS processes,
//! joined by mutual TLS on loopback, and every output checked exactly.
//!
//! The test binary re-executes itself: `relu_across_two_processes_over_mutual_tls` makes a
//! development CA and one certificate per party, draws the evaluator's shares `a` and the
//! garbler's shares `b`, and writes them all into a fresh directory. It then starts this same
//! executable twice, with `TESSERA_GC_ROLE` set to `garbler` or `evaluator` and
//! `TESSERA_GC_DIR` naming the directory, and `main` runs that party instead of the test. The garbler listens on an ephemeral loopback port and publishes it in a file; the
//! evaluator waits for that file, connects, and both run the offline and online phases. Each
//! writes its output shares: the evaluator `out`, the garbler the masks `r` it drew itself; the
//! parent checks that both processes exited successfully within the time limit and that
//! `out[i] = ReLU(a[i] + b[i] mod t) − r[i] mod t` for every `i`, with the signed ReLU (values
//! above `(t − 1)/2` are negative and map to 0).
//!
//! The file has its own `main` (`harness = false`), so a party process is not a test of its own.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use tessera_gc::{
    Layer, MAX_FRAME, Modulus, Nonlinear, evaluator_offline, evaluator_online, garbler_offline, garbler_online,
};
use tessera_net::tls::{Identity, TlsServer, connect};
use tessera_net::{NetError, SessionId, certs};

/// How many ReLUs the layer evaluates.
const N: usize = 4096;
/// The channel timeout inside each party.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the parent waits for both processes before killing them.
const DEADLINE: Duration = Duration::from_secs(60);

const ROLE: &str = "TESSERA_GC_ROLE";
const DIR: &str = "TESSERA_GC_DIR";

fn write_u64s(path: &Path, values: &[u64]) {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn read_u64s(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 8, 0, "{}: not a whole number of u64s", path.display());
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

/// Writes `bytes` to `path` through a temporary name, so a reader never sees a partial file.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A party's TLS credentials from the files the parent wrote.
fn identity(dir: &Path, name: &str) -> Identity {
    Identity::from_files(
        name,
        &dir.join("ca.pem"),
        &dir.join(format!("{name}.cert.pem")),
        &dir.join(format!("{name}.key.pem")),
    )
    .unwrap()
}

fn session(dir: &Path) -> SessionId {
    SessionId(fs::read(dir.join("session")).unwrap().try_into().expect("16 bytes"))
}

fn layer() -> Layer {
    Layer::new(Nonlinear::Relu, Modulus::tessera(), N).unwrap()
}

async fn run_garbler(dir: &Path) {
    let server = TlsServer::new(&identity(dir, "garbler"), TIMEOUT, MAX_FRAME).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    write_atomically(&dir.join("port"), port.to_string().as_bytes());
    let (tcp, _) = tokio::time::timeout(TIMEOUT, listener.accept()).await.expect("the evaluator connects").unwrap();
    let mut ch = server.accept(tcp, &["evaluator".to_string()]).await.unwrap();
    assert_eq!(ch.peer(), "evaluator");

    let (session, shares) = (session(dir), read_u64s(&dir.join("b")));
    let mut rng = ChaCha20Rng::from_os_rng();
    let offline = garbler_offline(&mut ch, session, 0, layer(), &mut rng).await.unwrap();
    let masks = garbler_online(&mut ch, session, 0, offline, shares).await.unwrap();
    let bytes: Vec<u8> = masks.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomically(&dir.join("r"), &bytes);
    // Stay until the evaluator, holding every label, closes: nothing more may arrive.
    match ch.recv_any().await {
        Err(NetError::PeerClosed { .. }) => {}
        other => panic!("the evaluator should close after the online phase, got {other:?}"),
    }
    ch.close().await;
}

async fn run_evaluator(dir: &Path) {
    let port_file = dir.join("port");
    let start = Instant::now();
    let port = loop {
        if let Ok(text) = fs::read_to_string(&port_file) {
            break text.trim().parse::<u16>().unwrap();
        }
        assert!(start.elapsed() < TIMEOUT, "the garbler never published its port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let me = identity(dir, "evaluator");
    let mut ch = connect(&me, &format!("127.0.0.1:{port}"), "garbler", TIMEOUT, MAX_FRAME).await.unwrap();
    assert_eq!(ch.peer(), "garbler");

    let (session, shares) = (session(dir), read_u64s(&dir.join("a")));
    let mut rng = ChaCha20Rng::from_os_rng();
    let offline = evaluator_offline(&mut ch, session, 0, layer(), &mut rng).await.unwrap();
    let out = evaluator_online(&mut ch, session, 0, offline, &shares).await.unwrap();
    let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_atomically(&dir.join("out"), &bytes);
    ch.close().await;
}

/// The test in the parent process; a party in a child process started with `TESSERA_GC_ROLE`.
fn main() {
    match std::env::var(ROLE) {
        Ok(role) => party_process(&role),
        Err(_) => {
            relu_across_two_processes_over_mutual_tls();
            println!("test relu_across_two_processes_over_mutual_tls ... ok");
        }
    }
}

/// One party, run as its own process by the test.
fn party_process(role: &str) {
    let dir = PathBuf::from(std::env::var(DIR).expect("TESSERA_GC_DIR names the shared directory"));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    match role {
        "garbler" => rt.block_on(run_garbler(&dir)),
        "evaluator" => rt.block_on(run_evaluator(&dir)),
        other => panic!("unknown role {other:?}"),
    }
    println!("party {role} done");
}

/// A fresh directory, removed when the test passes (kept for inspection when it fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("tessera-gc-processes-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts this test binary as `role`, its output going to `<role>.log` in `dir`.
fn spawn(role: &str, dir: &Path) -> Child {
    let log = fs::File::create(dir.join(format!("{role}.log"))).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env(DIR, dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits for both children until `deadline`; kills whichever is left after it.
fn wait_both(children: &mut [(&str, Child)], deadline: Instant) -> Vec<Option<ExitStatus>> {
    let mut status: Vec<Option<ExitStatus>> = vec![None; children.len()];
    while status.iter().any(Option::is_none) && Instant::now() < deadline {
        for (s, (_, child)) in status.iter_mut().zip(children.iter_mut()) {
            if s.is_none() {
                *s = child.try_wait().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (s, (_, child)) in status.iter().zip(children.iter_mut()) {
        if s.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    status
}

/// Both parties as processes over mutual TLS; every output share checked exactly.
fn relu_across_two_processes_over_mutual_tls() {
    let dir = TempDir::new();
    let d = dir.0.as_path();

    let (ca, parties) =
        certs::dev_cluster("gc-processes", &[("garbler", certs::KeyUse::Both), ("evaluator", certs::KeyUse::Both)])
            .unwrap();
    fs::write(d.join("ca.pem"), &ca).unwrap();
    for p in &parties {
        fs::write(d.join(format!("{}.cert.pem", p.name)), &p.cert).unwrap();
        let mut key = fs::OpenOptions::new();
        key.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut key, 0o600);
        std::io::Write::write_all(&mut key.open(d.join(format!("{}.key.pem", p.name))).unwrap(), p.key.as_bytes())
            .unwrap();
    }

    let seed = ChaCha20Rng::from_os_rng().next_u64();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let m = Modulus::tessera();
    let a: Vec<u64> = (0..N).map(|_| m.random(&mut rng)).collect();
    let b: Vec<u64> = (0..N).map(|_| m.random(&mut rng)).collect();
    let mut sid = [0u8; 16];
    rng.fill_bytes(&mut sid);
    write_u64s(&d.join("a"), &a);
    write_u64s(&d.join("b"), &b);
    fs::write(d.join("session"), sid).unwrap();

    let started = Instant::now();
    let mut children = vec![("garbler", spawn("garbler", d)), ("evaluator", spawn("evaluator", d))];
    let status = wait_both(&mut children, started + DEADLINE);
    let elapsed = started.elapsed();
    for ((role, _), s) in children.iter().zip(&status) {
        let log = fs::read_to_string(d.join(format!("{role}.log"))).unwrap_or_default();
        match s {
            None => panic!("the {role} did not finish within {DEADLINE:?} (seed {seed}); killed. Its output:\n{log}"),
            Some(s) => assert!(s.success(), "the {role} failed with {s} (seed {seed}). Its output:\n{log}"),
        }
        assert!(log.contains(&format!("party {role} done")), "the {role} ran its role (seed {seed}):\n{log}");
    }

    let (out, r) = (read_u64s(&d.join("out")), read_u64s(&d.join("r")));
    assert_eq!((out.len(), r.len()), (N, N), "one output share per ReLU and party");
    let layer = layer();
    let relu = layer.circuit();
    let mut wrong = Vec::new();
    for i in 0..N {
        let x = m.add(a[i], b[i]);
        let y = if x > (m.t() - 1) / 2 { 0 } else { x };
        assert_eq!(y, relu.reference(&[x]), "the signed ReLU is the circuit's reference");
        let want = m.sub(y, r[i]);
        if out[i] != want {
            wrong.push(i);
        }
    }
    assert!(wrong.is_empty(), "{} of {N} outputs wrong (seed {seed}), first at {:?}", wrong.len(), wrong.first());
    // Both signs occurred, so the check covered both branches of the ReLU.
    let negative = (0..N).filter(|&i| m.add(a[i], b[i]) > m.half()).count();
    assert!(negative > 0 && negative < N, "both signs among the inputs");
    eprintln!("{N} ReLUs across two processes over mutual TLS in {elapsed:?}, all exact (seed {seed})");
}
