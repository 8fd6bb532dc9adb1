//! Network errors, sorted by who is at fault: a malformed frame, a well-formed frame that breaks
//! the protocol, a peer that vanished or stalled, a peer that is not who it must be.

use std::time::Duration;

use crate::frame::{FrameError, MessageKind};

/// What can go wrong on a channel.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The peer sent bytes that are not a valid frame.
    #[error("peer {peer}: malformed frame: {error}")]
    Malformed {
        /// The peer.
        peer: String,
        /// What is wrong.
        error: FrameError,
    },
    /// A valid frame of a kind the protocol does not expect now.
    #[error("peer {peer}: expected message kind {expected}, got {got}")]
    UnexpectedKind {
        /// The peer.
        peer: String,
        /// Expected.
        expected: MessageKind,
        /// Received.
        got: MessageKind,
    },
    /// A frame of another session (or a replay of an old one).
    #[error("peer {peer}: frame for another session (step {step})")]
    WrongSession {
        /// The peer.
        peer: String,
        /// The expected message kind.
        step: MessageKind,
    },
    /// A frame for another layer than the protocol is at.
    #[error("peer {peer}: frame for layer {got}, expected layer {expected}")]
    WrongLayer {
        /// The peer.
        peer: String,
        /// Expected layer.
        expected: u32,
        /// Received layer.
        got: u32,
    },
    /// No frame arrived in time.
    #[error("peer {peer}: no message within {waited:?} (waiting for kind {step})")]
    Timeout {
        /// The peer.
        peer: String,
        /// The message kind awaited.
        step: MessageKind,
        /// How long we waited.
        waited: Duration,
    },
    /// The peer closed the connection (or it broke) mid-protocol.
    #[error("peer {peer}: connection closed (waiting for kind {step})")]
    PeerClosed {
        /// The peer.
        peer: String,
        /// The message kind awaited.
        step: MessageKind,
    },
    /// The peer started a query with a session it already used here (a replay).
    #[error("peer {peer}: session already used (message kind {kind})")]
    Replayed {
        /// The peer.
        peer: String,
        /// The kind of the frame that reused it.
        kind: MessageKind,
    },
    /// This server is reading too many frames at once to take the peer's.
    #[error("peer {peer}: a frame of {len} bytes found no room in the read budget of {budget} bytes within {waited:?}")]
    Overloaded {
        /// The peer.
        peer: String,
        /// The frame's declared length.
        len: u32,
        /// The server's budget.
        budget: u32,
        /// How long the frame waited.
        waited: Duration,
    },
    /// The peer gave up on the query and said why.
    #[error("peer {peer} aborted the query (while we waited for kind {step}): {reason}")]
    Aborted {
        /// The party that aborted.
        peer: String,
        /// What we were waiting for.
        step: MessageKind,
        /// Its reason, as it stated it.
        reason: String,
    },
    /// The link to the peer failed (refused, reset, unreachable).
    #[error("peer {peer}: I/O error: {reason}")]
    Io {
        /// The peer.
        peer: String,
        /// The OS error.
        reason: String,
    },
    /// The TLS handshake failed (no certificate, unknown CA, wrong name, …).
    #[error("TLS with {peer}: {reason}")]
    Tls {
        /// The peer (address or expected party).
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer authenticated, but as a party that may not connect here.
    #[error("peer authenticated as none of the expected parties {expected:?}")]
    UnexpectedParty {
        /// Parties accepted here.
        expected: Vec<String>,
    },
    /// Certificates or keys could not be read or made.
    #[error("certificate material: {0}")]
    Certificate(String),
    /// A private key file that others could read or replace.
    #[error("key file {path}: {problem}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: KeyFileProblem,
    },
}

/// Why a private key file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileProblem {
    /// It is a symbolic link (whoever controls the link chooses the key).
    #[error("is a symbolic link; name the key file itself, readable by its owner only (chmod 600)")]
    Symlink,
    /// Its group or others may read or write it.
    #[error("has mode {mode:03o}, open to group or others; fix it with chmod 600")]
    Loose {
        /// Its permission bits.
        mode: u32,
    },
    /// It was replaced while it was being opened.
    #[error("changed while it was being opened")]
    Replaced,
}

/// Who is at fault for an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// A peer misbehaved: a malformed or protocol-breaking message, a stall, a hang-up.
    Peer,
    /// A peer is not one this party can work with (its identity, its role or its settings).
    Incompatible,
    /// Something failed inside this party (I/O, a stopped task, a local computation).
    Local,
    /// This party's own arguments or configuration are unusable.
    Config,
}

impl NetError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            NetError::Malformed { .. }
            | NetError::UnexpectedKind { .. }
            | NetError::WrongSession { .. }
            | NetError::WrongLayer { .. }
            | NetError::Timeout { .. }
            | NetError::PeerClosed { .. }
            | NetError::Aborted { .. }
            | NetError::Replayed { .. }
            | NetError::Io { .. } => Fault::Peer,
            NetError::Tls { .. } | NetError::UnexpectedParty { .. } => Fault::Incompatible,
            NetError::Certificate(_) | NetError::Overloaded { .. } => Fault::Local,
            NetError::KeyFile { .. } => Fault::Config,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, NetError>;
