//! Channels between Tessera's parties (PROTOCOLS.md section 9).
//!
//! A [`Channel`] frames typed messages ([`frame`]) over any byte stream: an in-memory pipe
//! ([`Channel::pair`], for tests with every party in one process) or a mutually authenticated
//! TLS 1.3 stream ([`tls`], for deployment). Protocol code sees only `Channel`, so it runs
//! unchanged on both. Every receive has a deadline; every frame is bounded before anything is
//! allocated for it; every channel counts its bytes, messages and rounds ([`Meter`]).

pub mod admission;
pub mod certs;
pub mod channel;
pub mod error;
pub mod frame;
pub mod poll;
pub mod report;
pub mod tap;
pub mod tls;

pub use channel::{ABORT, Channel, Meter};
pub use error::{Fault, NetError, Result};
pub use frame::{FrameHeader, MessageKind, SessionId};
pub use report::{LinkCost, PartyReport, Recorder, StageCost, StageKind, UnknownStageKind};
pub use tap::{TappedFrame, Wiretap};
