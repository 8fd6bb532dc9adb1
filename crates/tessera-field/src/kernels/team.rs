//! Helper threads for the kernels' splits of one layer, which hand work over in well under a
//! microsecond.
//!
//! Written by hand because rayon parks idle workers, and waking one costs more than half of a
//! small layer takes: on this project's 2-core machines ResNet-20 at batch 1 ran no faster with
//! its layers split over rayon's two workers than on one thread (1.15 ms), where onnxruntime's
//! spinning pool halves its time. A helper here spins for [`SPIN`] after each job before it
//! parks, so the next layer finds it awake. One caller uses the helpers at a time; a second,
//! concurrent one gets `false` from [`run`] and runs its tasks itself.

#![allow(unsafe_code, reason = "a job borrowed from the caller's stack is run on the helper threads")]

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle helper spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// A task of a job, its lifetime erased: valid until the helper marks the job done.
type Task = *const (dyn Fn(usize) + Sync);

/// One helper's mailbox.
struct Slot {
    /// The number of the last job posted to this helper.
    posted: AtomicU64,
    /// The number of the last job this helper finished.
    done: AtomicU64,
    /// Whether that job panicked.
    panicked: AtomicBool,
    /// Whether the helper is parked (or about to park) and needs an unpark.
    parked: AtomicBool,
    /// The job's task and the task index this helper runs; written by the poster before it
    /// bumps `posted`, read by the helper after it sees the bump.
    job: UnsafeCell<(Option<Task>, usize)>,
}

// SAFETY: `job` is written only by the caller holding the team's lock while the helper is idle
// (its last job done), and read by the helper only between seeing `posted` bumped and storing
// `done`: the two never touch it at once, and the atomics order the accesses.
unsafe impl Sync for Slot {}
// SAFETY: as above; the raw task pointer is only dereferenced while its job runs.
unsafe impl Send for Slot {}

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
                    posted: AtomicU64::new(0),
                    done: AtomicU64::new(0),
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

/// A helper's loop: wait for a job (spinning, then parked), run its task, report.
fn serve(slot: &Slot) {
    let mut seen = 0;
    loop {
        let started = Instant::now();
        let mut spins = 0u32;
        while slot.posted.load(Ordering::Acquire) == seen {
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || started.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            slot.parked.store(true, Ordering::SeqCst);
            if slot.posted.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            slot.parked.store(false, Ordering::SeqCst);
        }
        seen = slot.posted.load(Ordering::Acquire);
        // SAFETY: the poster wrote the job before bumping `posted` and waits for `done`
        // before its task goes out of scope.
        let (task, index) = unsafe { *slot.job.get() };
        let task = task.expect("a posted job has a task");
        // SAFETY: as above, the task outlives this call.
        let result = catch_unwind(AssertUnwindSafe(|| unsafe { (*task)(index) }));
        slot.panicked.store(result.is_err(), Ordering::Relaxed);
        // A payload whose drop panicked would end this thread with its job never done.
        std::mem::forget(result);
        slot.done.store(seen, Ordering::Release);
    }
}

/// Waits, on drop, until every posted helper finished: the task outlives its use even when
/// the caller's own share panics.
struct Joined<'a> {
    slots: &'a [(Arc<Slot>, Thread)],
    job: u64,
}

impl Joined<'_> {
    fn wait(&self) -> bool {
        let mut panicked = false;
        for (slot, _) in self.slots {
            let mut spins = 0u32;
            while slot.done.load(Ordering::Acquire) != self.job {
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

/// Runs `task(0..tasks)` at once on the calling thread and up to `tasks − 1` helpers, thread
/// `i` of `n` taking tasks `i, i + n, …`. Returns `false`, running nothing, when there is no
/// helper or another caller holds them.
pub(crate) fn run(tasks: usize, task: &(dyn Fn(usize) + Sync)) -> bool {
    let team = team();
    if tasks < 2 || team.slots.is_empty() {
        return false;
    }
    // A poisoned lock only means a task panicked; every helper was joined before it unwound.
    let _busy = match team.busy.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return false,
    };
    let threads = tasks.min(team.slots.len() + 1);
    let slots = &team.slots[..threads - 1];
    let strided = move |i: usize| (i..tasks).step_by(threads).for_each(task);
    let strided: &(dyn Fn(usize) + Sync) = &strided;
    // SAFETY: only the lifetime is erased; `Joined` waits for every helper before `strided`
    // can go out of scope.
    let erased: Task = unsafe { std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), Task>(strided) };
    let job = slots[0].0.posted.load(Ordering::Relaxed) + 1;
    for (i, (slot, thread)) in slots.iter().enumerate() {
        // SAFETY: the helper finished its last job (every job is joined before the lock is
        // released) and reads `job` only after the bump below.
        unsafe { *slot.job.get() = (Some(erased), i + 1) };
        slot.posted.store(job, Ordering::SeqCst);
        if slot.parked.load(Ordering::SeqCst) {
            thread.unpark();
        }
    }
    let joined = Joined { slots, job };
    strided(0);
    let panicked = joined.wait();
    drop(joined);
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
            let task = |t: usize| {
                counts[t].fetch_add(1, Ordering::Relaxed);
            };
            while !run(tasks, &task) {
                std::thread::yield_now();
            }
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "round {round}, {tasks} tasks");
            if round % 100 == 0 {
                std::thread::sleep(SPIN * 2);
            }
        }
        let _held = team().busy.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!run(2, &|_| {}), "helpers busy");
    }
}
