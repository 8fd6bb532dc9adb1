//! A record of every frame one party receives, in order: the party's exact view of a query, for
//! the tests that attack it. Only tests attach one (in-memory runs, and a stand-in server over
//! TLS); the serving code never does, so a deployed party records nothing.

use std::sync::{Arc, Mutex};

use crate::frame::FrameHeader;

/// One received frame.
#[derive(Clone)]
pub struct TappedFrame {
    /// Who sent it (the channel's peer).
    pub from: String,
    /// Its header.
    pub header: FrameHeader,
    /// Its payload, as received.
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for TappedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Payloads are a party's view of secrets: lengths only.
        f.debug_struct("TappedFrame")
            .field("from", &self.from)
            .field("header", &self.header)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// A shared, append-only list of received frames; clones record into the same list, so one tap
/// on each of a party's channels gives its whole view.
#[derive(Debug, Clone, Default)]
pub struct Wiretap(Arc<Mutex<Vec<TappedFrame>>>);

impl Wiretap {
    /// An empty tap.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn record(&self, from: &str, header: FrameHeader, payload: &[u8]) {
        let frame = TappedFrame { from: from.to_string(), header, payload: payload.to_vec() };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(frame);
    }

    /// Every frame recorded so far, in the order received.
    pub fn frames(&self) -> Vec<TappedFrame> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
