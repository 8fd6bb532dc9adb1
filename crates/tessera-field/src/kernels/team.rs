//! Helper threads for splits of one layer, or of one batch, which hand work over in well under a
//! microsecond.
//!
//! Written by hand because rayon parks idle workers, and waking one costs more than half of a
//! small layer takes: on this project's 2-core machines ResNet-20 at batch 1 ran no faster with
//! its layers split over rayon's two workers than on one thread (1.15 ms), where onnxruntime's
//! spinning pool halves its time. A helper here spins for [`SPIN`] after each job before it
//! parks, so the next layer finds it awake. Tasks are claimed one at a time from a shared
//! counter, so a helper that the OS deschedules leaves its unclaimed tasks to the others, and a
//! job it never started is withdrawn instead of waited for. One caller uses the helpers at a
//! time; a second, concurrent one gets `false` from [`run`] and runs its tasks itself.

#![allow(unsafe_code, reason = "a job borrowed from the caller's stack is run on the helper threads")]

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// A job's body, its lifetime erased: valid until the helper marks the job finished or the
/// caller withdraws it.
type Body = *const (dyn Fn(usize) + Sync);

/// The phases of a helper's job, in the low bits of [`Slot::state`] (the job's number above).
const FINISHED: u64 = 0;
const POSTED: u64 = 1;
const RUNNING: u64 = 2;
const WITHDRAWN: u64 = 3;
const PHASE_BITS: u32 = 2;
const PHASE: u64 = (1 << PHASE_BITS) - 1;

/// One helper's mailbox.
struct Slot {
    /// `job << PHASE_BITS | phase` of the last job posted to this helper. The caller moves it
    /// to `POSTED` and from `POSTED` to `WITHDRAWN`; the helper from `POSTED` to `RUNNING` and
    /// on to `FINISHED`. The compare-and-swap out of `POSTED` decides who has the job.
    state: AtomicU64,
    /// Whether the last job panicked.
    panicked: AtomicBool,
    /// Whether the helper is parked (or about to park) and needs an unpark.
    parked: AtomicBool,
    /// The job's body and this helper's thread number; written by the caller before it posts,
    /// read by the helper once it has moved the job to `RUNNING`.
    job: UnsafeCell<(Option<Body>, usize)>,
}

// SAFETY: `job` is written only by the caller holding the team's lock while the helper has no
// job (its last one finished or withdrawn), and read by the helper only while the job is
// `RUNNING`: the two never touch it at once, and the atomics order the accesses.
unsafe impl Sync for Slot {}
// SAFETY: as above; the raw body pointer is only dereferenced while its job runs.
unsafe impl Send for Slot {}

impl Slot {
    fn job_number(&self) -> u64 {
        self.state.load(Ordering::Acquire) >> PHASE_BITS
    }
}

/// The helpers, started on first use.
struct Team {
    /// Held by the caller whose job the helpers run.
    busy: Mutex<()>,
    slots: Vec<(Arc<Slot>, Thread)>,
}

fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let helpers = std::thread::available_parallelism().map_or(1, |n| n.get()).saturating_sub(1);
        let slots = (0..helpers)
            .filter_map(|i| {
                let slot = Arc::new(Slot {
                    state: AtomicU64::new(FINISHED),
                    panicked: AtomicBool::new(false),
                    parked: AtomicBool::new(false),
                    job: UnsafeCell::new((None, 0)),
                });
                let mine = slot.clone();
                let handle =
                    std::thread::Builder::new().name(format!("tessera-kernel-{i}")).spawn(move || serve(&mine)).ok()?;
                Some((slot, handle.thread().clone()))
            })
            .collect();
        Team { busy: Mutex::new(()), slots }
    })
}

/// A helper's loop: wait for a job (spinning, then parked), take it unless it was withdrawn,
/// run it, report.
fn serve(slot: &Slot) {
    let mut seen = 0;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        while slot.job_number() == seen {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || started.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            slot.parked.store(true, Ordering::SeqCst);
            if slot.state.load(Ordering::SeqCst) >> PHASE_BITS == seen {
                std::thread::park();
            }
            slot.parked.store(false, Ordering::SeqCst);
        }
        let state = slot.state.load(Ordering::Acquire);
        seen = state >> PHASE_BITS;
        let running = seen << PHASE_BITS | RUNNING;
        if state & PHASE != POSTED
            || slot.state.compare_exchange(state, running, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            // Withdrawn: the caller ran every task itself.
            continue;
        }
        // SAFETY: the caller wrote the job before posting it and, the job being `RUNNING`,
        // waits for `FINISHED` before its body goes out of scope.
        let (body, thread) = unsafe { *slot.job.get() };
        let body = body.expect("a posted job has a body");
        // SAFETY: as above, the body outlives this call.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*body)(thread) }));
        slot.panicked.store(result.is_err(), Ordering::Relaxed);
        // A payload whose drop panicked would end this thread with its job never finished.
        std::mem::forget(result);
        slot.state.store(seen << PHASE_BITS | FINISHED, Ordering::Release);
    }
}

/// Withdraws, or waits for, every posted helper's job on drop: the body outlives its use even
/// when the caller's own share panics.
struct Joined<'a> {
    /// Each posted helper's slot and its job's number.
    posted: Vec<(&'a Slot, u64)>,
}

impl Joined<'_> {
    /// Whether a helper's share panicked.
    fn wait(&mut self) -> bool {
        let mut panicked = false;
        for (slot, job) in self.posted.drain(..) {
            let posted = job << PHASE_BITS | POSTED;
            let withdrawn = job << PHASE_BITS | WITHDRAWN;
            if slot.state.compare_exchange(posted, withdrawn, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                continue;
            }
            let mut spins = 0u32;
            while slot.state.load(Ordering::Acquire) != job << PHASE_BITS | FINISHED {
                // A descheduled helper gets this core back after a while.
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(1 << 12) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            panicked |= slot.panicked.load(Ordering::Relaxed);
        }
        panicked
    }
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        self.wait();
    }
}

/// Runs `task(thread, index)` for every `index` in `0..tasks` on the calling thread (thread 0)
/// and helpers (threads `1..`), at most `threads` threads in all, each claiming the next
/// unclaimed index until none is left. Returns `false`, running nothing, when there is no helper or another
/// caller holds them.
///
/// # Panics
/// If a task panics, after every helper has stopped using `task`.
pub fn run(threads: usize, tasks: usize, task: &(dyn Fn(usize, usize) + Sync)) -> bool {
    let team = team();
    if tasks < 2 || threads < 2 || team.slots.is_empty() {
        return false;
    }
    // A poisoned lock only means a task panicked; every helper was joined before it unwound.
    let _busy = match team.busy.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return false,
    };
    let next = AtomicUsize::new(0);
    let claiming = |thread: usize| {
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= tasks {
                break;
            }
            task(thread, index);
        }
    };
    let claiming: &(dyn Fn(usize) + Sync) = &claiming;
    // SAFETY: only the lifetime is erased; `Joined` withdraws or waits for every helper's job
    // before `claiming` can go out of scope.
    let erased: Body = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Body>(claiming) };
    let helpers = &team.slots[..(tasks.min(threads) - 1).min(team.slots.len())];
    let mut joined = Joined { posted: Vec::with_capacity(helpers.len()) };
    for (i, (slot, thread)) in helpers.iter().enumerate() {
        let job = slot.job_number() + 1;
        // SAFETY: the helper has no job (every job is joined before the lock is released) and
        // reads `job` only after it takes the job posted below.
        unsafe { *slot.job.get() = (Some(erased), i + 1) };
        slot.state.store(job << PHASE_BITS | POSTED, Ordering::SeqCst);
        if slot.parked.load(Ordering::SeqCst) {
            thread.unpark();
        }
        joined.posted.push((slot, job));
    }
    claiming(0);
    let panicked = joined.wait();
    assert!(!panicked, "a kernel task panicked on a helper thread");
    true
}
#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Every task runs exactly once, with more or fewer tasks than threads, job after job (some
    /// after the helpers parked), and a caller that finds the helpers busy is told so. Other
    /// tests' kernels may hold the helpers for a moment: a refused job is tried again.
    #[test]
    fn every_task_runs_once_per_job() {
        let helpers = team().slots.len();
        if helpers == 0 {
            return;
        }
        for round in 0..1000 {
            let tasks = 2 + round % (2 * helpers + 2);
            let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
            let task = |thread: usize, t: usize| {
                assert!(thread <= helpers, "thread {thread}");
                counts[t].fetch_add(1, Ordering::Relaxed);
            };
            while !run(helpers + 1, tasks, &task) {
                std::thread::yield_now();
            }
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "round {round}, {tasks} tasks");
            if round % 100 == 0 {
                std::thread::sleep(SPIN * 2);
            }
        }
        let _held = team().busy.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!run(2, 2, &|_, _| {}), "helpers busy");
    }
}
