//! What a query cost, put together from every party's report: per-layer time, bytes and rounds,
//! each party's traffic per link, and the split between preprocessing and the online phase.
//!
//! Conventions (the benchmarks and their docs rely on them):
//!
//! * **bytes**: every frame counted once, by its sender (headers included); frames from a
//!   party that sends no report (the `plain` suite's server) are counted where they arrive. The
//!   cost reports themselves are sent after their sender's report is closed, so their bytes are
//!   not counted; collecting them is part of the receiver's `output` row (one round trip).
//! * **rounds** of a layer: the most round trips any one link made during it (parties run a
//!   layer's links in parallel); a query's rounds are the sum over its layers, since layers run
//!   one after another. This is at least the round count of any single link.
//! * **time** of a layer: the wall time the *pacing party* spent in it: the party that takes
//!   part in the most rows (serpens-n: holder 1; serpens-2: server 1; verify, bayes and plain:
//!   the user). Its rows follow one another, so a stack of them is the query's timeline, short
//!   of what happens before the pacing party starts and after it ends (the user's connection is
//!   a row of its own); other parties' stages overlap them (a user that waits for the servers
//!   spends the whole query in its `output` stage). **CPU** adds every party's CPU time.
//! * **preprocessing**: stages whose work does not depend on the input, so a deployment can run
//!   them before the query arrives: verify's pads (`preprocess`), bayes' weight sampling
//!   (`preprocess`), serpens-2's permutation correlations (the user's dealing and upload) and
//!   its servers' key generation and encrypted pads (`preprocess`), serpens-2's and bayes' key
//!   exchange (`keys`). Their time is the longest any party spent in them, pacing or not:
//!   bayes' server samples its weights while the user waits in its first layer, so there the
//!   two rows overlap.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tessera_net::{LinkCost, PartyReport, StageKind};

/// Whether a stage's work depends on the query's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Input-independent work that can run ahead of the query.
    Preprocess,
    /// Work on the query's input.
    Online,
}

impl Phase {
    /// The phase's name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Preprocess => "preprocess",
            Phase::Online => "online",
        }
    }
}

/// Which row of the breakdown a stage belongs to, in the order rows are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RowKey {
    /// Input-independent setup (`preprocess`, `keys`).
    Setup(&'static str),
    /// Connection and input stages before the first layer.
    Start(&'static str),
    /// A model node (the last node of a run of linear layers, or a nonlinear one).
    Node(u32),
    /// Stages after the last layer (`query`, `output`).
    End(&'static str),
}

/// The row a stage of `kind` goes to: its own for stages that are not a model layer, `None`
/// for layers (their node's row).
fn special_row(kind: StageKind) -> Option<RowKey> {
    Some(match kind {
        StageKind::Preprocess | StageKind::Keys => RowKey::Setup(kind.as_str()),
        StageKind::Connect | StageKind::Input => RowKey::Start(kind.as_str()),
        StageKind::Query | StageKind::Output => RowKey::End(kind.as_str()),
        StageKind::Linear
        | StageKind::HeLinear
        | StageKind::Offloaded
        | StageKind::Local
        | StageKind::Relu
        | StageKind::MaxPool => return None,
    })
}

/// One row of a query's per-layer breakdown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCost {
    /// The model node the row ends with; `None` for input, output and setup rows.
    pub node: Option<u32>,
    /// The node's name, or the stage's (`input`, `keys`, `output`, …).
    pub name: String,
    /// What the row does (`linear`, `relu`, `maxpool`, `he-linear`, `offloaded`, `local`,
    /// `input`, `keys`, `preprocess`, `output`, …): the first kind any party gave it other
    /// than `local`.
    pub kind: String,
    /// Whether its work depends on the input.
    pub phase: Phase,
    /// Wall time of the pacing party in this row (setup rows: of the longest party), in
    /// milliseconds.
    pub time_ms: f64,
    /// CPU time of all parties together, in milliseconds.
    pub cpu_ms: f64,
    /// Bytes sent by all parties (and by non-reporting peers to them).
    pub bytes: u64,
    /// Most round trips of any one link.
    pub rounds: u64,
}

/// One party's time and traffic over the whole query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartyCost {
    /// The party.
    pub party: String,
    /// Wall time in milliseconds.
    pub wall_ms: f64,
    /// CPU time in milliseconds.
    pub cpu_ms: f64,
    /// CPU time in input-independent stages, in milliseconds.
    pub preprocess_cpu_ms: f64,
    /// Bytes this party sent and received in input-independent stages.
    pub preprocess_bytes: u64,
    /// Traffic per link, from this party's end.
    pub links: Vec<LinkCost>,
}

/// A query's cost: the breakdown by layer and by party, and its totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryCost {
    /// Rows in protocol order: setup, connection and input, layers, output.
    pub layers: Vec<LayerCost>,
    /// Every party that reported.
    pub parties: Vec<PartyCost>,
    /// The party whose wall time the rows give.
    pub pacing_party: String,
    /// Bytes sent by all parties (the sum of the rows).
    pub bytes: u64,
    /// Sequential round trips (the sum of the rows).
    pub rounds: u64,
    /// Wall time of the input-independent rows (the longest party's each), in milliseconds.
    pub preprocess_ms: f64,
    /// Bytes of the input-independent rows (part of `bytes`).
    pub preprocess_bytes: u64,
}

/// Microseconds to milliseconds.
fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// A row as it is filled in, party by party.
#[derive(Default)]
struct RowSum {
    kind: Option<StageKind>,
    /// Wall time per party.
    wall_us: BTreeMap<usize, u64>,
    cpu_us: u64,
    bytes: u64,
    /// Rounds per (party, peer).
    rounds: BTreeMap<(usize, String), u64>,
}

impl QueryCost {
    /// Puts `reports` together; `connect` is the user's connection setup (a `connect` row of
    /// its own unless a report has one: the pacing party starts once the user is connected);
    /// `node_name` names model nodes.
    pub fn from_reports(reports: &[PartyReport], connect: Duration, node_name: impl Fn(u32) -> String) -> Self {
        let mut rows: BTreeMap<RowKey, RowSum> = BTreeMap::new();
        let mut parties = Vec::with_capacity(reports.len());
        let reported = |peer: &str| reports.iter().any(|r| r.party == peer);
        for (p, report) in reports.iter().enumerate() {
            let (mut preprocess_cpu, mut preprocess_bytes) = (0, 0);
            for stage in &report.stages {
                let special = special_row(stage.kind);
                let key = special.unwrap_or(RowKey::Node(stage.layer));
                if matches!(key, RowKey::Setup(_)) {
                    preprocess_cpu += stage.cpu_us;
                    preprocess_bytes +=
                        stage.links.iter().map(|l| l.traffic.bytes_sent + l.traffic.bytes_received).sum::<u64>();
                }
                let row = rows.entry(key).or_default();
                if row.kind.is_none_or(|k| k == StageKind::Local) {
                    row.kind = Some(stage.kind);
                }
                *row.wall_us.entry(p).or_default() += stage.wall_us;
                row.cpu_us += stage.cpu_us;
                for link in &stage.links {
                    row.bytes += link.traffic.bytes_sent;
                    if !reported(&link.peer) {
                        row.bytes += link.traffic.bytes_received;
                    }
                    *row.rounds.entry((p, link.peer.clone())).or_default() += link.traffic.rounds;
                }
            }
            parties.push(PartyCost {
                party: report.party.clone(),
                wall_ms: ms(report.wall_us),
                cpu_ms: ms(report.cpu_us),
                preprocess_cpu_ms: ms(preprocess_cpu),
                preprocess_bytes,
                links: report.links.clone(),
            });
        }
        if !connect.is_zero() && !rows.contains_key(&RowKey::Start("connect")) {
            let row = RowSum { kind: Some(StageKind::Connect), ..Default::default() };
            rows.insert(RowKey::Start("connect"), row);
        }
        // The party in the most rows; the first such one on ties.
        let pacing = (0..reports.len())
            .rev()
            .max_by_key(|p| rows.values().filter(|r| r.wall_us.contains_key(p)).count())
            .unwrap_or(0);
        let layers: Vec<LayerCost> = rows
            .into_iter()
            .map(|(key, row)| LayerCost {
                node: match key {
                    RowKey::Node(n) => Some(n),
                    _ => None,
                },
                name: match key {
                    RowKey::Node(n) => node_name(n),
                    RowKey::Setup(s) | RowKey::Start(s) | RowKey::End(s) => s.to_string(),
                },
                kind: row.kind.map(|k| k.to_string()).unwrap_or_default(),
                phase: if matches!(key, RowKey::Setup(_)) { Phase::Preprocess } else { Phase::Online },
                time_ms: match key {
                    RowKey::Start("connect") if row.wall_us.is_empty() => connect.as_secs_f64() * 1e3,
                    RowKey::Setup(_) => ms(row.wall_us.values().copied().max().unwrap_or(0)),
                    _ => ms(row.wall_us.get(&pacing).copied().unwrap_or(0)),
                },
                cpu_ms: ms(row.cpu_us),
                bytes: row.bytes,
                rounds: row.rounds.values().copied().max().unwrap_or(0),
            })
            .collect();
        QueryCost {
            bytes: layers.iter().map(|l| l.bytes).sum(),
            rounds: layers.iter().map(|l| l.rounds).sum(),
            preprocess_ms: layers.iter().filter(|l| l.phase == Phase::Preprocess).fold(0.0, |t, l| t + l.time_ms),
            preprocess_bytes: layers.iter().filter(|l| l.phase == Phase::Preprocess).map(|l| l.bytes).sum(),
            pacing_party: reports.get(pacing).map(|r| r.party.clone()).unwrap_or_default(),
            layers,
            parties,
        }
    }
}

#[cfg(test)]
mod tests {
    use tessera_net::{Meter, StageCost};

    use super::*;

    fn meter(sent: u64, received: u64, rounds: u64) -> Meter {
        Meter { bytes_sent: sent, bytes_received: received, messages_sent: 1, messages_received: 1, rounds }
    }

    fn stage(layer: u32, kind: &str, wall_us: u64, links: &[(&str, Meter)]) -> StageCost {
        StageCost {
            layer,
            name: format!("stage {layer}"),
            kind: kind.parse().expect("a stage kind"),
            wall_us,
            cpu_us: wall_us / 2,
            links: links.iter().map(|(p, t)| LinkCost { peer: (*p).into(), traffic: *t }).collect(),
        }
    }

    fn report(party: &str, stages: Vec<StageCost>) -> PartyReport {
        let mut totals: Vec<LinkCost> = Vec::new();
        for l in stages.iter().flat_map(|s| &s.links) {
            match totals.iter_mut().find(|t| t.peer == l.peer) {
                Some(t) => {
                    t.traffic.bytes_sent += l.traffic.bytes_sent;
                    t.traffic.bytes_received += l.traffic.bytes_received;
                    t.traffic.rounds += l.traffic.rounds;
                }
                None => totals.push(l.clone()),
            }
        }
        let wall_us = stages.iter().map(|s| s.wall_us).sum();
        PartyReport { party: party.into(), stages, links: totals, wall_us, cpu_us: wall_us / 2 }
    }

    /// A two-server query: the key exchange, a linear run ending at node 0, a ReLU at node 1
    /// (the central server names it `node 1`), output.
    fn reports() -> Vec<PartyReport> {
        vec![
            report("user", vec![stage(0, "input", 100, &[("s1", meter(50, 0, 0))]), stage(0, "output", 80, &[])]),
            report(
                "s1",
                vec![
                    stage(0, "input", 90, &[("user", meter(0, 50, 0))]),
                    stage(0, "keys", 400, &[("s2", meter(1000, 1000, 1))]),
                    stage(0, "linear", 300, &[]),
                    stage(1, "relu", 700, &[("s2", meter(200, 300, 2))]),
                    stage(0, "output", 60, &[("user", meter(10, 0, 0))]),
                ],
            ),
            report(
                "s2",
                vec![
                    stage(0, "keys", 450, &[("s1", meter(1000, 1000, 1))]),
                    stage(0, "linear", 250, &[]),
                    stage(1, "local", 650, &[("s1", meter(300, 200, 3))]),
                ],
            ),
        ]
    }

    #[test]
    fn rows_follow_the_protocol_and_sum_to_the_totals() {
        let cost = QueryCost::from_reports(&reports(), Duration::from_micros(1500), |n| format!("conv{n}"));
        let names: Vec<&str> = cost.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["keys", "connect", "input", "conv0", "conv1", "output"]);
        // s1 takes part in every row: its stages give the times.
        assert_eq!(cost.pacing_party, "s1");
        let times: Vec<f64> = cost.layers.iter().map(|l| l.time_ms).collect();
        // The keys row is the longest party's (s2).
        assert_eq!(times, [0.45, 1.5, 0.09, 0.3, 0.7, 0.06]);
        let keys = &cost.layers[0];
        assert_eq!((keys.phase, keys.bytes, keys.rounds), (Phase::Preprocess, 2000, 1));
        // Node 1: `local` at s2 does not hide s1's `relu`; rounds are the busiest link's.
        let relu = &cost.layers[4];
        assert_eq!(cost.layers.iter().map(|l| l.phase.name()).collect::<Vec<_>>()[..2], ["preprocess", "online"]);
        assert_eq!((relu.kind.as_str(), relu.bytes, relu.rounds), ("relu", 500, 3));
        assert_eq!(cost.bytes, 50 + 2000 + 500 + 10);
        let sent: u64 = cost.parties.iter().flat_map(|p| &p.links).map(|l| l.traffic.bytes_sent).sum();
        assert_eq!(cost.bytes, sent);
        assert_eq!(cost.rounds, 4);
        assert!(cost.parties.iter().flat_map(|p| &p.links).all(|l| l.traffic.rounds <= cost.rounds));
        assert_eq!((cost.preprocess_ms, cost.preprocess_bytes), (0.45, 2000));
        assert_eq!(cost.parties.iter().find(|p| p.party == "s2").map(|p| p.preprocess_cpu_ms), Some(0.225));
    }

    #[test]
    fn a_reported_connection_is_not_counted_twice() {
        let user =
            report("user", vec![stage(0, "connect", 700, &[]), stage(0, "query", 300, &[("server", meter(9, 5, 1))])]);
        let cost = QueryCost::from_reports(&[user], Duration::from_micros(650), |n| n.to_string());
        let rows: Vec<(&str, f64)> = cost.layers.iter().map(|l| (l.name.as_str(), l.time_ms)).collect();
        assert_eq!(rows, [("connect", 0.7), ("query", 0.3)]);
        // The server sends no report: its 5 bytes are counted where they arrive.
        assert_eq!((cost.bytes, cost.rounds), (14, 1));
    }

    #[test]
    fn no_reports_cost_nothing() {
        let cost = QueryCost::from_reports(&[], Duration::ZERO, |n| n.to_string());
        assert!(cost.layers.is_empty());
        assert_eq!((cost.bytes, cost.rounds, cost.preprocess_ms), (0, 0, 0.0));
        assert!(cost.preprocess_ms.is_sign_positive());
    }
}
