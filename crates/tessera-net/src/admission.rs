//! What a server checks on every frame its accepted connections receive, at the header and
//! before anything is allocated for the payload: a size limit per message kind, a budget for the
//! bytes of all frames being read at once, and sessions used once per peer.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::channel::{ABORT, MAX_ABORT_REASON};
use crate::error::{NetError, Result};
use crate::frame::{FrameError, FrameHeader, MessageKind, SessionId};

/// The largest payload of each message kind a server accepts; kinds not listed get the default.
/// Named peers may have limits of their own (a server that serves users and another server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLimits {
    default: u32,
    kinds: HashMap<MessageKind, u32>,
    peers: HashMap<String, FrameLimits>,
}

impl FrameLimits {
    /// Every kind up to `default` bytes (0: only the kinds added with [`with`](Self::with)),
    /// but abort frames only up to their longest reason.
    pub fn new(default: u32) -> Self {
        Self { default, kinds: HashMap::from([(ABORT, MAX_ABORT_REASON as u32)]), peers: HashMap::new() }
    }

    /// Also `kind` up to `max` bytes (the channel's own maximum still applies).
    pub fn with(mut self, kind: MessageKind, max: usize) -> Self {
        self.kinds.insert(kind, u32::try_from(max).unwrap_or(u32::MAX));
        self
    }

    /// Frames from `peer` under `limits` instead (its own named peers ignored).
    pub fn with_peer(mut self, peer: &str, limits: FrameLimits) -> Self {
        self.peers.insert(peer.to_string(), FrameLimits { peers: HashMap::new(), ..limits });
        self
    }

    /// The largest payload of `kind`.
    pub fn max(&self, kind: MessageKind) -> u32 {
        self.kinds.get(&kind).copied().unwrap_or(self.default)
    }

    /// The largest payload of `kind` from `peer`.
    pub fn max_from(&self, peer: &str, kind: MessageKind) -> u32 {
        self.peers.get(peer).unwrap_or(self).max(kind)
    }
}

/// Bytes of frames being read at once, over all of a server's connections: a frame waits (up to
/// its deadline) until its payload fits.
#[derive(Debug)]
pub struct FrameBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

impl FrameBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u32) -> Self {
        Self { bytes: Arc::new(Semaphore::new(total as usize)), total }
    }

    /// Holds `len` bytes of the budget until the permit drops; waits until `deadline` at most.
    pub(crate) async fn reserve(
        &self,
        peer: &str,
        len: u32,
        deadline: tokio::time::Instant,
        waited: Duration,
    ) -> Result<OwnedSemaphorePermit> {
        let over = || NetError::Overloaded { peer: peer.into(), len, budget: self.total, waited };
        if len > self.total {
            return Err(over());
        }
        match tokio::time::timeout_at(deadline, self.bytes.clone().acquire_many_owned(len)).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(over()),
        }
    }
}

/// The sessions a server served, per peer: a query's first frame from a peer must carry a
/// session this peer never used here. The last `capacity` sessions are remembered.
#[derive(Debug)]
pub struct SessionLog {
    capacity: usize,
    seen: Mutex<Seen>,
}

/// A peer's use of a session.
type Use = (String, SessionId);

/// The uses remembered, as a set and in the order they came.
type Seen = (HashSet<Use>, VecDeque<Use>);

impl SessionLog {
    /// A log of the last `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), seen: Mutex::new((HashSet::new(), VecDeque::new())) }
    }

    /// Records `session` as used by `peer`; false if it was already.
    pub fn first_use(&self, peer: &str, session: SessionId) -> bool {
        let mut seen = self.seen.lock().expect("session log");
        let key = (peer.to_string(), session);
        if !seen.0.insert(key.clone()) {
            return false;
        }
        seen.1.push_back(key);
        if seen.1.len() > self.capacity
            && let Some(old) = seen.1.pop_front()
        {
            seen.0.remove(&old);
        }
        true
    }
}

/// A server's admission rules, shared by all its connections.
#[derive(Debug)]
pub struct Admission {
    /// Size limits per message kind.
    pub limits: FrameLimits,
    /// The budget of bytes being read.
    pub budget: FrameBudget,
    /// Sessions already served.
    pub sessions: SessionLog,
}

/// One connection's view of its server's [`Admission`]: the session its current query runs.
#[derive(Debug)]
pub(crate) struct Admitted {
    rules: Arc<Admission>,
    /// The session of the current query.
    session: Option<SessionId>,
    /// The session of the last frame refused, whose sender is owed the reason.
    refused: Option<SessionId>,
}

impl Admitted {
    /// A connection under `rules`.
    pub fn new(rules: Arc<Admission>) -> Self {
        Self { rules, session: None, refused: None }
    }

    /// Checks a received header from `peer`: its length against its kind's limit, and a new
    /// session against the sessions `peer` already used here.
    pub fn check(&mut self, peer: &str, h: &FrameHeader) -> Result<()> {
        let max = self.rules.limits.max_from(peer, h.kind);
        if h.len > max {
            let error = FrameError::OversizedKind { kind: h.kind, len: h.len, max };
            return Err(self.refuse(h.session, NetError::Malformed { peer: peer.into(), error }));
        }
        if self.session != Some(h.session) {
            if !self.rules.sessions.first_use(peer, h.session) {
                return Err(self.refuse(h.session, NetError::Replayed { peer: peer.into(), kind: h.kind }));
            }
            self.session = Some(h.session);
        }
        Ok(())
    }

    /// Holds the budget for the payload `h` announces, until the permit drops.
    pub async fn reserve(
        &mut self,
        peer: &str,
        h: &FrameHeader,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<OwnedSemaphorePermit> {
        match self.rules.budget.reserve(peer, h.len, deadline, timeout).await {
            Ok(permit) => Ok(permit),
            Err(e) => Err(self.refuse(h.session, e)),
        }
    }

    /// Records that a frame of `session` was refused with `error`.
    fn refuse(&mut self, session: SessionId, error: NetError) -> NetError {
        self.refused = Some(session);
        error
    }

    /// The session of a frame refused since the last call, if any.
    pub fn take_refused(&mut self) -> Option<SessionId> {
        self.refused.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_kind_and_abort() {
        let l = FrameLimits::new(1000).with(MessageKind(7), 10);
        assert_eq!((l.max(MessageKind(7)), l.max(MessageKind(9))), (10, 1000));
        let only = FrameLimits::new(0).with(MessageKind(7), 10);
        assert_eq!((only.max(MessageKind(7)), only.max(MessageKind(9))), (10, 0));
        assert_eq!(l.max(ABORT), MAX_ABORT_REASON as u32);
        let peer = only.clone().with_peer("server-1", FrameLimits::new(0).with(MessageKind(9), 20));
        assert_eq!((peer.max_from("server-1", MessageKind(9)), peer.max_from("server-1", MessageKind(7))), (20, 0));
        assert_eq!((peer.max_from("user", MessageKind(9)), peer.max_from("user", MessageKind(7))), (0, 10));
        assert_eq!(peer.max_from("server-1", ABORT), MAX_ABORT_REASON as u32);
    }

    #[test]
    fn sessions_once_per_peer_within_capacity() {
        let log = SessionLog::new(2);
        let (a, b, c) = (SessionId([1; 16]), SessionId([2; 16]), SessionId([3; 16]));
        assert!(log.first_use("user", a));
        assert!(!log.first_use("user", a));
        assert!(log.first_use("holder-1", a));
        assert!(log.first_use("user", b));
        assert!(log.first_use("user", c));
        // The oldest entries fell out of the window.
        assert!(log.first_use("user", a));
    }

    #[tokio::test]
    async fn budget_waits_then_refuses() {
        let budget = FrameBudget::new(100);
        let soon = || tokio::time::Instant::now() + Duration::from_millis(50);
        let held = budget.reserve("p", 80, soon(), Duration::from_millis(50)).await.unwrap();
        let refused = budget.reserve("p", 30, soon(), Duration::from_millis(50)).await.unwrap_err();
        assert_eq!(
            refused.to_string(),
            "peer p: a frame of 30 bytes found no room in the read budget of 100 bytes within 50ms"
        );
        drop(held);
        assert!(budget.reserve("p", 100, soon(), Duration::ZERO).await.is_ok());
        assert!(budget.reserve("p", 101, soon(), Duration::ZERO).await.is_err());
    }
}
