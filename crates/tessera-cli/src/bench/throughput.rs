//! Concurrent users against running servers: queries per second and latency percentiles, with
//! every exact suite's results checked; and `tessera bench load`, which adds the servers'
//! memory and open descriptors before and after.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::json;
use tessera::LoadedModel;
use tessera::QueryOptions;
use tessera::cluster::ClusterConfig;
use tessera::dataset::Dataset;
use tessera::input::normalize;

use crate::output::{Table, print_json};

/// What a burst of concurrent queries achieved.
#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    /// Concurrent users.
    pub users: usize,
    /// Queries answered.
    pub queries: usize,
    /// Wall time of the whole burst.
    pub seconds: f64,
    /// Queries answered per second.
    pub queries_per_second: f64,
    /// Latency percentiles of single queries under this load.
    pub latency_ms: Percentiles,
    /// Results outside the fixed-point reference's bound (`None` where a suite is not exact:
    /// `plain` computes in `f32`, bayes samples its weights).
    pub wrong: Option<usize>,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

/// Checks one result: the index of its input and its logits.
pub type Check<'a> = &'a (dyn Fn(usize, &[f32]) -> bool + Sync);

/// Whether every logit is within `bound` of the fixed-point reference's.
pub fn within(logits: &[f32], reference: &[f64], bound: f64) -> bool {
    logits.len() == reference.len() && logits.iter().zip(reference).all(|(a, b)| (*a as f64 - b).abs() <= bound)
}

/// What the queries of a benchmark send and where.
#[derive(Clone, Copy)]
pub struct Workload<'a> {
    /// The cluster.
    pub config: &'a ClusterConfig,
    /// The model it serves.
    pub model: &'a LoadedModel,
    /// Images per query.
    pub batch: usize,
    /// How the user runs each query.
    pub options: &'a QueryOptions,
}

/// `queries` queries of `work` from `users` concurrent users; query `q` sends
/// `inputs[q % inputs.len()]` and, with `check`, is counted wrong when the check fails. `bar`
/// advances once per query.
pub fn burst(
    rt: &tokio::runtime::Runtime,
    work: Workload<'_>,
    inputs: &[Vec<f32>],
    (users, queries): (usize, usize),
    check: Option<Check<'_>>,
    bar: &ProgressBar,
) -> Result<Throughput> {
    let Workload { config, model, batch, options } = work;
    anyhow::ensure!(!inputs.is_empty(), "no query inputs");
    let users = users.max(1);
    let per_user = queries.div_ceil(users);
    let start = Instant::now();
    let tasks = (0..users).map(|u| async move {
        let mut latencies = Vec::new();
        let mut wrong = 0usize;
        for q in u * per_user..((u + 1) * per_user).min(queries) {
            let i = q % inputs.len();
            let t = Instant::now();
            let r = tessera::query_with(config, model, &inputs[i], batch as u32, options).await?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            if check.is_some_and(|c| !c(i, &r.logits)) {
                wrong += 1;
            }
            bar.inc(1);
        }
        Ok::<_, tessera::Error>((latencies, wrong))
    });
    let results = rt.block_on(futures::future::try_join_all(tasks))?;
    let seconds = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().flat_map(|(l, _)| l.iter().copied()).collect();
    latencies.sort_by(f64::total_cmp);
    let done = latencies.len();
    anyhow::ensure!(done > 0, "no queries ran");
    let pct = |p: f64| latencies[((done - 1) as f64 * p).round() as usize];
    Ok(Throughput {
        users,
        queries: done,
        seconds,
        queries_per_second: done as f64 / seconds,
        latency_ms: Percentiles { p50: pct(0.5), p99: pct(0.99), max: pct(1.0) },
        wrong: check.map(|_| results.iter().map(|(_, w)| w).sum()),
    })
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

/// `tessera bench load`: a local serpens-n cluster under concurrent users, every result checked
/// against the fixed-point reference, and the servers' memory and descriptors before and after.
pub fn load(path: &Path, data: &Path, users: usize, queries: usize, holders: usize, json: bool) -> Result<()> {
    let options = tessera::local::LocalOptions { holders, ..Default::default() };
    let cluster =
        tessera::local::LocalCluster::start(crate::cluster::launcher(None)?, tessera::Suite::SerpensN, path, &options)?;
    let model = cluster.config.load_model()?;
    let fixed = model.fixed()?;
    let set = Dataset::open(data)?;
    let images = set.len().min(256);
    let x = normalize(set.pixels(0..images), set.shape, model.meta());
    let input_len = model.merged.input_shape().len();
    let classes = model.merged.output_len();
    let reference = fixed.run(&x, images)?;
    let bound = model.calibration().map_or(0.0, |c| c.logit_tolerance);
    let inputs: Vec<Vec<f32>> = x.chunks(input_len).map(<[f32]>::to_vec).collect();
    let check = |i: usize, logits: &[f32]| within(logits, &reference[i * classes..(i + 1) * classes], bound);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let servers: Vec<(String, u32)> =
        cluster.config.parties.iter().filter_map(|p| cluster.pid(&p.name).map(|pid| (p.name.clone(), pid))).collect();
    let query = QueryOptions::default();
    // The same load, shorter, first: connection pools, worker threads and allocator arenas
    // reach their steady size before the baseline is taken.
    let warm = (queries / 10).max(4 * users);
    let work = Workload { config: &cluster.config, model: &model, batch: 1, options: &query };
    burst(&rt, work, &inputs, (users, warm), Some(&check), &ProgressBar::hidden())?;
    let before: Vec<(u64, usize)> = servers.iter().map(|(_, pid)| process_usage(*pid)).collect();
    let bar = ProgressBar::new(queries as u64);
    let t = burst(&rt, work, &inputs, (users, queries), Some(&check), &bar)?;
    bar.finish_and_clear();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after: Vec<(u64, usize)> = servers.iter().map(|(_, pid)| process_usage(*pid)).collect();
    let wrong = t.wrong.unwrap_or(0);
    let report = json!({
        "model": path, "users": users, "queries": t.queries, "holders": holders, "wrong": wrong,
        "seconds": t.seconds, "queries_per_second": t.queries_per_second, "latency_ms": t.latency_ms,
        "servers": servers.iter().zip(before.iter().zip(&after)).map(|((name, _), (b, a))| json!({
            "party": name, "rss_kb_before": b.0, "rss_kb_after": a.0, "fds_before": b.1, "fds_after": a.1,
        })).collect::<Vec<_>>(),
    });
    if json {
        print_json(&report);
    } else {
        crate::outln!(
            "{} queries from {users} users in {:.2} s: {:.1} queries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {wrong} wrong results",
            t.queries,
            t.seconds,
            t.queries_per_second,
            t.latency_ms.p50,
            t.latency_ms.p99,
            t.latency_ms.max
        );
        let mut table = Table::new(&["server", "RSS before (kB)", "RSS after (kB)", "fds before", "fds after"]);
        for ((name, _), (b, a)) in servers.iter().zip(before.iter().zip(&after)) {
            table.row(vec![name.clone(), b.0.to_string(), a.0.to_string(), b.1.to_string(), a.1.to_string()]);
        }
        table.print();
    }
    if wrong > 0 {
        anyhow::bail!("{wrong} of {} results differ from the fixed-point reference beyond the bound", t.queries);
    }
    Ok(())
}
