//! Per-party cost reports: wall time, CPU time and traffic per link, for every stage of a
//! query (a run of linear layers, one nonlinear layer, input, output) and in total. Parties send
//! them back with the result, so the user sees what every party spent.

use std::time::Instant;

use cpu_time::ProcessTime;
use serde::{Deserialize, Serialize};

use crate::channel::{Channel, Meter};

/// Traffic on one link, from the reporting party's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkCost {
    /// The party at the other end.
    pub peer: String,
    /// Bytes, messages and rounds.
    #[serde(flatten)]
    pub traffic: Meter,
}

/// What one stage cost one party.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCost {
    /// The model node the stage ends with (0 for input and output stages).
    pub layer: u32,
    /// The stage's name (the node's name, or `input` / `output`).
    pub name: String,
    /// What the stage does.
    pub kind: StageKind,
    /// Wall time in microseconds.
    pub wall_us: u64,
    /// CPU time of the party's process in microseconds (in-process runs: of the whole process).
    pub cpu_us: u64,
    /// Traffic per link during the stage (links without traffic are left out).
    pub links: Vec<LinkCost>,
}

/// What a stage does; reports name it in kebab case (`linear`, `relu`, `maxpool`, `he-linear`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// The user's input reaching the party.
    Input,
    /// The result leaving the party.
    Output,
    /// A connection being set up.
    Connect,
    /// A whole query in one stage (the plain suite).
    Query,
    /// Key generation and exchange.
    Keys,
    /// Input-independent preparation (samples, correlations, pads).
    Preprocess,
    /// A run of linear layers on shares.
    Linear,
    /// A linear layer under HE.
    HeLinear,
    /// A linear layer offloaded to an untrusted cloud.
    Offloaded,
    /// Layers computed locally in the clear.
    Local,
    /// A ReLU layer.
    Relu,
    /// A max pool layer (with its ReLU).
    #[serde(rename = "maxpool")]
    MaxPool,
}

impl StageKind {
    /// Every kind.
    pub const ALL: [StageKind; 12] = [
        StageKind::Input,
        StageKind::Output,
        StageKind::Connect,
        StageKind::Query,
        StageKind::Keys,
        StageKind::Preprocess,
        StageKind::Linear,
        StageKind::HeLinear,
        StageKind::Offloaded,
        StageKind::Local,
        StageKind::Relu,
        StageKind::MaxPool,
    ];

    /// The kind's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Input => "input",
            StageKind::Output => "output",
            StageKind::Connect => "connect",
            StageKind::Query => "query",
            StageKind::Keys => "keys",
            StageKind::Preprocess => "preprocess",
            StageKind::Linear => "linear",
            StageKind::HeLinear => "he-linear",
            StageKind::Offloaded => "offloaded",
            StageKind::Local => "local",
            StageKind::Relu => "relu",
            StageKind::MaxPool => "maxpool",
        }
    }

    /// Whether the stage carries the query's input or output rather than a step of the model.
    pub fn is_input_or_output(self) -> bool {
        matches!(self, StageKind::Input | StageKind::Output)
    }
}

impl std::fmt::Display for StageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no stage kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no stage kind is named `{0}`")]
pub struct UnknownStageKind(pub String);

impl std::str::FromStr for StageKind {
    type Err = UnknownStageKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StageKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownStageKind(s.to_string()))
    }
}

/// Everything one party spent on a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartyReport {
    /// The party.
    pub party: String,
    /// Its stages, in order.
    pub stages: Vec<StageCost>,
    /// Traffic per link over the whole query.
    pub links: Vec<LinkCost>,
    /// Wall time in microseconds.
    pub wall_us: u64,
    /// CPU time in microseconds.
    pub cpu_us: u64,
}

impl PartyReport {
    /// Reads reports from a report frame's payload (bounded by the frame limit).
    pub fn list_from_bytes(bytes: &[u8]) -> Result<Vec<PartyReport>, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Appends the same party's report of a later part of the query (its online phase after
    /// its preprocessing): stages follow, traffic per link and times add up.
    pub fn append(&mut self, later: PartyReport) {
        self.stages.extend(later.stages);
        for link in later.links {
            match self.links.iter_mut().find(|l| l.peer == link.peer) {
                Some(l) => l.traffic = l.traffic.plus(&link.traffic),
                None => self.links.push(link),
            }
        }
        self.wall_us += later.wall_us;
        self.cpu_us += later.cpu_us;
    }
}

/// Records a party's stages as the protocol goes.
#[derive(Debug)]
pub struct Recorder {
    party: String,
    start: (Instant, ProcessTime),
    last: (Instant, ProcessTime),
    seen: Vec<(String, Meter)>,
    base: Vec<(String, Meter)>,
    stages: Vec<StageCost>,
}

impl Recorder {
    /// Starts the clock for `party`.
    pub fn new(party: impl Into<String>) -> Self {
        let now = (Instant::now(), ProcessTime::now());
        Self { party: party.into(), start: now, last: now, seen: Vec::new(), base: Vec::new(), stages: Vec::new() }
    }

    /// Counts traffic on `channels` from now on only: for a part of a query on channels that
    /// already carried an earlier part (the online phase after the preprocessing).
    pub fn counting_from(mut self, channels: &[&Channel]) -> Self {
        self.seen = channels.iter().map(|ch| (ch.peer().to_string(), ch.meter())).collect();
        self.base = self.seen.clone();
        self
    }

    /// Ends the current stage now; `channels` are the party's links.
    pub fn stage(&mut self, layer: u32, name: &str, kind: StageKind, channels: &[&Channel]) {
        let now = (Instant::now(), ProcessTime::now());
        let mut links = Vec::new();
        for ch in channels {
            let meter = ch.meter();
            let before = match self.seen.iter_mut().find(|(p, _)| p == ch.peer()) {
                Some((_, m)) => std::mem::replace(m, meter),
                None => {
                    self.seen.push((ch.peer().to_string(), meter));
                    Meter::default()
                }
            };
            let traffic = meter.since(&before);
            if !traffic.is_empty() {
                links.push(LinkCost { peer: ch.peer().to_string(), traffic });
            }
        }
        self.stages.push(StageCost {
            layer,
            name: name.to_string(),
            kind,
            wall_us: micros(now.0 - self.last.0),
            cpu_us: micros(now.1.duration_since(self.last.1)),
            links,
        });
        self.last = now;
    }

    /// The report (stages recorded so far; totals up to now).
    pub fn finish(self) -> PartyReport {
        let base = self.base;
        let links = self
            .seen
            .into_iter()
            .map(|(peer, meter)| {
                let before = base.iter().find(|(p, _)| *p == peer).map_or(Meter::default(), |(_, m)| *m);
                LinkCost { traffic: meter.since(&before), peer }
            })
            .collect();
        PartyReport {
            party: self.party,
            stages: self.stages,
            links,
            wall_us: micros(self.start.0.elapsed()),
            cpu_us: micros(self.start.1.elapsed()),
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds serialize to the names reports have always used, and parse back.
    #[test]
    fn kind_names_are_pinned() {
        for kind in StageKind::ALL {
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<StageKind>().unwrap(), kind);
        }
        assert_eq!(StageKind::MaxPool.as_str(), "maxpool");
        assert_eq!(StageKind::HeLinear.as_str(), "he-linear");
        assert!("max-pool".parse::<StageKind>().is_err());
    }
}
