//! Suite errors.

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
    #[error("peer {peer}: invalid {message}: {reason}")]
    Protocol {
        /// The peer.
        peer: String,
        /// The message.
        message: &'static str,
        /// What is wrong.
        reason: String,
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
    /// A failure inside this party (task stopped, bad local arguments).
    #[error("{0}")]
    Local(String),
}

impl From<tessera_he::HeError> for SuiteError {
    /// An HE failure inside this party (a peer's malformed ciphertexts are protocol errors,
    /// named where they are read).
    fn from(e: tessera_he::HeError) -> Self {
        SuiteError::Local(format!("HE: {e}"))
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, SuiteError>;
