//! `tessera bench`: the secure suites side by side on one model (`tessera bench MODEL`), and
//! focused benchmarks (kernels, the plaintext engines, load), each against its baseline in the
//! same process.

mod client;
mod compare;
mod plot;
mod text;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::json;
use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::field::kernels::{ConvF32, ConvKernel, Epilogue, conv2d_zt, conv2d_zt_within, shapes};
use tessera::field::{seed::os_rng, zt};
use tessera::input::normalize;
use tessera::model::ir::Model;
use tessera::model::plain::PlainEngine;

use crate::output::{Table, min_median, print_json};

/// Benchmarks: without a subcommand, the secure suites side by side on MODEL.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    compare: compare::CompareArgs,
}

/// Focused benchmarks.
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
        /// Also time every node of the f32 engine (min / median over the runs).
        #[arg(long)]
        layers: bool,
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
}

/// Minimum, median and maximum of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    /// Fastest.
    pub min: f64,
    /// Median.
    pub median: f64,
    /// Slowest.
    pub max: f64,
}

impl Spread {
    /// The spread of durations given in seconds.
    fn of_seconds(mut seconds: Vec<f64>) -> Self {
        let (min, median) = min_median(&mut seconds);
        let max = seconds.last().copied().unwrap_or(median);
        Self { min: min * 1e3, median: median * 1e3, max: max * 1e3 }
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = if self.median < 1.0 { 3 } else { 2 };
        write!(f, "{:.digits$} / {:.digits$} / {:.digits$}", self.min, self.median, self.max)
    }
}

/// `batch` query images for `m`: the first of the dataset `data`, normalized, or random inputs
/// in `[-1, 1)`, the range of the models' normalized images.
fn query_input(m: &LoadedModel, data: Option<&Path>, batch: usize) -> Result<Vec<f32>> {
    let shape = m.merged.input_shape();
    let Some(d) = data else {
        let mut rng = os_rng();
        return Ok((0..batch * shape.len()).map(|_| (zt::random(&mut rng) % 2000) as f32 / 1000.0 - 1.0).collect());
    };
    let set = Dataset::open(d)?;
    anyhow::ensure!(set.len() >= batch, "{} has fewer than {batch} images", d.display());
    anyhow::ensure!(
        set.shape.len() == shape.len(),
        "{} holds {}×{}×{} images; the model takes {}×{}×{}",
        d.display(),
        set.shape.c,
        set.shape.h,
        set.shape.w,
        shape.c,
        shape.h,
        shape.w
    );
    Ok(normalize(&set.stratified(batch).pixels, set.shape, m.meta()))
}

/// The CPU clock [`cpu_runs`] reads.
#[derive(Clone, Copy)]
enum CpuClock {
    /// Every thread of this process.
    Process,
    /// The calling thread only.
    Thread,
}

impl CpuClock {
    fn now(self) -> std::time::Duration {
        match self {
            CpuClock::Process => cpu_time::ProcessTime::now().as_duration(),
            CpuClock::Thread => cpu_time::ThreadTime::now().as_duration(),
        }
    }
}

/// One warm-up call, then `runs` calls, each one's CPU time on `clock` in seconds.
fn cpu_runs(runs: usize, clock: CpuClock, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..runs.max(1))
        .map(|_| {
            let start = clock.now();
            f();
            (clock.now() - start).as_secs_f64()
        })
        .collect()
}

/// One warm-up call (caches, scratch buffers, thread pool), then `runs` timed calls, in seconds.
fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Runs a benchmark command.
pub fn run(args: BenchArgs) -> Result<()> {
    match args.command {
        None => compare::run(args.compare),
        Some(BenchCommand::Kernels { runs, json }) => kernels(runs, json),
        Some(BenchCommand::Plain { model, data, runs, batch, layers, json }) => {
            plain(&model, data.as_deref(), runs, batch, layers, json)
        }
        Some(BenchCommand::Load { model, data, users, queries, holders, json }) => {
            throughput::load(&model, &data, users, queries, holders, json)
        }
    }
}

fn kernels(runs: usize, json: bool) -> Result<()> {
    let threads = rayon::current_num_threads();
    let mut rng = os_rng();
    let mut rows = Vec::new();
    let (mut zt_total, mut f64_total, mut narrow_total, mut f32_total, mut macs_total) = (0.0, 0.0, 0.0, 0.0, 0.0);
    // Shares of a ring of at most 32 bits, centered: one `f64` limb instead of two.
    let narrow_bound = (1u64 << 31) - 1;
    for (name, g) in shapes::minionn_cifar() {
        // Weights as MiniONN-CIFAR's calibrated model has them: f_w = 9, |w| ≤ 295.
        let w: Vec<i64> = (0..g.out_channels * g.terms()).map(|_| (zt::random(&mut rng) % 591) as i64 - 295).collect();
        let x = zt::random_vec(&mut rng, g.input.len());
        let kernel = ConvKernel::new(g, &w).expect("benchmark shapes are valid");
        let (zt_min, zt_med) = min_median(&mut time_runs(runs, || {
            std::hint::black_box(conv2d_zt(&kernel, &x, 1, threads));
        }));
        // The same product on f64 limbs whichever kernel `conv2d_zt` runs (an unbounded operand
        // keeps the full plan).
        let (f64_min, f64_med) = min_median(&mut time_runs(runs, || {
            std::hint::black_box(conv2d_zt_within(&kernel, &x, u64::MAX, 1, threads));
        }));
        let narrow: Vec<u64> =
            x.iter().map(|&v| zt::from_i64((v % (2 * narrow_bound + 1)) as i64 - narrow_bound as i64)).collect();
        assert_eq!(
            conv2d_zt_within(&kernel, &narrow, narrow_bound, 1, threads),
            conv2d_zt(&kernel, &narrow, 1, threads),
            "one limb computes the same products on shares within the bound"
        );
        let (narrow_min, narrow_med) = min_median(&mut time_runs(runs, || {
            std::hint::black_box(conv2d_zt_within(&kernel, &narrow, narrow_bound, 1, threads));
        }));
        let wf: Vec<f32> = w.iter().map(|&v| v as f32 / 2048.0).collect();
        let xf: Vec<f32> = x.iter().map(|&v| (v % 1000) as f32 / 1000.0).collect();
        let mut out = vec![0.0; g.output().expect("valid").len()];
        let mut cols = Vec::new();
        let conv = ConvF32::new(g, 1, &wf);
        let (f_min, f_med) =
            min_median(&mut time_runs(runs, || conv.run(&xf, 1, threads, &mut cols, &mut out, Epilogue::default())));
        let macs = g.macs() as f64;
        zt_total += zt_med;
        f64_total += f64_med;
        narrow_total += narrow_med;
        f32_total += f_med;
        macs_total += macs;
        rows.push(json!({
            "layer": name, "macs": g.macs(),
            "path": if kernel.vnni_limb_plan().is_some() { "vnni i16" } else { "f64" },
            "limbs": kernel.vnni_limb_plan().unwrap_or(kernel.limb_plan()).count(),
            "zt_ms": { "min": zt_min * 1e3, "median": zt_med * 1e3 },
            "f64_limbs_ms": { "min": f64_min * 1e3, "median": f64_med * 1e3 },
            "narrow_ms": { "min": narrow_min * 1e3, "median": narrow_med * 1e3 }, "f32_ms": { "min": f_min * 1e3, "median": f_med * 1e3 },
            "zt_gmacs": macs / zt_med / 1e9, "f32_gmacs": macs / f_med / 1e9, "ratio_of_f32": f_med / zt_med,
            "narrow_ratio_of_f32": f_med / narrow_med,
        }));
    }
    let summary = json!({ "threads": threads, "runs": runs, "layers": rows, "total": {
        "zt_ms": zt_total * 1e3, "f64_limbs_ms": f64_total * 1e3, "narrow_ms": narrow_total * 1e3, "f32_ms": f32_total * 1e3, "zt_gmacs": macs_total / zt_total / 1e9, "f32_gmacs": macs_total / f32_total / 1e9, "ratio_of_f32": f32_total / zt_total,
        "f64_limbs_ratio_of_f32": f32_total / f64_total,
        "narrow_ratio_of_f32": f32_total / narrow_total } });
    if json {
        print_json(&summary);
        return Ok(());
    }
    let mut t = Table::new(&[
        "layer (MiniONN-CIFAR)",
        "MACs",
        "Z_t limbs",
        "Z_t ms (min/med)",
        "f32 ms (min/med)",
        "Z_t GMAC/s",
        "f32 GMAC/s",
        "Z_t / f32",
        "f64 limbs ms (min/med)",
        "one limb ms (min/med)",
        "one limb / f32",
    ]);
    // A timing's "min / median" cell, and a ratio's "1/x" one.
    let ms = |v: &serde_json::Value| {
        format!("{:.3} / {:.3}", v["min"].as_f64().unwrap_or(0.0), v["median"].as_f64().unwrap_or(0.0))
    };
    let of_f32 = |v: &serde_json::Value| format!("1/{:.2}", 1.0 / v.as_f64().unwrap_or(1.0));
    for r in summary["layers"].as_array().expect("array") {
        t.row(vec![
            r["layer"].as_str().unwrap_or("").into(),
            r["macs"].to_string(),
            format!("{} {}", r["limbs"], r["path"].as_str().unwrap_or("")),
            ms(&r["zt_ms"]),
            ms(&r["f32_ms"]),
            format!("{:.2}", r["zt_gmacs"].as_f64().unwrap_or(0.0)),
            format!("{:.2}", r["f32_gmacs"].as_f64().unwrap_or(0.0)),
            of_f32(&r["ratio_of_f32"]),
            ms(&r["f64_limbs_ms"]),
            ms(&r["narrow_ms"]),
            of_f32(&r["narrow_ratio_of_f32"]),
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
    crate::outln!(
        "the same products on f64 limbs: 1/{:.2} of f32; one f64 limb (shares of a ring of at most 32 bits): 1/{:.2}",
        1.0 / tot["f64_limbs_ratio_of_f32"].as_f64().unwrap_or(1.0),
        1.0 / tot["narrow_ratio_of_f32"].as_f64().unwrap_or(1.0)
    );
    Ok(())
}

fn plain(path: &Path, data: Option<&Path>, runs: usize, batch: usize, layers: bool, json: bool) -> Result<()> {
    let m = LoadedModel::load(path)?;
    let x = query_input(&m, data, batch)?;
    let mut engine = PlainEngine::new(&m.merged);
    let (f_min, f_med) = min_median(&mut time_runs(runs, || {
        std::hint::black_box(engine.run(&x, batch).expect("validated input"));
    }));
    let nodes = layers.then(|| node_times(&m.merged, &mut engine, &x, batch, runs));
    // The fixed-point reference needs a calibration; without one only the f32 engine is timed.
    let fixed = m.calibration().is_some().then(|| m.fixed()).transpose()?;
    let fixed_times = fixed.as_ref().map(|fixed| {
        min_median(&mut time_runs(runs.div_ceil(5), || {
            std::hint::black_box(fixed.run(&x, batch).expect("calibrated input"));
        }))
    });
    let threads = rayon::current_num_threads();
    let v = json!({ "model": path, "batch": batch, "runs": runs, "threads": threads,
        "f32_ms": { "min": f_min * 1e3, "median": f_med * 1e3 },
        "fixed_ms": fixed_times.map(|(q_min, q_med)| json!({ "min": q_min * 1e3, "median": q_med * 1e3 })),
        "fixed_over_f32": fixed_times.map(|(_, q_med)| q_med / f_med), "layers": nodes });
    if json {
        print_json(&v);
        return Ok(());
    }
    if let Some(nodes) = v["layers"].as_array() {
        let mut t = Table::new(&["node", "op", "output", "f32 ms min / median", "share of median"]);
        let total: f64 = nodes.iter().map(|n| n["median_ms"].as_f64().unwrap_or(0.0)).sum();
        for n in nodes {
            let med = n["median_ms"].as_f64().unwrap_or(0.0);
            t.row(vec![
                n["node"].as_str().unwrap_or("").into(),
                n["op"].as_str().unwrap_or("").into(),
                n["output"].as_str().unwrap_or("").into(),
                format!("{:.4} / {:.4}", n["min_ms"].as_f64().unwrap_or(0.0), med),
                format!("{:.1}%", 100.0 * med / total.max(f64::MIN_POSITIVE)),
            ]);
        }
        t.print();
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

/// Every node's `f32` time over `runs` runs of `engine` (min and median, ms), in order.
fn node_times(model: &Model, engine: &mut PlainEngine<'_>, x: &[f32], batch: usize, runs: usize) -> serde_json::Value {
    let mut samples = vec![Vec::with_capacity(runs); model.nodes().len()];
    for _ in 0..runs.max(1) {
        let mut last = Instant::now();
        engine
            .run_observed(x, batch, &mut |node, _| {
                let now = Instant::now();
                samples[node].push((now - last).as_secs_f64());
                last = now;
            })
            .expect("validated input");
    }
    let rows = model.nodes().iter().zip(&mut samples).map(|(node, s)| {
        let (min, median) = min_median(s);
        let shape = node.shape;
        json!({ "node": node.name, "op": node.op.kind(), "output": format!("{}×{}×{}", shape.c, shape.h, shape.w),
            "min_ms": min * 1e3, "median_ms": median * 1e3 })
    });
    serde_json::Value::Array(rows.collect())
}
