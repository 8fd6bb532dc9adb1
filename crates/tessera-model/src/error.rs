//! Errors of the model layer.

/// What can go wrong while building, transforming or running a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A node's input shape does not fit the node.
    #[error("node `{node}`: {detail}")]
    Shape {
        /// The node's name.
        node: String,
        /// What disagrees.
        detail: String,
    },
    /// A model cannot be cut after this many weighted layers.
    #[error("cannot split after {weighted} weighted layers: {reason}")]
    Split {
        /// The requested split point.
        weighted: usize,
        /// Why not.
        reason: String,
    },
    /// A stored model (or model part) whose bytes are malformed.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A pattern the fixed-point reference cannot evaluate exactly.
    #[error("node `{node}` cannot run in fixed point: {reason}")]
    NotFixedPoint {
        /// The node's name.
        node: String,
        /// Why.
        reason: &'static str,
    },
    /// A value exceeds the activation bound ℓx: the masks would no longer hide it, so the
    /// input is refused.
    #[error("node `{node}`: activation needs {bits} bits at product scale, above the bound of {bound} bits")]
    ActivationOverflow {
        /// The node whose input overflowed.
        node: String,
        /// Bits the largest value needs.
        bits: u32,
        /// The bound ℓx.
        bound: u32,
    },
    /// An input of the wrong length.
    #[error("input has {actual} values, the model expects {expected} per image × batch {batch}")]
    InputLength {
        /// Values per image.
        expected: usize,
        /// Batch size.
        batch: usize,
        /// Values given.
        actual: usize,
    },
    /// A weight or input is NaN or infinite.
    #[error("node `{node}`: non-finite value")]
    NonFinite {
        /// Where.
        node: String,
    },
    /// An arithmetic-layer error.
    #[error(transparent)]
    Field(#[from] tessera_field::FieldError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;
