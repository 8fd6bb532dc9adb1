//! `tessera bench MODEL`'s tables for people: the suites side by side per network, and each
//! suite's per-layer breakdown and traffic per party and link.

use tessera::cost::LayerCost;
use tessera::emulate::LinkProfile;

use super::compare::Report;
use crate::output::{Table, fmt_bytes, fmt_count};

/// Prints `r` as tables: the suites side by side per network, then each suite's per-layer
/// breakdown and per-link traffic. `nets` are the profiles the networks were emulated with.
pub fn print(r: &Report, nets: &[Option<LinkProfile>]) {
    let b = &r.baselines;
    crate::outln!(
        "{} ({} MACs, {} ReLUs per image), batch {}, {} timed queries per suite after {} untimed",
        r.path.display(),
        fmt_count(r.macs),
        fmt_count(r.relus),
        r.batch,
        r.runs,
        r.warmup
    );
    crate::outln!(
        "baselines in this process ({} threads): f32 engine {} (CPU {}; one thread: CPU {}), fixed-point reference {} \
         (ms, min / median / max)",
        r.threads,
        b.f32_ms,
        b.f32_cpu_ms,
        b.f32_one_thread_ms,
        b.fixed_ms
    );
    for (net, profile) in r.nets.iter().zip(nets.iter().chain(std::iter::repeat(&None))) {
        let link = match profile {
            Some(p) => format!(
                "emulated {} ({} ms round trip, {} Mbit/s per direction)",
                p.name,
                p.one_way.as_secs_f64() * 2e3,
                p.bits_per_second / 1_000_000
            ),
            None => net.clone(),
        };
        crate::outln!("\n{link}: every party its own process, mutual TLS");
        let mut t = Table::new(&[
            "suite",
            "latency ms (min / med / max)",
            "× f32",
            "× fixed",
            "× plain suite",
            "preprocess ms",
            "preprocess bytes",
            "online ms",
            "user online CPU ms",
            "user online bytes",
            "bytes",
            "rounds",
            "throughput",
        ]);
        for s in r.results.iter().filter(|s| &s.net == net) {
            t.row(vec![
                s.label.clone(),
                s.measured.latency_ms.to_string(),
                format!("{:.1}", s.vs_f32),
                format!("{:.2}", s.vs_fixed),
                s.vs_plain_suite.map_or("-".into(), |v| format!("{v:.2}")),
                format!("{:.2}", s.measured.preprocess_median_ms),
                fmt_bytes(s.measured.cost.preprocess_bytes),
                format!("{:.2}", s.measured.online_median_ms),
                format!("{:.2}", s.measured.user_cpu_median_ms),
                fmt_bytes(s.measured.user_online_bytes),
                fmt_bytes(s.measured.cost.bytes),
                s.measured.cost.rounds.to_string(),
                s.throughput.as_ref().map_or("-".into(), |t| format!("{:.1} q/s", t.queries_per_second)),
            ]);
        }
        t.print();
        for s in r.results.iter().filter(|s| &s.net == net && s.suite != tessera::Suite::Plain) {
            crate::outln!("{} on {net}, per layer (the median query):", s.label);
            layer_table(&s.measured.cost.layers).print();
            let mut links = Table::new(&["party", "wall ms", "CPU ms", "link", "sent", "received", "rounds"]);
            for p in &s.measured.cost.parties {
                for l in &p.links {
                    links.row(vec![
                        p.party.clone(),
                        format!("{:.2}", p.wall_ms),
                        format!("{:.2}", p.cpu_ms),
                        format!("→ {}", l.peer),
                        fmt_bytes(l.traffic.bytes_sent),
                        fmt_bytes(l.traffic.bytes_received),
                        l.traffic.rounds.to_string(),
                    ]);
                }
            }
            links.print();
            if let Some(client) = &s.measured.client {
                client.print(b.f32_one_thread_ms.median);
            }
        }
    }
    for s in &r.skipped {
        crate::outln!("skipped {}: {}", s.suite, s.reason);
    }
}

fn layer_table(layers: &[LayerCost]) -> Table {
    let mut t = Table::new(&["layer", "kind", "phase", "time ms", "CPU ms", "bytes", "rounds"]);
    for l in layers {
        t.row(vec![
            l.name.clone(),
            l.kind.clone(),
            l.phase.name().to_string(),
            format!("{:.3}", l.time_ms),
            format!("{:.3}", l.cpu_ms),
            fmt_bytes(l.bytes),
            l.rounds.to_string(),
        ]);
    }
    t
}
