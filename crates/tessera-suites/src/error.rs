//! Suite errors, sorted by who is at fault ([`SuiteError::fault`]): a peer that sent a malformed
//! or protocol-breaking message, a peer this party cannot work with, a failure inside this
//! party, or this party's own unusable arguments.

pub use tessera_net::Fault;

/// What can end a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// The channel failed (peer, step and cause inside).
    #[error(transparent)]
    Net(#[from] tessera_net::NetError),
    /// The model refused the input.
    #[error(transparent)]
    Model(#[from] tessera_model::ModelError),
    /// A well-formed frame whose content breaks the protocol.
    #[error("peer {peer}: invalid {message}: {violation}")]
    Protocol {
        /// The peer.
        peer: String,
        /// The message.
        message: &'static str,
        /// What is wrong.
        violation: Violation,
    },
    /// A peer set up for another role or deployment than this party's.
    #[error("peer {peer}: incompatible {message}: {mismatch}")]
    Incompatible {
        /// The peer.
        peer: String,
        /// The message that shows it.
        message: &'static str,
        /// What does not match.
        mismatch: Mismatch,
    },
    /// A value reached a nonlinear layer outside the calibrated activation bound, so the masks
    /// could not hide it; the query is refused.
    #[error("activation overflow detected at nonlinear layer {layer}")]
    ActivationOverflow {
        /// The layer (model node index).
        layer: u32,
    },
    /// An offloaded product failed its check: the peer returned a wrong result.
    #[error("peer {peer}: the product of layer {layer} failed verification")]
    VerificationFailed {
        /// The cloud.
        peer: String,
        /// The layer (model node index).
        layer: u32,
    },
    /// A task of this party stopped before it finished.
    #[error("{task} {}", if *panicked { "panicked" } else { "was cancelled" })]
    Stopped {
        /// What the task was doing.
        task: &'static str,
        /// Whether it panicked (else it was cancelled).
        panicked: bool,
    },
    /// An HE failure inside this party (a peer's malformed ciphertexts and keys are
    /// [`Violation`]s, named where they are read).
    #[error("HE: {0}")]
    He(#[from] tessera_he::HeError),
    /// A field operation of this party failed.
    #[error("field: {0}")]
    Field(#[from] tessera_field::FieldError),
    /// The correlations this party holds have none for a layer.
    #[error("no correlation for layer {layer}")]
    MissingCorrelation {
        /// The layer (model node index).
        layer: u32,
    },
    /// The model reached a nonlinear layer other than the one the query prepared next.
    #[error("layer {layer} out of order")]
    LayerOrder {
        /// The layer (model node index).
        layer: u32,
    },
    /// An in-memory run ended without a server's key, which its view needs.
    #[doc(hidden)]
    #[error("a server kept no key")]
    NoKeyKept,
    /// A suite asked to run with a number of share-holders it does not support.
    #[error("{suite} runs with {} to {} holders, not {holders}", allowed.start(), allowed.end())]
    HolderCount {
        /// The suite.
        suite: &'static str,
        /// Holders asked for.
        holders: usize,
        /// Holders the suite supports.
        allowed: std::ops::RangeInclusive<usize>,
    },
    /// Serpens-2 asked to run with other than two servers.
    #[error("serpens-2 runs with 2 servers, not {servers}")]
    ServerCount {
        /// Servers given.
        servers: usize,
    },
    /// A number of posterior samples outside what the suite supports.
    #[error("{samples} samples: 1 to {max}")]
    Samples {
        /// Samples asked for.
        samples: usize,
        /// The most supported.
        max: usize,
    },
    /// A garbled-circuit layer this party could not build or run (its own inputs or the
    /// model's layer, not a peer's message).
    #[error("garbled circuit of layer {layer}: {reason}")]
    Garbling {
        /// The layer (model node index).
        layer: u32,
        /// What went wrong.
        reason: String,
    },
    /// The model lacks what the operation needs.
    #[error("unsupported model: {needs}")]
    UnsupportedModel {
        /// What the operation needs.
        needs: &'static str,
    },
    /// A layer of the model that this suite cannot run.
    #[error("unsupported model: node {node} is {what}")]
    UnsupportedLayer {
        /// The node's index in the fixed-point model.
        node: u32,
        /// What the node is, and what the suite lacks.
        what: &'static str,
    },
}

impl SuiteError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            SuiteError::Net(e) => e.fault(),
            SuiteError::Protocol { .. } | SuiteError::VerificationFailed { .. } => Fault::Peer,
            SuiteError::Incompatible { .. } => Fault::Incompatible,
            SuiteError::Stopped { .. }
            | SuiteError::He(_)
            | SuiteError::Field(_)
            | SuiteError::MissingCorrelation { .. }
            | SuiteError::LayerOrder { .. }
            | SuiteError::Garbling { .. }
            | SuiteError::NoKeyKept => Fault::Local,
            // The input (or the calibration) does not fit the model this party was given.
            SuiteError::Model(_) | SuiteError::ActivationOverflow { .. } => Fault::Config,
            SuiteError::HolderCount { .. }
            | SuiteError::ServerCount { .. }
            | SuiteError::Samples { .. }
            | SuiteError::UnsupportedModel { .. }
            | SuiteError::UnsupportedLayer { .. } => Fault::Config,
        }
    }

    /// A task of this party that ended with `e` instead of its result.
    pub fn stopped(task: &'static str, e: &tokio::task::JoinError) -> Self {
        SuiteError::Stopped { task, panicked: e.is_panic() }
    }
}

/// How a peer's message breaks the protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The message ended early.
    #[error("{left} bytes left where {expected} were expected")]
    Truncated {
        /// Bytes left.
        left: usize,
        /// Bytes the next field needs.
        expected: usize,
    },
    /// Bytes after the last field.
    #[error("{count} trailing bytes")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The message has another length than its fields fix.
    #[error("{actual} bytes where {expected} were expected")]
    Length {
        /// Bytes received.
        actual: usize,
        /// Bytes the message must have.
        expected: usize,
    },
    /// A field element at or above `t`.
    #[error("a value outside Z_t")]
    OutsideField,
    /// A real value that is NaN or infinite.
    #[error("a value that is not a finite number")]
    NonFinite,
    /// A count or index outside the range the protocol allows.
    #[error("{field} {value} outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// A tag that names nothing the protocol knows.
    #[error("unknown {field} {value}")]
    UnknownTag {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u32,
    },
    /// A node that is no layer the message may be about.
    #[error("node {node} is not {expected}")]
    WrongNode {
        /// The node.
        node: u32,
        /// What the message needs there.
        expected: &'static str,
    },
    /// A frame of another query.
    #[error("a frame of another query")]
    OtherQuery,
    /// Something the protocol requires before this message never came.
    #[error("{what} {value} was never sent")]
    Missing {
        /// What is missing.
        what: &'static str,
        /// Which one.
        value: u64,
    },
    /// A party claimed a place in the query that belongs to another party.
    #[error("{what} {index} belongs to {owner}")]
    NotItsPlace {
        /// The place.
        what: &'static str,
        /// Its index.
        index: u64,
        /// The party configured for it.
        owner: String,
    },
    /// A second message for a place the query has one of.
    #[error("a second {what} {index} for this query")]
    Duplicate {
        /// The message.
        what: &'static str,
        /// The place it claims.
        index: u64,
    },
    /// Parties that must agree on a query do not.
    #[error("the parties disagree on the query ({on})")]
    Disagreement {
        /// What they must agree on.
        on: &'static str,
    },
    /// A malformed ciphertext.
    #[error("ciphertext: {0}")]
    Ciphertext(#[source] tessera_he::HeError),
    /// A malformed public key.
    #[error("key: {0}")]
    Key(#[source] tessera_he::HeError),
    /// An X25519 public key of small order: the agreed secret would be public.
    #[error("an X25519 public key of small order")]
    SmallOrderKey,
    /// A garbled-circuit message that breaks its protocol.
    #[error("layer {layer}: {reason}")]
    Garbling {
        /// The layer (model node index).
        layer: u32,
        /// What is wrong.
        reason: String,
    },
    /// A query whose preprocessed material this party does not hold (never prepared, or
    /// already used: material serves one query only).
    #[error("a query without preprocessed material (never prepared, or already used)")]
    Unprepared,
    /// Cost reports that do not parse.
    #[error("reports: {reason}")]
    Report {
        /// The parser's complaint.
        reason: String,
    },
}

/// How a peer's setup differs from this party's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// The peer addressed this party as another server of the query.
    #[error("addressed as server {got}, this is server {this}")]
    ServerIndex {
        /// The index the peer sent.
        got: usize,
        /// This server's index.
        this: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SuiteError>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors name the peer, the message and what is wrong, and say who is at fault.
    #[test]
    fn display_and_fault() {
        let e = SuiteError::Protocol {
            peer: "holder-2".into(),
            message: "join",
            violation: Violation::OutOfRange { field: "batch", value: 9, min: 1, max: 4 },
        };
        assert_eq!(e.to_string(), "peer holder-2: invalid join: batch 9 outside 1..=4");
        assert_eq!(e.fault(), Fault::Peer);
        let e = SuiteError::HolderCount { suite: "serpens-n", holders: 9, allowed: 2..=8 };
        assert_eq!(e.to_string(), "serpens-n runs with 2 to 8 holders, not 9");
        assert_eq!(e.fault(), Fault::Config);
        assert_eq!(SuiteError::Stopped { task: "the server", panicked: true }.to_string(), "the server panicked");
        let closed = tessera_net::NetError::PeerClosed { peer: "s".into(), step: tessera_net::MessageKind(1) };
        assert_eq!(SuiteError::from(closed).fault(), Fault::Peer);
    }
}
