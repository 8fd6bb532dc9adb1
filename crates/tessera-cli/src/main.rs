//! `tessera`: private CNN inference. This binary is a thin layer over the `tessera` library.

mod bench;
mod cluster;
mod output;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tessera::dataset::Dataset;
use tessera::eval::{argmax, evaluate, sampled_accuracy};
use tessera::input::{load_input, load_samples, normalize};
use tessera::model::cost::{node_cost, total};
use tessera::model::plain::PlainEngine;
use tessera::suites::verify::Cheat;
use tessera::{LoadedModel, Role, ServeOptions, Suite};

use crate::output::{Table, fmt_count, print_json};

/// Parties move megabytes per layer through short-lived buffers; mimalloc keeps that memory
/// mapped instead of returning it to the kernel and faulting it back in every layer.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Private CNN inference over secret-shared images.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    /// More logging (-v info, -vv debug, -vvv trace). Logs go to stderr and never carry values.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// `tessera infer`.
#[derive(Args)]
struct InferArgs {
    /// Run in the clear, in this process: the f32 engine and the fixed-point reference.
    #[arg(long, conflicts_with = "suite")]
    plain: bool,
    /// Run a suite across parties: local processes with fresh certificates, or the running
    /// cluster of --config.
    #[arg(long)]
    suite: Option<Suite>,
    /// Cluster configuration of running servers (with --suite).
    #[arg(long, requires = "suite")]
    config: Option<PathBuf>,
    /// Share-holders of a local serpens-n cluster (2 to 8).
    #[arg(long, default_value_t = 2)]
    holders: usize,
    /// verify: how inputs are hidden from the cloud: `pad` (one-time pad, perfectly hiding;
    /// the only private choice) or `monomial-insecure` (permuted, scaled im2col columns:
    /// hides nothing, the cloud recovers the input; for measurements only).
    #[arg(long, default_value = "pad")]
    disguise: tessera::suites::verify::Disguise,
    /// verify: bits of the challenge set Z (|Z| = 2^bits); 0 means all of Z_t.
    #[arg(long, default_value_t = 0)]
    challenge_bits: u32,
    /// verify: independent challenges per layer.
    #[arg(long, default_value_t = 1)]
    repetitions: usize,
    /// verify: recompute a layer locally when its product fails the check.
    #[arg(long)]
    recompute: bool,
    /// verify: offload every layer in Z_t (8 bytes a value), not in Z_p (4 bytes) where the
    /// layer's products fit.
    #[arg(long)]
    wide_pad: bool,
    /// bayes: sampled forward passes averaged into the prediction (1 to 16).
    #[arg(long, default_value_t = tessera::query::DEFAULT_SAMPLES)]
    samples: usize,
    /// verify, local cluster: make the cloud cheat (flip-one, noise-channel, stale,
    /// swap-channels, other-input, bias-pattern, last-image, outside-field, short, long).
    #[arg(long, value_parser = cheat_name)]
    cheat: Option<String>,
    /// serpens-2: where a nonlinear layer's items reach their key owner: `hidden` (in an
    /// order it does not know; the default) or `seed` (at their positions: insecure, the key
    /// owner reconstructs the image; for comparing costs only).
    #[arg(long, default_value = "hidden")]
    layout: tessera::suites::serpens_2::Layout,
    /// seco, local cluster: cut the model after this many weighted layers (convolutions and FC
    /// layers); the first valid point that leaves layers on both sides when not given.
    #[arg(long)]
    split: Option<usize>,
    /// ONNX model (seco with --config: the user's file of the split model).
    model: PathBuf,
    /// PNG, JPEG or .npy image; with --suite, several images go as one batch in one query.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Layers, shapes, parameters, MACs, ReLUs and what the merging pass changed.
    Inspect {
        /// ONNX model.
        model: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Classify one image.
    Infer(Box<InferArgs>),
    /// Accuracy on a labelled set, f32 and fixed point, and their agreement.
    Eval {
        /// Run in the clear.
        #[arg(long)]
        plain: bool,
        /// ONNX model.
        model: PathBuf,
        /// Dataset: *images*.idx[.gz] (labels beside it), CIFAR-10 *.bin, or MedMNIST *.npz.
        data: PathBuf,
        /// Evaluate only N images, drawn across the classes.
        #[arg(long)]
        limit: Option<usize>,
        /// Bayesian models: also the meta-prediction's accuracy with each of these numbers of
        /// sampled forward passes (mean softmax, as suite bayes computes it).
        #[arg(long, value_delimiter = ',')]
        samples: Vec<usize>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Choose f, f_w and the bound ℓx from sample images; write MODEL's .calibration.json.
    Calibrate {
        /// ONNX model.
        model: PathBuf,
        /// Sample images: a folder of PNG or JPEG images, an `.npy` batch (N×C×H×W, u8 pixels or
        /// normalized f32), or a dataset (*images*.idx[.gz], CIFAR-10 *.bin, MedMNIST *.npz).
        data: PathBuf,
        /// Number of sample images (the first ones).
        #[arg(long, default_value_t = 64)]
        samples: usize,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Cut a model for suite seco: one file per party (user, gateway, remote-b, remote-c), the
    /// weights after the cut dealt as two uniform shares from the OS CSPRNG.
    SplitModel {
        /// ONNX model (calibrated).
        model: PathBuf,
        /// The calibration to use instead of the one beside the model.
        #[arg(long)]
        calibration: Option<PathBuf>,
        /// Weighted layers (convolutions and FC layers) before the cut.
        #[arg(long)]
        split: usize,
        /// Output folder (made private).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one party of a cluster until SIGINT or SIGTERM.
    Serve {
        /// The party's role.
        #[arg(long)]
        role: Role,
        /// The party's name, where several parties share the role.
        #[arg(long)]
        name: Option<String>,
        /// A verify cloud that cheats (tests and demos): flip-one, noise-channel, stale,
        /// swap-channels, other-input, bias-pattern, last-image, outside-field, short, long.
        #[arg(long)]
        cheat: Option<Cheat>,
        /// clientserver: preprocessed queries kept per user connection (at least 1).
        #[arg(long, default_value_t = tessera::serve::DEFAULT_POOL, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
        pool: usize,
        /// clientserver: GiB of preprocessed material kept over all connections.
        #[arg(long, default_value_t = tessera::serve::DEFAULT_POOL_GIB, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
        pool_memory: usize,
        /// Cluster configuration.
        #[arg(long)]
        config: PathBuf,
        /// seco: the party's own file of the split model, instead of the one its entry names
        /// (its hash must still be the entry's `model_hash`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Make a development CA, per-party certificates and a cluster configuration.
    Certs {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Model every party will load (its hash goes into the configuration); for suite seco,
        /// the folder `tessera split-model` wrote.
        #[arg(long)]
        model: PathBuf,
        /// Suite.
        #[arg(long, default_value = "plain")]
        suite: Suite,
        /// Share-holders (suite serpens-n).
        #[arg(long, default_value_t = 2)]
        holders: usize,
        /// First listening port on 127.0.0.1; each server party takes the next one.
        #[arg(long, default_value_t = 7001)]
        port: u16,
    },
    /// Benchmarks: `tessera bench MODEL` runs the secure suites side by side; subcommands run
    /// focused benchmarks.
    Bench(Box<bench::BenchArgs>),
}

fn main() {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // rustls at debug and trace level dumps handshake bytes; logs never carry bytes, so it stops
    // at info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level))
        .add_directive("rustls=info".parse().expect("static directive"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = run(cli.command) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// A `--cheat` value, checked (a local cluster passes it on to the cloud's command line).
fn cheat_name(s: &str) -> std::result::Result<String, String> {
    s.parse::<Cheat>().map(|_| s.to_string())
}

fn load(path: &std::path::Path) -> Result<LoadedModel> {
    LoadedModel::load(path).with_context(|| format!("loading {}", path.display()))
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Inspect { model, json } => inspect(&load(&model)?, json),
        Command::Infer(args) => infer(*args),
        Command::Serve { role, name, cheat, pool, pool_memory, config, model } => {
            let options = ServeOptions { cheat: cheat.unwrap_or(Cheat::Honest), pool, pool_bytes: pool_memory << 30 };
            cluster::serve(role, name.as_deref(), options, &config, model.as_deref())
        }
        Command::SplitModel { model, calibration, split, out } => {
            let mut m = load(&model)?;
            if let Some(path) = calibration {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                m.set_calibration(serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?);
            }
            let paths = tessera::split::write_split(&m, split, &out)?;
            let valid = m.fixed()?.split_points();
            crate::outln!(
                "split {} after {split} weighted layers (valid split points: {valid:?}) into {}:",
                model.display(),
                out.display()
            );
            for (party, path) in [("user", &paths.user), ("gateway", &paths.gateway)]
                .into_iter()
                .chain([("remote B", &paths.remotes[0]), ("remote C", &paths.remotes[1])])
            {
                crate::outln!("  {party}: {}", path.display());
            }
            Ok(())
        }
        Command::Certs { out, model, suite, holders, port } => cluster::certs(&out, &model, suite, holders, port),
        Command::Eval { plain, model, data, limit, samples, json } => {
            if !plain {
                bail!("choose an engine: --plain");
            }
            eval(&load(&model)?, &data, limit, &samples, json)
        }
        Command::Calibrate { model, data, samples, json } => {
            let mut m =
                LoadedModel::load_uncalibrated(&model).with_context(|| format!("loading {}", model.display()))?;
            let samples = samples.max(1);
            let is_npy = data.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
            let (x, n) = if data.is_dir() || is_npy {
                load_samples(&data, m.merged.input_shape(), m.meta(), samples)?
            } else {
                let set = Dataset::open(&data)?;
                let n = samples.min(set.len());
                (normalize(set.pixels(0..n), set.shape, m.meta()), n)
            };
            let cal = m.calibrate(&x, n)?.clone();
            let path = m.save_calibration()?;
            if json {
                print_json(&json!({ "calibration": cal, "written": path }));
            } else {
                crate::outln!(
                    "f = {}, f_w = {}, ℓx = {} bits, σ = {} bits (max |activation| {:.2}, mean |logit error| {:.4} on {} images)\nwritten to {}",
                    cal.f,
                    cal.f_w,
                    cal.bound_bits,
                    cal.statistical_security,
                    cal.max_abs_activation,
                    cal.mean_abs_logit_error,
                    cal.samples,
                    path.display()
                );
            }
            Ok(())
        }
        Command::Bench(cmd) => bench::run(*cmd),
    }
}

fn infer(args: InferArgs) -> Result<()> {
    let InferArgs {
        plain,
        suite,
        config,
        holders,
        disguise,
        challenge_bits,
        repetitions,
        recompute,
        wide_pad,
        samples,
        cheat,
        layout,
        split,
        model,
        images,
        json,
    } = args;
    match (plain, suite) {
        (true, _) if images.len() == 1 => infer_plain(&load(&model)?, &images[0], json),
        (true, _) => bail!("--plain classifies one image; batches run with --suite"),
        (false, Some(suite)) => {
            let challenge = match challenge_bits {
                0 => tessera::suites::verify::Challenge::Field,
                b if tessera::suites::verify::CHALLENGE_BITS.contains(&b) => {
                    tessera::suites::verify::Challenge::Bits(b)
                }
                b => bail!(
                    "--challenge-bits {b}: at most {} (0 for all of Z_t)",
                    tessera::suites::verify::CHALLENGE_BITS.end()
                ),
            };
            if suite == Suite::Verify && disguise == tessera::suites::verify::Disguise::MonomialInsecure {
                tracing::warn!("--disguise monomial-insecure hides nothing from the cloud: it recovers the input");
            }
            if suite == Suite::Serpens2 && layout == tessera::suites::serpens_2::Layout::Seed {
                tracing::warn!("--layout seed keeps positions: the key owner reconstructs the image");
            }
            let verify = tessera::suites::verify::ClientSettings {
                disguise,
                challenge,
                repetitions: repetitions.max(1),
                recompute_on_failure: recompute,
                narrow_pad: !wide_pad,
            };
            if split.is_some() && suite != Suite::Seco {
                bail!("--split cuts the model for suite seco only");
            }
            let local = tessera::local::LocalOptions { holders, split, ..Default::default() };
            if !(1..=tessera::suites::bayes::MAX_SAMPLES).contains(&samples) {
                bail!("--samples {samples}: 1 to {}", tessera::suites::bayes::MAX_SAMPLES);
            }
            let query = tessera::QueryOptions { verify, samples, layout };
            let target = cluster::Target { suite, config: config.as_deref(), local, cheat };
            cluster::infer(&target, &query, &model, &images, json)
        }
        (false, None) => bail!("choose --plain (in this process) or --suite NAME (across parties)"),
    }
}

fn inspect(m: &LoadedModel, json: bool) -> Result<()> {
    let layers: Vec<_> = m
        .merged
        .nodes()
        .iter()
        .map(|n| {
            let c = node_cost(n);
            json!({ "name": n.name, "op": n.op.kind(), "output": [n.shape.c, n.shape.h, n.shape.w], "params": c.params, "macs": c.macs, "relus": c.relus })
        })
        .collect();
    let (before, after) = (total(&m.original), total(&m.merged));
    let cal = m.calibration();
    let fixed = cal.map(|_| m.fixed()).transpose()?;
    let reveals =
        fixed.as_ref().map(|f| json!({ "per_image": f.masked_reveals(), "distance_log2": f.reveal_distance_log2() }));
    if json {
        print_json(&json!({
            "model": m.path, "meta": m.meta(), "input": [m.merged.input_shape().c, m.merged.input_shape().h, m.merged.input_shape().w],
            "layers": layers, "total": after, "original_total": before, "merge_report": m.report, "calibration": cal,
            "masked_reveals": reveals,
            "posterior": m.posterior.as_ref().map(|p| json!({ "layers": p.layers().len(), "median_sigma": p.median_sigma() })),
        }));
        return Ok(());
    }
    let s = m.merged.input_shape();
    crate::outln!(
        "{} ({}, {} classes), input {}×{}×{}",
        m.path.display(),
        m.meta().dataset,
        m.merged.output_len(),
        s.c,
        s.h,
        s.w
    );
    let mut t = Table::new(&["layer", "op", "output", "params", "MACs", "ReLUs"]);
    for n in m.merged.nodes() {
        let c = node_cost(n);
        t.row(vec![
            n.name.clone(),
            n.op.kind().into(),
            format!("{}×{}×{}", n.shape.c, n.shape.h, n.shape.w),
            fmt_count(c.params),
            fmt_count(c.macs),
            fmt_count(c.relus),
        ]);
    }
    t.row(vec![
        "total".into(),
        String::new(),
        String::new(),
        fmt_count(after.params),
        fmt_count(after.macs),
        fmt_count(after.relus),
    ]);
    t.print();
    let r = &m.report;
    crate::outln!(
        "merging pass: {} → {} layers ({} BatchNorm folded, {} pad folded, {} ReLU fused with max pool, {} average pool → sum pool); {} multiplications and {} ReLUs saved per image",
        r.layers_before,
        r.layers_after,
        r.batchnorms_folded,
        r.pads_folded,
        r.relus_fused,
        r.avgpools_folded,
        fmt_count(r.multiplications_saved),
        fmt_count(r.relus_before - r.relus_after)
    );
    match (cal, &fixed) {
        (Some(c), Some(fixed)) => {
            crate::outln!(
                "fixed point: f = {}, f_w = {}, ℓx = {} bits, statistical security σ = {} bits",
                c.f,
                c.f_w,
                c.bound_bits,
                c.statistical_security
            );
            crate::outln!(
                "masked reveals: {} per image, each hiding its value to statistical distance 2^-{}; one image's query to 2^{:.1} in all",
                fmt_count(fixed.masked_reveals() as u64),
                c.statistical_security - 1,
                fixed.reveal_distance_log2()
            );
        }
        _ => crate::outln!("fixed point: not calibrated (tessera calibrate)"),
    }
    Ok(())
}

fn infer_plain(m: &LoadedModel, image: &std::path::Path, json: bool) -> Result<()> {
    let x = load_input(image, m.merged.input_shape(), m.meta())?;
    let start = std::time::Instant::now();
    let logits = PlainEngine::new(&m.merged).run(&x, 1)?;
    let f32_time = start.elapsed();
    let class = |i: usize| m.meta().classes.get(i).cloned().unwrap_or_else(|| i.to_string());
    if m.calibration().is_none() {
        // The f32 result needs no calibration; the fixed-point one (what the suites compute) does.
        let label = argmax(&logits);
        let hint = format!(
            "not calibrated, so no fixed-point result: `tessera calibrate {} IMAGES` (a folder of images, an .npy batch or a dataset) writes it",
            m.path.display()
        );
        if json {
            print_json(&json!({
                "engine": "plain", "f32_label": label, "class": class(label), "f32_logits": logits,
                "f32_ms": f32_time.as_secs_f64() * 1e3, "calibrated": false, "hint": hint,
            }));
        } else {
            crate::outln!("label {label} ({}) from f32", class(label));
            let mut t = Table::new(&["class", "f32 logit"]);
            for (i, a) in logits.iter().enumerate() {
                t.row(vec![class(i), format!("{a:.4}")]);
            }
            t.print();
            crate::outln!("f32 {:.3} ms; {hint}", f32_time.as_secs_f64() * 1e3);
        }
        return Ok(());
    }
    let fixed = m.fixed()?;
    let start = std::time::Instant::now();
    let fixed_logits = fixed.run(&x, 1)?;
    let fixed_time = start.elapsed();
    let label = argmax(&fixed_logits);
    if json {
        print_json(&json!({
            "engine": "plain", "label": label, "class": class(label), "logits": fixed_logits,
            "f32_label": argmax(&logits), "f32_logits": logits,
            "f32_ms": f32_time.as_secs_f64() * 1e3, "fixed_ms": fixed_time.as_secs_f64() * 1e3,
        }));
        return Ok(());
    }
    crate::outln!("label {label} ({})", class(label));
    let mut t = Table::new(&["class", "f32 logit", "fixed-point logit"]);
    for (i, (a, b)) in logits.iter().zip(&fixed_logits).enumerate() {
        t.row(vec![class(i), format!("{a:.4}"), format!("{b:.4}")]);
    }
    t.print();
    crate::outln!("f32 {:.3} ms, fixed point {:.3} ms", f32_time.as_secs_f64() * 1e3, fixed_time.as_secs_f64() * 1e3);
    Ok(())
}

fn eval(m: &LoadedModel, data: &std::path::Path, limit: Option<usize>, samples: &[usize], json: bool) -> Result<()> {
    let max = tessera::suites::bayes::MAX_SAMPLES;
    if let Some(s) = samples.iter().find(|s| !(1..=max).contains(*s)) {
        bail!("--samples {s}: 1 to {max}");
    }
    let set = Dataset::open(data)?;
    let n = limit.unwrap_or(set.len()).min(set.len());
    let bar = ProgressBar::new(n as u64)
        .with_style(ProgressStyle::with_template("{bar:40} {pos}/{len} images {eta}").expect("static template"));
    let r = evaluate(m, &set, limit, &mut |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let sampled = if samples.is_empty() { Vec::new() } else { sampled_accuracy(m, &set, limit, samples)? };
    if json {
        let sampled: Vec<_> = sampled.iter().map(|(s, a)| json!({ "samples": s, "accuracy": a })).collect();
        print_json(&json!({ "model": m.path, "data": data, "report": r, "sampled": sampled }));
        return Ok(());
    }
    let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
    let mut t = Table::new(&[
        "images",
        "f32 accuracy",
        "fixed-point accuracy",
        "label agreement",
        "max |Δlogit|",
        "mean |Δlogit|",
    ]);
    t.row(vec![
        r.images.to_string(),
        pct(Some(r.f32_accuracy)),
        pct(r.fixed_accuracy),
        pct(r.label_agreement),
        r.max_logit_difference.map_or("-".into(), |v| format!("{v:.4}")),
        r.mean_logit_difference.map_or("-".into(), |v| format!("{v:.5}")),
    ]);
    t.print();
    for (s, accuracy) in sampled {
        crate::outln!("meta-prediction over {s} sampled forward pass(es): {:.2}%", 100.0 * accuracy);
    }
    Ok(())
}
