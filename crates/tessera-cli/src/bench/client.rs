//! Suite `verify`'s client beside running the model itself: its operations in `Z_t` by part
//! against the model's multiply-accumulates (Lu et al.'s metric), and its online CPU time by
//! part against the `f32` engine's on one thread (the client's own thread count).

use serde::Serialize;
use tessera::model::cost::OpCount;
use tessera::suites::verify::{ClientCost, CpuSplit};

use crate::output::{Table, fmt_count, min_median};

/// What the verify client spent, beside running the model itself.
#[derive(Debug, Serialize)]
pub struct ClientSummary {
    /// Operations per query (the same in every query), by part.
    pub ops: ClientOps,
    /// What running the model on the client computes instead.
    pub local_model: OpCount,
    /// The model's multiply-accumulates (the whole batch).
    pub macs: u64,
    /// The model's multiply-accumulates over the client's online multiplications and additions
    /// (Lu et al.'s metric).
    pub macs_per_online_op: f64,
    /// All of the local model's operations over all of the client's online ones (sign tests,
    /// comparisons and rounding shifts included on both sides).
    pub ops_ratio: f64,
    /// Online CPU ms by part, each the median over the timed queries.
    pub cpu_ms: CpuMs,
    /// The client's online CPU over the one-thread `f32` engine's CPU (medians).
    pub vs_f32_one_thread_cpu: f64,
}

/// The client's operations in `Z_t` by part.
#[derive(Debug, Serialize)]
pub struct ClientOps {
    /// Adding the pads.
    pub pad: OpCount,
    /// The checks.
    pub check: OpCount,
    /// Subtracting `K·M`.
    pub unpad: OpCount,
    /// Its own layers.
    pub local: OpCount,
    /// All of the above.
    pub online: OpCount,
    /// Ahead of the query.
    pub preprocess: OpCount,
}

/// Online CPU milliseconds by part.
#[derive(Debug, Serialize)]
pub struct CpuMs {
    /// Adding the pads (which writes the message).
    pub pads: f64,
    /// The checks.
    pub checks: f64,
    /// Decoding the products and subtracting `K·M`.
    pub unpad: f64,
    /// The client's own layers.
    pub local: f64,
    /// TLS, framing, system calls and the runtime.
    pub transport: f64,
    /// The whole online phase.
    pub total: f64,
}

impl ClientSummary {
    /// The summary of the timed queries' costs, against the one-thread `f32` engine's median
    /// CPU and the model's multiply-accumulates.
    pub fn of(costs: &[ClientCost], f32_one_thread_ms: f64, macs: u64) -> Option<Self> {
        let first = costs.first()?;
        let a = &first.arithmetic;
        let online = a.online();
        let median = |part: fn(&CpuSplit) -> std::time::Duration| {
            let mut ms: Vec<f64> = costs.iter().map(|c| part(&c.cpu).as_secs_f64() * 1e3).collect();
            min_median(&mut ms).1
        };
        let cpu_ms = CpuMs {
            pads: median(|c| c.pads),
            checks: median(|c| c.checks),
            unpad: median(|c| c.unpad),
            local: median(|c| c.local),
            transport: median(|c| c.transport),
            total: median(|c| c.total),
        };
        Some(Self {
            ops: ClientOps {
                pad: a.pad,
                check: a.check,
                unpad: a.unpad,
                local: a.local,
                online,
                preprocess: a.preprocess,
            },
            local_model: first.local_model,
            macs,
            macs_per_online_op: macs as f64 / (online.mul + online.add).max(1) as f64,
            ops_ratio: first.local_model.total() as f64 / online.total().max(1) as f64,
            vs_f32_one_thread_cpu: cpu_ms.total / f32_one_thread_ms,
            cpu_ms,
        })
    }

    /// Prints the operations and the CPU split as one table.
    pub fn print(&self, f32_one_thread_ms: f64) {
        let mut t = Table::new(&["client part", "mul", "add", "other", "CPU ms (median)"]);
        let o = &self.ops;
        let c = &self.cpu_ms;
        let row = |part: &str, ops: Option<&OpCount>, ms: Option<f64>| {
            let count = |f: fn(&OpCount) -> u64| ops.map_or("-".into(), |o| fmt_count(f(o)));
            vec![
                part.to_string(),
                count(|o| o.mul),
                count(|o| o.add),
                count(|o| o.other),
                ms.map_or("-".into(), |v| format!("{v:.3}")),
            ]
        };
        t.row(row("pads (and the message)", Some(&o.pad), Some(c.pads)));
        t.row(row("checks", Some(&o.check), Some(c.checks)));
        t.row(row("decode and unpad", Some(&o.unpad), Some(c.unpad)));
        t.row(row("own layers", Some(&o.local), Some(c.local)));
        t.row(row("TLS, framing, runtime", None, Some(c.transport)));
        t.row(row("online total", Some(&o.online), Some(c.total)));
        t.row(row("preprocessing (ahead)", Some(&o.preprocess), None));
        t.row(row("the model run locally (f32, one thread)", Some(&self.local_model), Some(f32_one_thread_ms)));
        t.print();
        crate::outln!(
            "verify client: the model's multiply-accumulates are {:.1}× its online multiplications and additions \
             ({:.1}× counting every operation on both sides); its online CPU is {:.2}× the f32 engine's on one thread",
            self.macs_per_online_op,
            self.ops_ratio,
            self.vs_f32_one_thread_cpu
        );
    }
}
