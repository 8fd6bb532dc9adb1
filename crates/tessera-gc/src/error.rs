//! Errors, sorted by who is at fault: malformed bytes from the peer, a well-formed message that
//! breaks the protocol, or a local misuse of the API.

use tessera_net::NetError;

/// A message of the two-party protocol or of the three-party [`crate::gmw`] (for error context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Base OT, the evaluator's point `S`.
    BaseSender,
    /// Base OT, the garbler's points `R_i`.
    BaseReceiver,
    /// OT extension, the evaluator's columns `u`.
    Columns,
    /// OT extension, the garbler's consistency-check challenge.
    Challenge,
    /// OT extension, the evaluator's consistency-check answer.
    Proof,
    /// Garbled tables and offline output decoding.
    Tables,
    /// Online, the evaluator's re-sharing `e = a − c`.
    Reshare,
    /// Online, the garbler's input labels and online output decoding.
    Labels,
    /// Three parties: a peer's base-OT points and hash key.
    MeshReply,
    /// Three parties: a peer's seed for the shares of its input wires.
    Seeds,
    /// Three parties: a peer's triple-OT corrections.
    Corrections,
    /// Three parties: a peer's openings of one round's AND gates.
    Round,
    /// Three parties: a peer's shifts of the conversion OTs.
    Shifts,
}

/// A local input of the protocol (for error context).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A party's input shares.
    Shares,
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcError {
    /// The channel failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A message has the wrong length for what was agreed.
    #[error("{message:?} message has {actual} bytes, expected {expected}")]
    WrongLength {
        /// Which message.
        message: Message,
        /// Agreed length.
        expected: usize,
        /// Received length.
        actual: usize,
    },
    /// A value in a message is not an element of `Z_t`.
    #[error("{message:?} message: value {index} is not below t")]
    OutOfRange {
        /// Which message.
        message: Message,
        /// Its position.
        index: usize,
    },
    /// A base-OT point does not decode to a valid (non-identity) Ristretto point.
    #[error("base OT: point {index} is not a valid Ristretto point")]
    InvalidPoint {
        /// Its position.
        index: usize,
    },
    /// The OT-extension consistency check failed: the evaluator's columns are inconsistent.
    #[error("OT extension: the consistency check failed")]
    ConsistencyCheck,
    /// A chunk arrived out of order or a phase ended before all chunks arrived.
    #[error("{message:?}: chunk {got} where chunk {expected} was due")]
    OutOfOrder {
        /// Which message.
        message: Message,
        /// The chunk due.
        expected: usize,
        /// The chunk given (the chunk count when a phase ended early).
        got: usize,
    },
    /// A local input has the wrong number of values.
    #[error("{input:?}: {actual} values, expected {expected}")]
    WrongCount {
        /// Which input.
        input: Input,
        /// Expected count.
        expected: usize,
        /// Given count.
        actual: usize,
    },
    /// A local input value is not an element of `Z_t`.
    #[error("{input:?}: value {index} is not below t")]
    InputOutOfRange {
        /// Which input.
        input: Input,
        /// Its position.
        index: usize,
    },
    /// A layer with no instances or more than the protocol allows.
    #[error("layer of {actual} instances, allowed 1..={maximum}")]
    TooManyInstances {
        /// Requested.
        actual: usize,
        /// Allowed.
        maximum: usize,
    },
    /// Not an odd modulus in `[3, 2^62)`.
    #[error("modulus {t} is not odd in [3, 2^62)")]
    InvalidModulus {
        /// The modulus.
        t: u64,
    },
    /// A truncation that leaves fewer than one bit.
    #[error("truncation by {shift} bits of {bits}-bit values")]
    InvalidShift {
        /// Bits dropped.
        shift: u32,
        /// Bit length of `t`.
        bits: usize,
    },
    /// A peer of a three-party layer sent a malformed message (`source` says which and how).
    #[error("{peer}: {source}")]
    Peer {
        /// The peer's party name.
        peer: String,
        /// What was wrong.
        source: Box<GcError>,
    },
    /// A max-pool window outside `2..=maximum`.
    #[error("max-pool window {window}, allowed 2..={maximum}")]
    InvalidWindow {
        /// Requested.
        window: usize,
        /// Largest supported.
        maximum: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, GcError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_texts() {
        let e = GcError::WrongLength { message: Message::Tables, expected: 32, actual: 31 };
        assert_eq!(e.to_string(), "Tables message has 31 bytes, expected 32");
        assert_eq!(GcError::ConsistencyCheck.to_string(), "OT extension: the consistency check failed");
        let e = GcError::OutOfOrder { message: Message::Columns, expected: 2, got: 3 };
        assert_eq!(e.to_string(), "Columns: chunk 3 where chunk 2 was due");
        let e = GcError::Peer { peer: "remote-c".into(), source: Box::new(GcError::ConsistencyCheck) };
        assert_eq!(e.to_string(), "remote-c: OT extension: the consistency check failed");
    }
}
