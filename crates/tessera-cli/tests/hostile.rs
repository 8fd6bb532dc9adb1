//! Hostile peers against real server processes: a serpens-n cluster (MNIST, 2 holders, timeout
//! 2 s, `holder-1` started under `ulimit -n 64`) attacked with valid certificates or with bare
//! TCP. Every attack must be refused with a typed reason while a real query succeeds meanwhile or
//! right after; memory, CPU and descriptors of the attacked process are measured from `/proc`.
//! The results are `docs/robustness.md`'s "hostile peers" table: this test checks that its
//! attacks and outcomes are current, and `TESSERA_WRITE_DOCS=1 cargo test -p tessera-cli --test
//! hostile` rewrites it with this run's measurements.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tessera::cluster::{ClusterConfig, PartyConfig};
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera::local::{LocalCluster, LocalOptions};
use tessera::net::frame::FrameHeader;
use tessera::net::tls::{Identity, connect};
use tessera::net::{Channel, MessageKind, SessionId};
use tessera::suites::serpens_n::{self, INPUT, JOIN};
use tessera::{LoadedModel, Suite, query};

const TIMEOUT: Duration = Duration::from_secs(2);
const FD_LIMIT: usize = 64;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One process's resources, from `/proc`.
#[derive(Debug, Clone, Copy)]
struct Usage {
    rss_kib: u64,
    cpu_ticks: u64,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let rss_kib = rss.split_whitespace().nth(1).unwrap().parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name: state is the first, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let cpu_ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    Usage { rss_kib, cpu_ticks, fds }
}

/// The share of one core `pid` used over `window` (`/proc` counts ticks of 1/100 s).
fn cpu_share(pid: u32, window: Duration) -> f64 {
    let before = usage(pid).cpu_ticks;
    std::thread::sleep(window);
    (usage(pid).cpu_ticks - before) as f64 / 100.0 / window.as_secs_f64()
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

/// The attacks run so far: (attack, what it got, measurements).
#[derive(Default)]
struct Rows(Vec<(String, String, String)>);

impl Rows {
    fn add(&mut self, attack: &str, outcome: &str, measured: &str) {
        self.0.push((attack.into(), outcome.replace('|', "\\|"), measured.into()));
    }

    fn table(&self) -> String {
        let mut t = String::from("| attack | what it gets | measured on the attacked process |\n|---|---|---|\n");
        for (attack, outcome, measured) in &self.0 {
            t.push_str(&format!("| {attack} | `` {outcome} `` | {measured} |\n"));
        }
        t
    }
}

struct Setup {
    cluster: LocalCluster,
    config: ClusterConfig,
    model: LoadedModel,
    x: Vec<f32>,
    reference: Vec<f64>,
    bound: f64,
    rt: tokio::runtime::Runtime,
}

impl Setup {
    fn start() -> Self {
        let path = repo().join("models/minionn-mnist.onnx");
        // holder-1 runs with few descriptors, so that bare TCP connections can exhaust them.
        let launch = |party: &PartyConfig, config: &Path| {
            let mut command = Command::new("sh");
            let limit = if party.name == "holder-1" { FD_LIMIT.to_string() } else { "1024".into() };
            command.args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\"")]);
            command.arg(env!("CARGO_BIN_EXE_tessera"));
            command.args(["serve", "--role", party.role.name(), "--name", &party.name, "--config"]).arg(config);
            command
        };
        let options = LocalOptions { holders: 2, timeout: Some(TIMEOUT), ..Default::default() };
        let cluster = LocalCluster::start(launch, Suite::SerpensN, &path, &options).unwrap();
        let config = cluster.config.clone();
        let model = LoadedModel::load(&path).unwrap();
        let set = Dataset::open(&repo().join("data/mnist-test-200-images.idx")).unwrap();
        let x = normalize(&set.stratified(1).pixels, set.shape, model.meta());
        let reference = model.fixed().unwrap().run(&x, 1).unwrap();
        let bound = model.calibration().unwrap().logit_tolerance;
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        Self { cluster, config, model, x, reference, bound, rt }
    }

    /// A real query from the user, checked against the reference.
    fn real_query(&self) -> Result<(), String> {
        let r = self.rt.block_on(query(&self.config, &self.model, &self.x, 1)).map_err(|e| e.to_string())?;
        for (a, b) in r.logits.iter().zip(&self.reference) {
            assert!((*a as f64 - b).abs() <= self.bound, "{a} vs {b}");
        }
        Ok(())
    }

    fn identity(&self, name: &str) -> Identity {
        self.config.identity(self.config.parties.iter().find(|p| p.name == name).unwrap()).unwrap()
    }

    fn address(&self, name: &str) -> String {
        self.config.parties.iter().find(|p| p.name == name).unwrap().reach_address()
    }

    /// A channel to server `to` as party `me`.
    async fn dial(&self, me: &Identity, to: &str) -> Channel {
        self.dial_waiting(me, to, TIMEOUT).await
    }

    /// The same, its receives waiting up to `timeout`.
    async fn dial_waiting(&self, me: &Identity, to: &str, timeout: Duration) -> Channel {
        connect(me, &self.address(to), to, timeout, self.config.max_frame_bytes).await.unwrap()
    }

    fn pid(&self, name: &str) -> u32 {
        self.cluster.pid(name).unwrap()
    }
}

/// The first three header fields `INPUT` and `JOIN` share, and a seed.
fn placed(index: u32, holders: u32, batch: u32) -> Vec<u8> {
    [index, holders, batch].iter().flat_map(|v| v.to_le_bytes()).chain([0u8; 32]).collect()
}

/// The reason the server gave for ending `session` (its abort frame), or how the wait ended.
async fn answer(ch: &mut Channel, session: SessionId) -> String {
    match ch.recv(MessageKind(0x7fff), session, 0).await {
        Ok(_) => "an answer".into(),
        Err(e) => e.to_string(),
    }
}

fn identities(s: &Setup, rows: &mut Rows) {
    let session = SessionId::random();
    // holder-1's certificate, claiming holder 2's place at S0.
    let holder1 = s.identity("holder-1");
    let got = s.rt.block_on(async {
        let mut ch = s.dial(&holder1, "central").await;
        ch.send(JOIN, session, 0, &placed(2, 2, 1)).await.unwrap();
        answer(&mut ch, session).await
    });
    assert!(got.contains("holder index 2 belongs to holder-2"), "{got}");
    rows.add("`JOIN` from holder-1's certificate claiming index 2", &got, "–");
    // The same holder twice in one query.
    let session = SessionId::random();
    let got = s.rt.block_on(async {
        let mut first = s.dial(&holder1, "central").await;
        first.send(JOIN, session, 0, &placed(1, 2, 1)).await.unwrap();
        let mut second = s.dial(&holder1, "central").await;
        second.send(JOIN, session, 0, &placed(1, 2, 1)).await.unwrap();
        answer(&mut second, session).await
    });
    assert!(got.contains("session already used"), "{got}");
    rows.add("a second `JOIN` of holder-1 for the same session", &got, "–");
    // The user addressing holder-1 as holder 2.
    let user = s.identity("user");
    let session = SessionId::random();
    let got = s.rt.block_on(async {
        let mut ch = s.dial(&user, "holder-1").await;
        let mut input = placed(2, 2, 1);
        input.extend(vec![0u8; 8 * 784]);
        ch.send(INPUT, session, 0, &input).await.unwrap();
        answer(&mut ch, session).await
    });
    assert!(got.contains("addressed as server 2, this is server 1"), "{got}");
    rows.add("`INPUT` for holder 2 sent to holder-1", &got, "–");
    s.real_query().unwrap();
}

fn replay(s: &Setup, rows: &mut Rows) {
    let user = s.identity("user");
    let fixed = s.model.fixed().unwrap();
    let encoded = fixed.encode_input(&s.x, 1).unwrap();
    let classes = s.model.merged.output_len();
    let session = SessionId::random();
    let run = || {
        s.rt.block_on(async {
            let mut holders = vec![s.dial(&user, "holder-1").await, s.dial(&user, "holder-2").await];
            serpens_n::user("user", &mut holders, session, &encoded, 1, classes).await.map_err(|e| e.to_string())
        })
    };
    let first = run().unwrap();
    assert_eq!(first.logits.len(), classes);
    let got = run().unwrap_err();
    assert!(got.contains("session already used"), "{got}");
    // Both holders refuse the replay; which refusal the user reads first is a race.
    let got = got
        .replace("peer holder-1 aborted", "peer holder-1 or holder-2 aborted")
        .replace("peer holder-2 aborted", "peer holder-1 or holder-2 aborted");
    assert!(got.starts_with("peer holder-1 or holder-2 aborted"), "{got}");
    rows.add("a whole query replayed with its session", &got, "–");
}

fn oversized(s: &Setup, rows: &mut Rows) {
    let user = s.identity("user");
    let session = SessionId::random();
    let header = |len: u32| FrameHeader { kind: INPUT, layer: 0, session, len }.encode();
    let (got, waited) = s.rt.block_on(async {
        let mut ch = s.dial(&user, "holder-1").await;
        let start = Instant::now();
        ch.send_raw_for_tests(&header(64 << 20)).await.unwrap();
        (answer(&mut ch, session).await, start.elapsed())
    });
    assert!(got.contains("for message kind 513, above its maximum"), "{got}");
    // Refused on the header: the payload never came, and no deadline passed.
    assert!(waited < TIMEOUT / 2, "{waited:?}");
    rows.add(
        "`INPUT` header declaring 64 MiB (no payload sent)",
        &got,
        &format!("answered in {} ms", waited.as_millis()),
    );
}

/// Opens 16 user connections to holder-1, each declaring an `INPUT` of `len` bytes and sending
/// `sent` of them; measures the holder during the attack and after the deadline. Returns the
/// reason the first connection got, and the measurements.
fn memory(s: &Setup, len: u32, sent: usize) -> (String, String) {
    let user = s.identity("user");
    let pid = s.pid("holder-1");
    let before = usage(pid);
    let session = SessionId::random;
    let (got, peak) = s.rt.block_on(async {
        let mut attackers = Vec::new();
        for _ in 0..16 {
            // Outwaits the server's deadline, so that the server ends the connection.
            let mut ch = s.dial_waiting(&user, "holder-1", 3 * TIMEOUT).await;
            let session = session();
            let mut bytes = FrameHeader { kind: INPUT, layer: 0, session, len }.encode().to_vec();
            bytes.extend(vec![0u8; sent]);
            // A refused frame's payload may find no reader: that is the point.
            let _ = tokio::time::timeout(TIMEOUT / 4, ch.send_raw_for_tests(&bytes)).await;
            attackers.push((ch, session));
        }
        let peak = usage(pid);
        let (ch, session) = &mut attackers[0];
        (answer(ch, *session).await, peak)
    });
    // A real query while the attack's connections end.
    s.real_query().unwrap();
    std::thread::sleep(TIMEOUT);
    let after = usage(pid);
    let grown = peak.rss_kib.saturating_sub(before.rss_kib);
    assert!(grown < 256 * 1024, "grew by {grown} KiB");
    assert!(after.rss_kib < before.rss_kib + 64 * 1024, "{before:?} → {after:?}");
    let measured = format!(
        "RSS {} → {} → {} MiB (before, during, after the deadline); descriptors {} → {} → {}",
        mib(before.rss_kib),
        mib(peak.rss_kib),
        mib(after.rss_kib),
        before.fds,
        peak.fds,
        after.fds
    );
    (got, measured)
}

fn memory_attacks(s: &Setup, rows: &mut Rows) {
    let (got, measured) = memory(s, 64 << 20, 0);
    assert!(got.contains("above its maximum"), "{got}");
    rows.add("16 user connections, each an `INPUT` declaring 64 MiB", &got, &measured);
    // Each within its kind's limit, all but the last byte sent: held until the deadline.
    let fixed = s.model.fixed().unwrap();
    let limit = serpens_n::frame_limits(&fixed, s.config.max_frame_bytes).holder.max(INPUT);
    let (got, measured) = memory(s, limit, limit as usize - 1);
    assert!(got.contains("connection closed"), "{got}");
    rows.add(
        &format!("16 user connections, each an `INPUT` of its largest size ({limit} bytes) but its last byte"),
        &got,
        &measured,
    );
}

fn connections(s: &Setup, rows: &mut Rows) {
    // Bare TCP connections beyond holder-1's descriptor limit.
    let pid = s.pid("holder-1");
    let before = usage(pid);
    let address = s.address("holder-1");
    let idle: Vec<TcpStream> = (0..2 * FD_LIMIT).filter_map(|_| TcpStream::connect(&address).ok()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let held = usage(pid);
    let share = cpu_share(pid, Duration::from_secs(1));
    assert!(held.fds >= FD_LIMIT - 2, "{held:?}");
    assert!(share < 0.10, "{share} of a core with its descriptors exhausted");
    drop(idle);
    // Right after: the handshakes' deadline frees every descriptor.
    std::thread::sleep(TIMEOUT + Duration::from_millis(500));
    s.real_query().unwrap();
    let measured = format!(
        "descriptors {} → {} (limit {FD_LIMIT}); CPU {:.1}% of a core while exhausted",
        before.fds,
        held.fds,
        100.0 * share
    );
    rows.add(
        &format!("{} idle TCP connections (no TLS) to holder-1", 2 * FD_LIMIT),
        "accepts pause (10 ms doubling to 1 s) until handshake deadlines free descriptors; then the query succeeds",
        &measured,
    );
    // TLS connections from one party beyond its share.
    let user = s.identity("user");
    let per_peer = s.config.max_connections_per_peer as usize;
    let got = s.rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..per_peer {
            held.push(s.dial(&user, "holder-2").await);
        }
        let mut extra = s.dial(&user, "holder-2").await;
        answer(&mut extra, SessionId([0; 16])).await
    });
    assert!(got.contains("holds its most connections"), "{got}");
    rows.add(&format!("{} connections from the user to holder-2", per_peer + 1), &got, "–");
    std::thread::sleep(Duration::from_millis(300));
    s.real_query().unwrap();
}

fn key_files(rows: &mut Rows) {
    use std::os::unix::fs::{PermissionsExt, symlink};
    let dir = std::env::temp_dir().join(format!("tessera-hostile-certs-{}", std::process::id()));
    let certs = || {
        let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["certs", "--out", dir.to_str().unwrap(), "--model", "models/minionn-mnist.onnx"])
            .args(["--suite", "serpens-n"])
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    certs();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("user.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let victim = dir.with_extension("victim");
    std::fs::write(&victim, "not a key").unwrap();
    std::fs::remove_file(dir.join("holder-1.key")).unwrap();
    symlink(&victim, dir.join("holder-1.key")).unwrap();
    certs();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a key");
    assert!(std::fs::symlink_metadata(dir.join("holder-1.key")).unwrap().file_type().is_file());
    assert_eq!((mode(&dir), mode(&dir.join("user.key")), mode(&dir.join("holder-1.key"))), (0o700, 0o600, 0o600));
    rows.add(
        "`tessera certs` over a 0755 folder, a 0644 key and a key symlinked elsewhere",
        "folder 0700, key 0600, the link replaced by a new 0600 file and its target untouched",
        "–",
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&victim);
}

#[test]
fn hostile_peers_are_refused_and_the_table_is_current() {
    let mut rows = Rows::default();
    key_files(&mut rows);
    let s = Setup::start();
    s.real_query().unwrap();
    // The local cluster's folder is private and named unpredictably.
    use std::os::unix::fs::PermissionsExt;
    let folder = std::fs::metadata(&s.config.base).unwrap().permissions().mode() & 0o777;
    assert_eq!(folder, 0o700);
    assert!(!s.config.base.display().to_string().contains(&std::process::id().to_string()));
    identities(&s, &mut rows);
    replay(&s, &mut rows);
    oversized(&s, &mut rows);
    memory_attacks(&s, &mut rows);
    connections(&s, &mut rows);
    let doc_path = repo().join("docs/robustness.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let (begin, end) = ("<!-- hostile-peers table: begin -->\n", "<!-- hostile-peers table: end -->");
    let (head, rest) = doc.split_once(begin).expect("table markers in docs/robustness.md");
    let (current, tail) = rest.split_once(end).expect("table end marker");
    if std::env::var_os("TESSERA_WRITE_DOCS").is_some() {
        std::fs::write(&doc_path, format!("{head}{begin}{}{end}{tail}", rows.table())).unwrap();
    } else {
        // Measurements vary from run to run: the attacks and what they get must not.
        let outcomes = |t: &str| -> Vec<String> {
            t.lines().skip(2).map(|l| l.split(" | ").take(2).collect::<Vec<_>>().join(" | ")).collect()
        };
        assert_eq!(
            outcomes(current),
            outcomes(&rows.table()),
            "docs/robustness.md is stale: TESSERA_WRITE_DOCS=1 cargo test -p tessera-cli --test hostile"
        );
    }
}
