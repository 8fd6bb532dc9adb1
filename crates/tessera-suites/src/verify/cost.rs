//! What the client spends per query: its operations in `Z_t` beside those of running the model
//! itself, and its online CPU time by what it was spent on.

use std::time::{Duration, Instant};

use tessera_model::cost::OpCount;

/// The client's operations in `Z_t`, counted where they run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arithmetic {
    /// Online: adding the pads to each offloaded layer's input.
    pub pad: OpCount,
    /// Online: the checks (two inner products per challenge and image).
    pub check: OpCount,
    /// Online: subtracting `K·M` from each product.
    pub unpad: OpCount,
    /// Online: the client's own layers (truncation, ReLU, pooling, residual adds, biases).
    pub local: OpCount,
    /// Ahead of the query: the pad products `K·M` and the challenges' weights.
    pub preprocess: OpCount,
}

impl Arithmetic {
    /// Everything the client computes online.
    pub fn online(&self) -> OpCount {
        [self.pad, self.check, self.unpad, self.local].into_iter().sum()
    }
}

/// The client's online CPU time by what it was spent on. The total is the whole process's CPU
/// time; each part is the time its computation took on the client's one thread, read from the
/// wall clock (a part only computes, so the two agree but for preemption; a CPU clock is a
/// system call, 0.64 µs a read on the benchmark machine against 23 ns, and a query has a few
/// hundred parts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// Adding the pads: this also writes the message, whose bytes are sent without a copy.
    pub pads: Duration,
    /// The checks.
    pub checks: Duration,
    /// Decoding the products (checked to lie in `Z_t`) and subtracting `K·M`, in one pass.
    pub unpad: Duration,
    /// The client's own layers.
    pub local: Duration,
    /// The rest of the total, at least zero: TLS records, framing, system calls and the async
    /// runtime.
    pub transport: Duration,
    /// The process's CPU time from the first layer to the logits.
    pub total: Duration,
}

/// Everything the client spent on one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCost {
    /// Its operations in `Z_t`.
    pub arithmetic: Arithmetic,
    /// What running the model on the client would compute instead (its multiplications are
    /// the model's multiply-accumulates).
    pub local_model: OpCount,
    /// Its online CPU time.
    pub cpu: CpuSplit,
}

/// Adds the time `f` takes (on the current thread, which it keeps busy) to `into`.
pub(crate) fn timed<T>(into: &mut Duration, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    *into += start.elapsed();
    out
}
