//! `tessera bench MODEL`: the secure suites side by side on one model, each across its own
//! processes, with the `f32` engine, the fixed-point reference and the `plain` suite measured in
//! the same run: latency, ratios, preprocessing and online time, bytes and rounds per party,
//! link and layer, and optionally throughput under concurrent users.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tessera::cluster::ClusterConfig;
use tessera::cost::QueryCost;
use tessera::emulate::LinkProfile;
use tessera::local::{LocalCluster, LocalOptions};
use tessera::model::passes::Merging;
use tessera::model::plain::PlainEngine;
use tessera::suites::serpens_2::Layout;
use tessera::{LoadedModel, QueryOptions, Suite};

use super::client::ClientSummary;
use super::throughput::{Check, Throughput, Workload, burst, within};
use super::{CpuClock, Spread, cpu_runs, query_input, time_runs};
use crate::output::{min_median, print_json};

/// Options of the suite comparison.
#[derive(Args)]
pub struct CompareArgs {
    /// ONNX model.
    #[arg(required = true)]
    model: Option<PathBuf>,
    /// Secure suites: serpens-n, serpens-2, verify, bayes (bayes is skipped on a model without
    /// a posterior).
    #[arg(long, value_delimiter = ',', default_value = "serpens-n,serpens-2,verify,bayes")]
    suites: Vec<Suite>,
    /// Share-holder counts for serpens-n (one configuration each).
    #[arg(long, value_delimiter = ',', default_value = "2")]
    holders: Vec<usize>,
    /// Sampled forward passes per bayes query (one configuration each).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    samples: Vec<usize>,
    /// verify: how inputs are hidden from the cloud: pad (one-time pad, perfectly hiding), or
    /// monomial-insecure (hides nothing, the cloud recovers the input; to measure its cost).
    #[arg(long, default_value = "pad")]
    disguise: tessera::suites::verify::Disguise,
    /// verify: pad every layer in Z_t (8 bytes a value), not in Z_p (4 bytes) where it fits.
    #[arg(long)]
    wide_pad: bool,
    /// serpens-2: where nonlinear items reach their key owner, one configuration each: hidden
    /// (the default), seed (insecure: the key owner reconstructs the image; for comparison).
    #[arg(long, value_delimiter = ',', default_value = "hidden")]
    layouts: Vec<Layout>,
    /// seco: where to cut the model, weighted layers on the gateway (one configuration each;
    /// 0: every layer on the remote servers). The model's default split point when absent.
    #[arg(long, value_delimiter = ',')]
    split: Vec<usize>,
    /// Ablation: every suite once more without the merging pass's optional steps (pads stay
    /// layers, ReLUs stay apart from max pools; the BatchNorm and average-pool folds that fixed
    /// point needs still run), to measure what those steps save.
    #[arg(long)]
    no_merge: bool,
    /// Links between the parties, one full run each: loopback, or an emulated lan or wan.
    #[arg(long, value_delimiter = ',', default_value = "loopback")]
    net: Vec<String>,
    /// Timed queries per suite and network.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Untimed queries first, per suite and network: a fresh cluster's first few queries are
    /// slower (connection pools, allocator arenas, page faults) by up to 10× on loopback.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Images per query.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Dataset to take the query images from (random inputs in range otherwise).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Throughput: this many concurrent users after the timed queries (0: none).
    #[arg(long, default_value_t = 0)]
    users: usize,
    /// Throughput: queries in total over all users.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Benchmark the running cluster of this configuration (its suite only) instead of local
    /// processes.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Draw per-layer time and bytes per suite and latency per network into an SVG or PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// One suite configuration to run.
#[derive(Debug, Clone)]
struct Config {
    suite: Suite,
    holders: Option<usize>,
    samples: Option<usize>,
    layout: Layout,
    merging: Merging,
    split: Option<usize>,
}

impl Config {
    /// A configuration of `suite` with its defaults.
    fn of(suite: Suite) -> Self {
        Self { suite, holders: None, samples: None, layout: Layout::default(), merging: Merging::Full, split: None }
    }

    fn label(&self) -> String {
        let label = match (self.suite, self.holders, self.samples, self.layout) {
            (Suite::SerpensN, Some(h), ..) => format!("serpens-n ({h} holders)"),
            (Suite::Bayes, _, Some(s), _) => format!("bayes (S = {s})"),
            (Suite::Serpens2, .., Layout::Seed) => "serpens-2 (seed layout, insecure)".into(),
            (Suite::Seco, ..) => match self.split {
                Some(l) => format!("seco (split {l})"),
                None => "seco".into(),
            },
            (suite, ..) => suite.to_string(),
        };
        match self.merging {
            Merging::Full => label,
            Merging::Required => format!("{label}, no merge"),
        }
    }
}

/// Everything one invocation measured (the `--json` object).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model's file stem.
    pub model: String,
    /// The model file.
    pub path: PathBuf,
    /// Timed queries per suite and network.
    pub runs: usize,
    /// Untimed queries before them.
    pub warmup: usize,
    /// Images per query.
    pub batch: usize,
    /// Threads of this process (the `f32` engine and the reference).
    pub threads: usize,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// ReLUs per image (a fused max pool counts one per window).
    pub relus: u64,
    /// The networks run, in order.
    pub nets: Vec<String>,
    /// The plaintext baselines, in this process.
    pub baselines: Baselines,
    /// One entry per suite configuration and network, the `plain` suite first in each network.
    pub results: Vec<SuiteResult>,
    /// Suites asked for but not run, and why.
    pub skipped: Vec<Skipped>,
}

/// The plaintext baselines.
#[derive(Debug, Serialize)]
pub struct Baselines {
    /// The `f32` engine.
    pub f32_ms: Spread,
    /// The `f32` engine's CPU time (all threads of this process).
    pub f32_cpu_ms: Spread,
    /// The `f32` engine on one thread, that thread's CPU time: what a client device spends
    /// running the model itself, on the one thread the verify client uses (and a clock that
    /// counts every instruction: the process clock misses helper threads' running time slices
    /// at this time scale).
    pub f32_one_thread_ms: Spread,
    /// The fixed-point reference (the exact function the secure suites compute).
    pub fixed_ms: Spread,
}

/// A suite that was not run.
#[derive(Debug, Serialize)]
pub struct Skipped {
    /// The suite.
    pub suite: Suite,
    /// Why.
    pub reason: String,
}

/// One suite configuration on one network.
#[derive(Debug, Serialize)]
pub struct SuiteResult {
    /// The suite.
    pub suite: Suite,
    /// Suite and configuration, for people.
    pub label: String,
    /// serpens-n: share-holders.
    pub holders: Option<usize>,
    /// bayes: samples per query.
    pub samples: Option<usize>,
    /// The network profile.
    pub net: String,
    /// What its timed queries measured.
    #[serde(flatten)]
    pub measured: Measured,
    /// Median latency over the `f32` engine's median.
    pub vs_f32: f64,
    /// Median latency over the fixed-point reference's median.
    pub vs_fixed: f64,
    /// Median latency over the `plain` suite's median on the same network (absent for `plain`
    /// and for a running cluster).
    pub vs_plain_suite: Option<f64>,
    /// Concurrent users, when asked for.
    pub throughput: Option<Throughput>,
}

/// What the timed queries of one suite configuration measured.
#[derive(Debug, Serialize)]
pub struct Measured {
    /// End-to-end query latency at the user, connections included.
    pub latency_ms: Spread,
    /// Every timed query's latency, in the order they ran.
    pub latencies_ms: Vec<f64>,
    /// Median over the timed queries of the input-independent stages' time.
    pub preprocess_median_ms: f64,
    /// Median over the timed queries of latency minus preprocessing.
    pub online_median_ms: f64,
    /// The user's CPU time outside preprocessing, median over the timed queries.
    pub user_cpu_median_ms: f64,
    /// Bytes the user sent and received outside preprocessing, median over the timed queries.
    pub user_online_bytes: u64,
    /// verify: the client's operations and online CPU by part, beside the local model.
    pub client: Option<ClientSummary>,
    /// The cost of the query with the median latency: per layer, per party and link, totals.
    #[serde(flatten)]
    pub cost: QueryCost,
}

/// Where the queries go.
enum Target<'a> {
    Local(Box<LocalCluster>),
    Running(&'a ClusterConfig),
}

impl Target<'_> {
    fn config(&self) -> &ClusterConfig {
        match self {
            Target::Local(c) => &c.config,
            Target::Running(c) => c,
        }
    }
}

/// Runs the comparison.
pub fn run(args: CompareArgs) -> Result<()> {
    let Some(path) = args.model.clone() else { bail!("name a model: tessera bench MODEL") };
    if args.suites.contains(&Suite::Plain) {
        bail!("--suites names the secure suites: the plain suite always runs, as the baseline");
    }
    anyhow::ensure!(args.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(args.users == 0 || args.queries >= 1, "--queries must be at least 1 with --users");
    let holders = tessera::suites::serpens_n::HOLDERS;
    if let Some(h) = args.holders.iter().find(|h| !holders.contains(h)) {
        bail!("--holders {h}: {} to {}", holders.start(), holders.end());
    }
    let samples = 1..=tessera::suites::bayes::MAX_SAMPLES;
    if let Some(s) = args.samples.iter().find(|s| !samples.contains(s)) {
        bail!("--samples {s}: 1 to {}", samples.end());
    }
    if args.config.is_some() && args.net.iter().any(|n| n != "loopback") {
        bail!("--net emulates links between local processes; a running cluster (--config) has its own network");
    }
    if let Some(plot) = &args.plot {
        super::plot::format_of(plot)?;
    }
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    let nets: Vec<Option<LinkProfile>> = args
        .net
        .iter()
        .map(|n| match n.as_str() {
            "loopback" => Ok(None),
            other => other.parse().map(Some).map_err(|e: String| anyhow::anyhow!(e)),
        })
        .collect::<Result<_>>()?;
    let running = args.config.as_deref().map(ClusterConfig::load).transpose()?;
    let m = LoadedModel::load(&path).with_context(|| format!("loading {}", path.display()))?;
    if let Some(c) = &running {
        let theirs = c.load_model()?;
        anyhow::ensure!(theirs.hash == m.hash, "{} is not the model the cluster serves", path.display());
    }
    let fixed = m.fixed()?;
    let x = query_input(&m, args.data.as_deref(), args.batch)?;
    let (configs, skipped) = match &running {
        // The cluster's suite, with the first of --samples for bayes.
        Some(c) => {
            let samples = (c.suite == Suite::Bayes).then(|| args.samples.first().copied().unwrap_or(1));
            (vec![Config { samples, ..Config::of(c.suite) }], Vec::new())
        }
        None => configurations(&args, &m),
    };

    let net_names: Vec<String> = match running {
        Some(_) => vec!["configured".into()],
        None => nets.iter().map(|n| n.map_or("loopback", |p| p.name).to_string()).collect(),
    };
    let per_net = configs.len() + usize::from(running.is_none());
    let throughput_queries = if args.users > 0 { args.queries } else { 0 };
    let bar = ProgressBar::new((net_names.len() * per_net * (args.warmup + args.runs + throughput_queries) + 2) as u64)
        .with_style(ProgressStyle::with_template("{msg:32} {bar:40} {pos}/{len} {elapsed}").expect("static template"));

    bar.set_message("f32 engine, fixed point");
    let batch = args.batch;
    let mut engine = PlainEngine::new(&m.merged);
    // Once untimed, so that bad inputs fail here with their error instead of inside the timing.
    engine.run(&x, batch)?;
    let reference = fixed.run(&x, batch)?;
    let f32_ms = Spread::of_seconds(time_runs(args.runs * 5, || {
        std::hint::black_box(engine.run(&x, batch).expect("validated input"));
    }));
    let f32_cpu_ms = Spread::of_seconds(cpu_runs(args.runs * 5, CpuClock::Process, || {
        std::hint::black_box(engine.run(&x, batch).expect("validated input"));
    }));
    let mut one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("a one-thread pool")?
        .install(|| PlainEngine::new(&m.merged));
    let f32_one_thread_ms = Spread::of_seconds(cpu_runs(args.runs * 5, CpuClock::Thread, || {
        std::hint::black_box(one_thread.run(&x, batch).expect("validated input"));
    }));
    bar.inc(1);
    let fixed_ms = Spread::of_seconds(time_runs(args.runs, || {
        std::hint::black_box(fixed.run(&x, batch).expect("calibrated input"));
    }));
    bar.inc(1);

    // The user of a timed query runs on one thread, as a client device would; concurrent users
    // (throughput) share a multi-threaded runtime.
    let one_user = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cost = tessera::model::cost::total(&m.merged);
    let launch = crate::cluster::launcher(None)?;
    let mut results = Vec::new();
    let bound = m.calibration().map_or(0.0, |c| c.logit_tolerance);
    for (profile, net) in nets.iter().zip(&net_names) {
        let plain = Config::of(Suite::Plain);
        let mut plain_median = None;
        let all = if running.is_none() { std::iter::once(&plain).chain(&configs).collect() } else { vec![&configs[0]] };
        for config in all {
            let target = match &running {
                Some(c) => Target::Running(c),
                None => {
                    let options = LocalOptions {
                        holders: config.holders.unwrap_or(0),
                        profile: *profile,
                        merging: config.merging,
                        split: config.split,
                        ..Default::default()
                    };
                    let cluster = LocalCluster::start(launch.clone(), config.suite, &path, &options)
                        .with_context(|| format!("starting a local {} cluster", config.suite))?;
                    Target::Local(Box::new(cluster))
                }
            };
            let mut query = QueryOptions { samples: config.samples.unwrap_or(1), ..Default::default() };
            query.verify.disguise = args.disguise;
            query.verify.narrow_pad = !args.wide_pad;
            query.layout = config.layout;
            bar.set_message(format!("{} on {net}", config.label()));
            let ablated;
            let model = match config.merging {
                Merging::Full => &m,
                Merging::Required => {
                    ablated = LoadedModel::load_merged(&path, Merging::Required)?;
                    &ablated
                }
            };
            let work = Workload { config: target.config(), model, batch, options: &query };
            let config_fixed = model.fixed()?;
            let names = |n: u32| config_fixed.node_name(n as usize).to_string();
            let local = Local { f32_one_thread_ms: f32_one_thread_ms.median, macs: cost.macs * batch as u64 };
            let measured = measure(&one_user, work, &names, &x, (args.warmup, args.runs), local, &bar)
                .with_context(|| format!("{} on {net}", config.label()))?;
            let median = measured.latency_ms.median;
            if config.suite == Suite::Plain {
                plain_median = Some(median);
            }
            let mut result = SuiteResult {
                suite: config.suite,
                label: config.label(),
                holders: config.holders,
                samples: config.samples,
                net: net.clone(),
                measured,
                vs_f32: median / f32_ms.median,
                vs_fixed: median / fixed_ms.median,
                vs_plain_suite: plain_median.filter(|_| config.suite != Suite::Plain).map(|p| median / p),
                throughput: None,
            };
            if args.users > 0 {
                bar.set_message(format!("{} on {net}: {} users", config.label(), args.users));
                // Secure suites that compute the fixed-point model exactly are checked against it.
                let exact = config.suite.is_exact();
                let check = |_: usize, logits: &[f32]| within(logits, &reference, bound);
                let check: Option<Check<'_>> = if exact { Some(&check) } else { None };
                let inputs = [x.clone()];
                result.throughput = Some(
                    burst(&rt, work, &inputs, (args.users, args.queries), check, &bar)
                        .with_context(|| format!("{} on {net}: throughput", config.label()))?,
                );
            }
            results.push(result);
        }
    }
    bar.finish_and_clear();

    let report = Report {
        model: path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string(),
        path: path.clone(),
        runs: args.runs,
        warmup: args.warmup,
        batch,
        threads: rayon::current_num_threads(),
        macs: cost.macs,
        relus: cost.relus,
        nets: net_names,
        baselines: Baselines { f32_ms, f32_cpu_ms, f32_one_thread_ms, fixed_ms },
        results,
        skipped,
    };
    if let Some(plot) = &args.plot {
        super::plot::draw(plot, &report).with_context(|| format!("drawing {}", plot.display()))?;
    }
    if args.json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        super::text::print(&report, &nets);
    }
    Ok(())
}

/// The configurations to run on `m`, and the suites skipped.
fn configurations(args: &CompareArgs, m: &LoadedModel) -> (Vec<Config>, Vec<Skipped>) {
    let mut configs = Vec::new();
    let mut skipped = Vec::new();
    for &suite in &args.suites {
        match suite {
            Suite::SerpensN => {
                configs.extend(args.holders.iter().map(|&h| Config { holders: Some(h), ..Config::of(suite) }))
            }
            Suite::Serpens2 => configs.extend(args.layouts.iter().map(|&l| Config { layout: l, ..Config::of(suite) })),
            Suite::Bayes if m.posterior.is_none() => skipped
                .push(Skipped { suite, reason: "the model has no posterior (bayes needs a Bayesian model)".into() }),
            Suite::Bayes => {
                configs.extend(args.samples.iter().map(|&s| Config { samples: Some(s), ..Config::of(suite) }))
            }
            Suite::Plain | Suite::Verify | Suite::ClientServer => configs.push(Config::of(suite)),
            Suite::Seco if args.split.is_empty() => configs.push(Config::of(suite)),
            Suite::Seco => configs.extend(args.split.iter().map(|&l| Config { split: Some(l), ..Config::of(suite) })),
        }
    }
    if args.no_merge {
        let ablations: Vec<Config> =
            configs.iter().map(|c| Config { merging: Merging::Required, ..c.clone() }).collect();
        configs.extend(ablations);
    }
    (configs, skipped)
}

/// Running the model locally, what a verify client is set against.
#[derive(Clone, Copy)]
struct Local {
    /// The one-thread `f32` engine's median CPU time.
    f32_one_thread_ms: f64,
    /// The model's multiply-accumulates for the whole batch.
    macs: u64,
}

/// `warmup` untimed queries of `work` on `x`, then `runs` timed ones; the breakdown is the
/// median query's, its nodes named by `names`; a verify client is set against `local`.
fn measure(
    rt: &tokio::runtime::Runtime,
    work: Workload<'_>,
    names: &dyn Fn(u32) -> String,
    x: &[f32],
    (warmup, runs): (usize, usize),
    local: Local,
    bar: &ProgressBar,
) -> Result<Measured> {
    let Workload { config, model, batch, options: query } = work;
    let mut timed: Vec<(f64, QueryCost)> = Vec::with_capacity(runs);
    let mut clients = Vec::new();
    for i in 0..warmup + runs {
        let start = Instant::now();
        let r = rt.block_on(tessera::query_with(config, model, x, batch as u32, query))?;
        let seconds = start.elapsed().as_secs_f64();
        bar.inc(1);
        if i >= warmup {
            timed.push((seconds, QueryCost::from_reports(&r.reports, r.connect, names)));
            clients.extend(r.client_cost().copied());
        }
    }
    let client = ClientSummary::of(&clients, local.f32_one_thread_ms, local.macs);
    let latencies_ms: Vec<f64> = timed.iter().map(|(s, _)| s * 1e3).collect();
    let latency_ms = Spread::of_seconds(timed.iter().map(|(s, _)| *s).collect());
    let median = |mut v: Vec<f64>| min_median(&mut v).1;
    let user = |c: &QueryCost| c.parties.first().map_or(0.0, |p| p.cpu_ms - p.preprocess_cpu_ms);
    let preprocess_median_ms = median(timed.iter().map(|(_, c)| c.preprocess_ms).collect());
    let online_median_ms = median(timed.iter().map(|(s, c)| (s * 1e3 - c.preprocess_ms).max(0.0)).collect());
    let user_cpu_median_ms = median(timed.iter().map(|(_, c)| user(c)).collect());
    let user_bytes = |c: &QueryCost| {
        c.parties.first().map_or(0, |p| {
            let all: u64 = p.links.iter().map(|l| l.traffic.bytes_sent + l.traffic.bytes_received).sum();
            all - p.preprocess_bytes.min(all)
        })
    };
    let user_online_bytes = median(timed.iter().map(|(_, c)| user_bytes(c) as f64).collect()) as u64;
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (_, cost) = timed.swap_remove(timed.len() / 2);
    Ok(Measured {
        latency_ms,
        latencies_ms,
        preprocess_median_ms,
        online_median_ms,
        user_cpu_median_ms,
        user_online_bytes,
        client,
        cost,
    })
}
