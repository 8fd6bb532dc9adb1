//! What a server lets in: a bounded number of connections, in all and per authenticated party;
//! a pause after a failed accept (descriptors exhausted) instead of a spin; and refusals logged
//! at a bounded rate, so a flood of hostile connections cannot flood the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connection slots: a server's total, and each party's share of them.
#[derive(Debug)]
pub(crate) struct Slots {
    total: Arc<Semaphore>,
    per_peer: u32,
    held: Arc<Mutex<HashMap<String, u32>>>,
}

/// A connection's slot; freed on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    _held: OwnedSemaphorePermit,
}

/// A party's slot; freed on drop.
#[derive(Debug)]
pub(crate) struct PeerSlot {
    peer: String,
    held: Arc<Mutex<HashMap<String, u32>>>,
}

impl Slots {
    /// `total` connections at once, `per_peer` of them from one party.
    pub fn new(total: u32, per_peer: u32) -> Self {
        Self { total: Arc::new(Semaphore::new(total as usize)), per_peer, held: Arc::default() }
    }

    /// A slot for a new connection, if one is free.
    pub fn connection(&self) -> Option<Slot> {
        self.total.clone().try_acquire_owned().ok().map(|held| Slot { _held: held })
    }

    /// A slot for one more connection from `peer`, if it holds fewer than its share.
    pub fn peer(&self, peer: &str) -> Option<PeerSlot> {
        let mut held = self.held.lock().expect("peer slots");
        let count = held.entry(peer.to_string()).or_default();
        if *count >= self.per_peer {
            return None;
        }
        *count += 1;
        Some(PeerSlot { peer: peer.to_string(), held: self.held.clone() })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("peer slots");
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

/// The pause after a failed accept: doubling from 10 ms to 1 s while accepts keep failing.
#[derive(Debug, Default)]
pub(crate) struct Backoff(u32);

impl Backoff {
    /// The pause after one more failure.
    pub fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(10 << self.0.min(7)).min(Duration::from_secs(1));
        self.0 += 1;
        pause
    }

    /// An accept succeeded.
    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Warnings about refused and failed connections, at most [`RefusalLog::PER_SECOND`] a second; the rest
/// go to the debug level and are counted in the next warning.
#[derive(Debug)]
pub(crate) struct RefusalLog {
    window: Mutex<(Instant, u32, u64)>,
}

impl RefusalLog {
    /// Warnings per second at most.
    pub const PER_SECOND: u32 = 5;

    /// An empty log.
    pub fn new() -> Self {
        Self { window: Mutex::new((Instant::now(), 0, 0)) }
    }

    /// Logs that a connection from `from` was refused because `why`.
    pub fn refused(&self, from: &str, why: &dyn std::fmt::Display) {
        self.log(from, "connection refused", why);
    }

    /// Logs that a connection from `from` ended with the error `why`.
    pub fn failed(&self, from: &str, why: &dyn std::fmt::Display) {
        self.log(from, "connection ended with an error", why);
    }

    fn log(&self, from: &str, what: &str, why: &dyn std::fmt::Display) {
        let mut w = self.window.lock().expect("refusal log");
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0, w.2);
        }
        if w.1 < Self::PER_SECOND {
            w.1 += 1;
            let suppressed = std::mem::take(&mut w.2);
            tracing::warn!(%from, error = %why, suppressed, "{what}");
        } else {
            w.2 += 1;
            tracing::debug!(%from, error = %why, "{what}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_connections_in_all_and_per_party() {
        let slots = Slots::new(3, 2);
        let all: Vec<_> = (0..3).map(|_| slots.connection().unwrap()).collect();
        assert!(slots.connection().is_none());
        drop(all);
        assert!(slots.connection().is_some());
        let (a, b) = (slots.peer("user").unwrap(), slots.peer("user").unwrap());
        assert!(slots.peer("user").is_none());
        assert!(slots.peer("other").is_some());
        drop(a);
        assert!(slots.peer("user").is_some());
        drop(b);
    }

    #[test]
    fn backoff_doubles_to_a_second() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(10));
    }
}
