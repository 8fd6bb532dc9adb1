//! `tessera bench`: kernel throughput and plaintext engine latency, each against its baseline in
//! the same process.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::emulate::LinkProfile;
use tessera::input::normalize;
use tessera_field::kernels::{ConvKernel, conv2d_f32, conv2d_zt, shapes};
use tessera_field::{seed::os_rng, zt};
use tessera_model::plain::PlainEngine;

use crate::output::{Table, min_median, print_json};

/// Benchmarks.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// MAC/s of the exact Z_t convolution against f32 on MiniONN-CIFAR's layer shapes.
    Kernels {
        /// Timed runs per kernel and layer.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Latency of the f32 engine and the fixed-point reference on one model.
    Plain {
        /// ONNX model.
        model: PathBuf,
        /// Dataset to take the input image(s) from; random inputs otherwise.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Timed runs.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Images per run.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Load: concurrent users send queries to a local serpens-n cluster; every result is checked
    /// against the fixed-point reference; reports queries/s, latency percentiles, and each
    /// server's memory and open descriptors before and after.
    Load {
        /// ONNX model.
        model: PathBuf,
        /// Dataset the queries' images come from.
        data: PathBuf,
        /// Concurrent users.
        #[arg(long, default_value_t = 8)]
        users: usize,
        /// Queries in total.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Share-holders.
        #[arg(long, default_value_t = 2)]
        holders: usize,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Suite verify: the client's online time (wall and CPU) against running the model itself
    /// in `f32`, in the same run; preprocessing and cloud time; bytes.
    Verify {
        /// ONNX models.
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// Disguise: pad or monomial.
        #[arg(long, default_value = "pad")]
        disguise: String,
        /// Timed queries (after one warm-up query).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Latency of secure suites against the `plain` suite and local f32 inference, in one run:
    /// every party its own process on loopback; bytes per ReLU and rounds per inference.
    Suites {
        /// ONNX models.
        #[arg(required = true)]
        models: Vec<PathBuf>,
        /// Secure suites to run: serpens-n, serpens-2, bayes (a Bayesian model only).
        #[arg(long, value_delimiter = ',', default_value = "serpens-n,serpens-2")]
        suites: Vec<String>,
        /// Holder counts for serpens-n.
        #[arg(long, value_delimiter = ',', default_value = "2,3")]
        holders: Vec<usize>,
        /// Sampled forward passes per query for bayes.
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        samples: Vec<usize>,
        /// Timed queries per suite (after one warm-up query).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Links between the parties: loopback, or an emulated lan or wan (a relay process
        /// thread per connection delays and paces the bytes).
        #[arg(long, default_value = "loopback")]
        net: String,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f(); // warm-up: caches, scratch buffers, thread pool
    (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Runs a benchmark command.
pub fn run(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Kernels { runs, json } => kernels(runs, json),
        BenchCommand::Plain { model, data, runs, batch, json } => plain(&model, data.as_deref(), runs, batch, json),
        BenchCommand::Load { model, data, users, queries, holders, json } => {
            load(&model, &data, users, queries, holders, json)
        }
        BenchCommand::Verify { models, disguise, runs, json } => {
            let disguise = match disguise.as_str() {
                "pad" => tessera_suites::verify::Disguise::Pad,
                "monomial" => tessera_suites::verify::Disguise::Monomial,
                other => anyhow::bail!("unknown disguise `{other}` (pad, monomial)"),
            };
            verify(&models, disguise, runs, json)
        }
        BenchCommand::Suites { models, suites: names, holders, samples, runs, net, json } => {
            let profile = match net.as_str() {
                "loopback" => None,
                other => Some(other.parse().map_err(|e: String| anyhow::anyhow!(e))?),
            };
            if let Some(bad) = names.iter().find(|s| !["serpens-n", "serpens-2", "bayes"].contains(&s.as_str())) {
                anyhow::bail!("unknown secure suite `{bad}` (serpens-n, serpens-2, bayes)");
            }
            suites(&models, &names, (&holders, &samples), runs, profile, json)
        }
    }
}

/// A random input in the model's range and the local `f32` engine's min / median latency on it.
fn f32_baseline(m: &LoadedModel, runs: usize) -> (Vec<f32>, (f64, f64)) {
    let mut rng = os_rng();
    let x: Vec<f32> =
        (0..m.merged.input_shape().len()).map(|_| (zt::random(&mut rng) % 2000) as f32 / 1000.0 - 1.0).collect();
    let mut engine = PlainEngine::new(&m.merged);
    let latency = min_median(&mut time_runs(runs, || {
        std::hint::black_box(engine.run(&x, 1).expect("valid input"));
    }));
    (x, latency)
}

/// One suite's timed queries on one model.
struct SuiteRun {
    latency: (f64, f64),
    /// Every timed query's party reports.
    all_reports: Vec<Vec<tessera_net::PartyReport>>,
}

impl SuiteRun {
    /// The last timed query's party reports.
    fn reports(&self) -> &[tessera_net::PartyReport] {
        self.all_reports.last().map_or(&[], Vec::as_slice)
    }
}

fn run_suite(
    rt: &tokio::runtime::Runtime,
    suite: &str,
    path: &std::path::Path,
    x: &[f32],
    runs: usize,
    options: &tessera::local::LocalOptions,
    query: &tessera::serve::QueryOptions,
) -> Result<SuiteRun> {
    let exe = std::env::current_exe()?;
    let cluster = tessera::local::LocalCluster::start(&exe, suite, path, options)?;
    let model = cluster.config.load_model()?;
    let mut all_reports = Vec::new();
    let mut samples = Vec::new();
    for i in 0..=runs.max(1) {
        let t = Instant::now();
        let r = rt.block_on(tessera::serve::query_with(&cluster.config, &model, x, 1, query))?;
        if i > 0 {
            samples.push(t.elapsed().as_secs_f64());
            all_reports.push(r.reports);
        }
    }
    Ok(SuiteRun { latency: min_median(&mut samples), all_reports })
}

/// The busiest server link of a secure suite's query: its name, bytes both ways and rounds in
/// total, and bytes both ways in the nonlinear layers alone.
fn busiest_link(suite: &str, reports: &[tessera_net::PartyReport]) -> (String, u64, u64, u64) {
    // serpens-n: holder 1 carries the explicit re-shares; serpens-2: the servers' link; bayes:
    // its only link.
    let (party, peer) = match suite {
        "serpens-2" => (tessera_suites::serpens_2::SERVERS[0], tessera_suites::serpens_2::SERVERS[1]),
        "bayes" => ("server", "user"),
        _ => ("holder-1", tessera_suites::serpens_n::CENTRAL),
    };
    let Some(report) = reports.iter().find(|p| p.party == party) else { return (String::new(), 0, 0, 0) };
    let both = |t: &tessera_net::Meter| t.bytes_sent + t.bytes_received;
    let total = report.links.iter().find(|l| l.peer == peer).map_or((0, 0), |l| (both(&l.traffic), l.traffic.rounds));
    let nonlinear = report
        .stages
        .iter()
        .filter(|s| matches!(s.kind.as_str(), "relu" | "maxpool" | "he-linear"))
        .flat_map(|s| s.links.iter().filter(|l| l.peer == peer))
        .map(|l| both(&l.traffic))
        .sum();
    (format!("{party} ↔ {peer}"), total.0, total.1, nonlinear)
}

fn suites(
    models: &[PathBuf],
    names: &[String],
    (holders, samples): (&[usize], &[usize]),
    runs: usize,
    profile: Option<LinkProfile>,
    json: bool,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let net_name = profile.map_or("loopback", |p| p.name);
    let local = |holders| tessera::local::LocalOptions { holders, profile, ..Default::default() };
    let mut rows = Vec::new();
    for path in models {
        let m = LoadedModel::load(path)?;
        let (x, (f32_min, f32_med)) = f32_baseline(&m, runs * 5);
        let relus = tessera_model::cost::total(&m.merged).relus as f64;
        let plain = run_suite(&rt, "plain", path, &x, runs, &local(0), &Default::default())?;
        let configs: Vec<(&str, usize)> = names
            .iter()
            .flat_map(|s| match s.as_str() {
                "serpens-n" => holders.iter().map(|&h| ("serpens-n", h)).collect::<Vec<_>>(),
                "bayes" => samples.iter().map(|&s| ("bayes", s)).collect(),
                _ => vec![("serpens-2", 2)],
            })
            .collect();
        for (suite, h) in configs {
            // bayes: `h` is the number of samples; its one server is not counted.
            let (holders, samples) = if suite == "bayes" { (0, h) } else { (h, 1) };
            let query = tessera::serve::QueryOptions { samples, ..Default::default() };
            let secure = run_suite(&rt, suite, path, &x, runs, &local(holders), &query)?;
            let (link, bytes, rounds, nonlinear) = busiest_link(suite, secure.reports());
            rows.push(json!({
                "model": m.path.file_stem().and_then(|s| s.to_str()), "suite": suite,
                "holders": if suite == "bayes" { 1 } else { h }, "samples": if suite == "bayes" { h } else { 1 },
                "link_bytes": bytes,
                "secure_ms": { "min": secure.latency.0 * 1e3, "median": secure.latency.1 * 1e3 },
                "plain_suite_ms": { "min": plain.latency.0 * 1e3, "median": plain.latency.1 * 1e3 },
                "f32_ms": { "min": f32_min * 1e3, "median": f32_med * 1e3 },
                "vs_plain_suite": secure.latency.1 / plain.latency.1,
                "vs_f32": secure.latency.1 / f32_med,
                "relus": relus, "link": link, "link_bytes_per_relu": bytes as f64 / relus,
                "nonlinear_bytes_per_relu": nonlinear as f64 / relus, "rounds": rounds,
                "parties": secure.reports(),
            }));
        }
    }
    if json {
        print_json(&json!({ "runs": runs, "net": net_name, "results": rows }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "model",
        "suite",
        "servers",
        "secure ms (min/med)",
        "plain suite ms",
        "f32 ms",
        "× plain suite",
        "× f32",
        "busiest link",
        "bytes/ReLU (all / nonlinear)",
        "rounds",
    ]);
    for r in &rows {
        let pair = |k: &str| {
            format!("{:.2} / {:.2}", r[k]["min"].as_f64().unwrap_or(0.0), r[k]["median"].as_f64().unwrap_or(0.0))
        };
        t.row(vec![
            r["model"].as_str().unwrap_or("").to_string(),
            r["suite"].as_str().unwrap_or("").to_string(),
            if r["suite"] == "bayes" { format!("1, S = {}", r["samples"]) } else { r["holders"].to_string() },
            pair("secure_ms"),
            pair("plain_suite_ms"),
            format!(
                "{:.3} / {:.3}",
                r["f32_ms"]["min"].as_f64().unwrap_or(0.0),
                r["f32_ms"]["median"].as_f64().unwrap_or(0.0)
            ),
            format!("{:.2}", r["vs_plain_suite"].as_f64().unwrap_or(0.0)),
            format!("{:.1}", r["vs_f32"].as_f64().unwrap_or(0.0)),
            r["link"].as_str().unwrap_or("").to_string(),
            format!(
                "{:.1} / {:.1}",
                r["link_bytes_per_relu"].as_f64().unwrap_or(0.0),
                r["nonlinear_bytes_per_relu"].as_f64().unwrap_or(0.0)
            ),
            r["rounds"].to_string(),
        ]);
    }
    t.print();
    let link = match profile {
        Some(p) => format!(
            "emulated {} links ({} ms round trip, {} Mbit/s)",
            p.name,
            p.one_way.as_secs_f64() * 2e3,
            p.bits_per_second / 1_000_000
        ),
        None => "loopback".into(),
    };
    crate::outln!("min / median of {runs} queries after a warm-up; every party its own process, mutual TLS, {link}");
    Ok(())
}

fn kernels(runs: usize, json: bool) -> Result<()> {
    let threads = rayon::current_num_threads();
    let mut rng = os_rng();
    let mut rows = Vec::new();
    let (mut zt_total, mut f32_total, mut macs_total) = (0.0, 0.0, 0.0);
    for (name, g) in shapes::minionn_cifar() {
        // Weights as a calibrated model has them: |w| < 2^11 (f_w ≤ 10 bits, |w| < 2).
        let w: Vec<i64> =
            (0..g.out_channels * g.terms()).map(|_| (zt::random(&mut rng) % 4095) as i64 - 2047).collect();
        let x = zt::random_vec(&mut rng, g.input.len());
        let kernel = ConvKernel::new(g, &w).expect("benchmark shapes are valid");
        let (zt_min, zt_med) = min_median(&mut time_runs(runs, || {
            std::hint::black_box(conv2d_zt(&kernel, &x, 1, threads));
        }));
        let wf: Vec<f32> = w.iter().map(|&v| v as f32 / 2048.0).collect();
        let xf: Vec<f32> = x.iter().map(|&v| (v % 1000) as f32 / 1000.0).collect();
        let mut out = vec![0.0; g.output().expect("valid").len()];
        let mut cols = Vec::new();
        let (f_min, f_med) =
            min_median(&mut time_runs(runs, || conv2d_f32(&g, &wf, &xf, 1, threads, &mut cols, &mut out)));
        let macs = g.macs() as f64;
        zt_total += zt_med;
        f32_total += f_med;
        macs_total += macs;
        rows.push(json!({
            "layer": name, "macs": g.macs(), "limbs": kernel.limb_plan().count(),
            "zt_ms": { "min": zt_min * 1e3, "median": zt_med * 1e3 }, "f32_ms": { "min": f_min * 1e3, "median": f_med * 1e3 },
            "zt_gmacs": macs / zt_med / 1e9, "f32_gmacs": macs / f_med / 1e9, "ratio_of_f32": f_med / zt_med,
        }));
    }
    let summary = json!({ "threads": threads, "runs": runs, "layers": rows, "total": {
        "zt_ms": zt_total * 1e3, "f32_ms": f32_total * 1e3, "zt_gmacs": macs_total / zt_total / 1e9, "f32_gmacs": macs_total / f32_total / 1e9, "ratio_of_f32": f32_total / zt_total } });
    if json {
        print_json(&summary);
        return Ok(());
    }
    let mut t = Table::new(&[
        "layer (MiniONN-CIFAR)",
        "MACs",
        "Z_t ms (min/med)",
        "f32 ms (min/med)",
        "Z_t GMAC/s",
        "f32 GMAC/s",
        "Z_t / f32",
    ]);
    for r in summary["layers"].as_array().expect("array") {
        t.row(vec![
            r["layer"].as_str().unwrap_or("").into(),
            r["macs"].to_string(),
            format!(
                "{:.3} / {:.3}",
                r["zt_ms"]["min"].as_f64().unwrap_or(0.0),
                r["zt_ms"]["median"].as_f64().unwrap_or(0.0)
            ),
            format!(
                "{:.3} / {:.3}",
                r["f32_ms"]["min"].as_f64().unwrap_or(0.0),
                r["f32_ms"]["median"].as_f64().unwrap_or(0.0)
            ),
            format!("{:.2}", r["zt_gmacs"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", r["f32_gmacs"].as_f64().unwrap_or(0.0)),
            format!("1/{:.2}", 1.0 / r["ratio_of_f32"].as_f64().unwrap_or(1.0)),
        ]);
    }
    t.print();
    let tot = &summary["total"];
    crate::outln!(
        "all layers (medians): Z_t {:.2} GMAC/s, f32 {:.2} GMAC/s, Z_t = 1/{:.2} of f32 ({threads} threads, {runs} runs)",
        tot["zt_gmacs"].as_f64().unwrap_or(0.0),
        tot["f32_gmacs"].as_f64().unwrap_or(0.0),
        1.0 / tot["ratio_of_f32"].as_f64().unwrap_or(1.0)
    );
    Ok(())
}

fn plain(path: &std::path::Path, data: Option<&std::path::Path>, runs: usize, batch: usize, json: bool) -> Result<()> {
    let m = LoadedModel::load(path)?;
    let shape = m.merged.input_shape();
    let x = match data {
        Some(d) => {
            let set = Dataset::open(d)?;
            let n = batch.min(set.len());
            anyhow::ensure!(n == batch, "the dataset has fewer than {batch} images");
            normalize(set.pixels(0..n), shape, m.meta())
        }
        None => {
            let mut rng = os_rng();
            (0..batch * shape.len()).map(|_| (zt::random(&mut rng) % 2000) as f32 / 1000.0 - 1.0).collect()
        }
    };
    let mut engine = PlainEngine::new(&m.merged);
    let (f_min, f_med) = min_median(&mut time_runs(runs, || {
        std::hint::black_box(engine.run(&x, batch).expect("validated input"));
    }));
    // The fixed-point reference needs a calibration; without one only the f32 engine is timed.
    let fixed = m.calibration.is_some().then(|| m.fixed()).transpose()?;
    let fixed_times = fixed.as_ref().map(|fixed| {
        min_median(&mut time_runs(runs.div_ceil(5), || {
            std::hint::black_box(fixed.run(&x, batch).expect("calibrated input"));
        }))
    });
    let threads = rayon::current_num_threads();
    let v = json!({ "model": path, "batch": batch, "runs": runs, "threads": threads,
        "f32_ms": { "min": f_min * 1e3, "median": f_med * 1e3 },
        "fixed_ms": fixed_times.map(|(q_min, q_med)| json!({ "min": q_min * 1e3, "median": q_med * 1e3 })),
        "fixed_over_f32": fixed_times.map(|(_, q_med)| q_med / f_med) });
    if json {
        print_json(&v);
        return Ok(());
    }
    let fixed = match fixed_times {
        Some((q_min, q_med)) => {
            format!("fixed-point reference {:.3} / {:.3} ms ({:.1}× f32)", q_min * 1e3, q_med * 1e3, q_med / f_med)
        }
        None => "fixed-point reference: not calibrated".into(),
    };
    crate::outln!(
        "{}: batch {batch}, {threads} threads: f32 engine {:.3} ms min / {:.3} ms median; {fixed}",
        path.display(),
        f_min * 1e3,
        f_med * 1e3
    );
    Ok(())
}

/// Resident memory (kB) and open file descriptors of a process.
fn process_usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn load(
    path: &std::path::Path,
    data: &std::path::Path,
    users: usize,
    queries: usize,
    holders: usize,
    json: bool,
) -> Result<()> {
    let exe = std::env::current_exe()?;
    let options = tessera::local::LocalOptions { holders, ..Default::default() };
    let cluster = tessera::local::LocalCluster::start(&exe, "serpens-n", path, &options)?;
    let model = cluster.config.load_model()?;
    let fixed = model.fixed()?;
    let set = Dataset::open(data)?;
    let images = set.len().min(256);
    let x = normalize(set.pixels(0..images), set.shape, model.meta());
    let input_len = model.merged.input_shape().len();
    let classes = model.merged.output_len();
    let reference = fixed.run(&x, images)?;
    let bound = fixed.error_bound() / (fixed.output_bits() as f64).exp2();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let servers: Vec<(String, u32)> =
        cluster.config.parties.iter().filter_map(|p| cluster.pid(&p.name).map(|pid| (p.name.clone(), pid))).collect();
    let bar = indicatif::ProgressBar::new(queries as u64);
    let burst = |queries: usize, bar: &indicatif::ProgressBar| {
        let per_user = queries.div_ceil(users.max(1));
        let tasks = (0..users.max(1)).map(|u| {
            let (config, model, x, reference) = (&cluster.config, &model, &x, &reference);
            async move {
                let mut latencies = Vec::new();
                let mut wrong = 0usize;
                for q in 0..per_user.min(queries.saturating_sub(u * per_user)) {
                    let img = (u * per_user + q) % images;
                    let t = Instant::now();
                    let input = &x[img * input_len..(img + 1) * input_len];
                    let r = tessera::serve::query(config, model, input, 1).await?;
                    latencies.push(t.elapsed().as_secs_f64());
                    let expected = &reference[img * classes..(img + 1) * classes];
                    if r.logits.iter().zip(expected).any(|(a, b)| (*a as f64 - b).abs() > bound) {
                        wrong += 1;
                    }
                    bar.inc(1);
                }
                Ok::<_, tessera::Error>((latencies, wrong))
            }
        });
        rt.block_on(futures::future::try_join_all(tasks))
    };
    // The same load, shorter, first: connection pools, worker threads and allocator arenas
    // reach their steady size before the baseline is taken.
    burst((queries / 10).max(4 * users), &indicatif::ProgressBar::hidden())?;
    let before: Vec<(u64, usize)> = servers.iter().map(|(_, pid)| process_usage(*pid)).collect();
    let start = Instant::now();
    let results = burst(queries, &bar)?;
    let elapsed = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after: Vec<(u64, usize)> = servers.iter().map(|(_, pid)| process_usage(*pid)).collect();
    let mut latencies: Vec<f64> = results.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    let wrong: usize = results.iter().map(|(_, w)| w).sum();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize] * 1e3;
    let done = latencies.len();
    let report = json!({
        "model": path, "users": users, "queries": done, "holders": holders, "wrong": wrong,
        "seconds": elapsed, "queries_per_second": done as f64 / elapsed,
        "latency_ms": { "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0) },
        "servers": servers.iter().zip(before.iter().zip(&after)).map(|((name, _), (b, a))| json!({
            "party": name, "rss_kb_before": b.0, "rss_kb_after": a.0, "fds_before": b.1, "fds_after": a.1,
        })).collect::<Vec<_>>(),
    });
    if json {
        print_json(&report);
    } else {
        crate::outln!(
            "{done} queries from {users} users in {elapsed:.2} s: {:.1} queries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {wrong} wrong results",
            done as f64 / elapsed,
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        let mut t = Table::new(&["server", "RSS before (kB)", "RSS after (kB)", "fds before", "fds after"]);
        for ((name, _), (b, a)) in servers.iter().zip(before.iter().zip(&after)) {
            t.row(vec![name.clone(), b.0.to_string(), a.0.to_string(), b.1.to_string(), a.1.to_string()]);
        }
        t.print();
    }
    if wrong > 0 {
        anyhow::bail!("{wrong} of {done} results differ from the fixed-point reference beyond the bound");
    }
    Ok(())
}

fn verify(models: &[PathBuf], disguise: tessera_suites::verify::Disguise, runs: usize, json: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let mut rows = Vec::new();
    for path in models {
        let m = LoadedModel::load(path)?;
        let (x, (f32_min, f32_med)) = f32_baseline(&m, runs * 5);
        let mut query = tessera::serve::QueryOptions::default();
        query.verify.disguise = disguise;
        let run = run_suite(&rt, "verify", path, &x, runs, &Default::default(), &query)?;
        let party =
            |reports: &[tessera_net::PartyReport], name: &str| reports.iter().find(|p| p.party == name).cloned();
        let ms = |us: u64| us as f64 / 1e3;
        let mut client_wall = Vec::new();
        let mut client_cpu = Vec::new();
        let mut prep = Vec::new();
        let mut cloud_cpu = Vec::new();
        for reports in &run.all_reports {
            let (Some(user), Some(cloud)) = (party(reports, "user"), party(reports, "cloud")) else { continue };
            let pre = user.stages.iter().find(|s| s.kind == "preprocess").map_or(0, |s| s.wall_us);
            client_wall.push(ms(user.wall_us));
            client_cpu.push(ms(user.cpu_us));
            prep.push(ms(pre));
            cloud_cpu.push(ms(cloud.cpu_us));
        }
        let traffic = party(run.reports(), "user").and_then(|u| u.links.first().map(|l| l.traffic)).unwrap_or_default();
        let (cpu_min, cpu_med) = min_median(&mut client_cpu);
        rows.push(json!({
            "model": m.path.file_stem().and_then(|s| s.to_str()),
            "latency_ms": { "min": run.latency.0 * 1e3, "median": run.latency.1 * 1e3 },
            "client_online_wall_ms": { "min": min_median(&mut client_wall).0, "median": min_median(&mut client_wall).1 },
            "client_online_cpu_ms": { "min": cpu_min, "median": cpu_med },
            "preprocess_ms": { "min": min_median(&mut prep).0, "median": min_median(&mut prep).1 },
            "cloud_cpu_ms": { "min": min_median(&mut cloud_cpu).0, "median": min_median(&mut cloud_cpu).1 },
            "f32_ms": { "min": f32_min * 1e3, "median": f32_med * 1e3 },
            "f32_over_client_cpu": f32_med * 1e3 / cpu_med,
            "bytes_sent": traffic.bytes_sent, "bytes_received": traffic.bytes_received, "rounds": traffic.rounds,
            "parties": run.reports(),
        }));
    }
    if json {
        print_json(&json!({ "runs": runs, "results": rows }));
        return Ok(());
    }
    let mut t = Table::new(&[
        "model",
        "query ms",
        "client CPU ms (online)",
        "client wall ms",
        "preprocess ms",
        "cloud CPU ms",
        "local f32 ms",
        "local f32 / client CPU",
        "bytes up / down",
    ]);
    let pair = |v: &serde_json::Value| {
        format!("{:.2} / {:.2}", v["min"].as_f64().unwrap_or(0.0), v["median"].as_f64().unwrap_or(0.0))
    };
    for r in &rows {
        t.row(vec![
            r["model"].as_str().unwrap_or("").to_string(),
            pair(&r["latency_ms"]),
            pair(&r["client_online_cpu_ms"]),
            pair(&r["client_online_wall_ms"]),
            pair(&r["preprocess_ms"]),
            pair(&r["cloud_cpu_ms"]),
            format!(
                "{:.3} / {:.3}",
                r["f32_ms"]["min"].as_f64().unwrap_or(0.0),
                r["f32_ms"]["median"].as_f64().unwrap_or(0.0)
            ),
            format!("{:.3}×", r["f32_over_client_cpu"].as_f64().unwrap_or(0.0)),
            format!("{} / {}", r["bytes_sent"], r["bytes_received"]),
        ]);
    }
    t.print();
    crate::outln!(
        "min / median of {runs} queries after a warm-up; client and cloud separate processes, mutual TLS, loopback"
    );
    Ok(())
}
