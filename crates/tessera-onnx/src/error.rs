//! Import errors: each names what is wrong and where.

/// Why a model was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Io {
        /// Path.
        path: String,
        /// OS error text.
        reason: String,
    },
    /// The bytes are not an ONNX protobuf.
    #[error("not an ONNX model: {0}")]
    NotProtobuf(String),
    /// The file is larger than the configured maximum.
    #[error("model file is {actual} bytes, above the limit of {maximum}")]
    TooLarge {
        /// Size.
        actual: u64,
        /// Limit.
        maximum: u64,
    },
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// The default-domain opset is outside what Tessera supports.
    #[error("opset {version} is not supported (supported: {min}–{max})")]
    UnsupportedOpset {
        /// Declared version (0 when missing).
        version: i64,
        /// Lowest supported.
        min: i64,
        /// Highest supported.
        max: i64,
    },
    /// An op Tessera does not implement.
    #[error("node `{node}`: unsupported op `{op}`")]
    UnsupportedOp {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
    },
    /// An attribute value Tessera does not implement or that is malformed.
    #[error("node `{node}` ({op}): attribute `{attribute}`: {detail}")]
    Attribute {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Attribute name.
        attribute: String,
        /// What is wrong.
        detail: String,
    },
    /// A node reads a tensor that neither an initializer nor an earlier node provides.
    #[error("node `{node}` ({op}): input `{input}` is not defined")]
    MissingInput {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Missing tensor name.
        input: String,
    },
    /// A node needs a constant (weight, shape) that is not an initializer.
    #[error("node `{node}` ({op}): `{input}` must be a constant initializer")]
    MissingInitializer {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// Tensor name.
        input: String,
    },
    /// A tensor with a wrong rank, size, type or content.
    #[error("tensor `{tensor}`: {detail}")]
    Tensor {
        /// Tensor name.
        tensor: String,
        /// What is wrong.
        detail: String,
    },
    /// The graph input is not one static `N × C × H × W` (or `N × K`) image batch.
    #[error("graph input: {0}")]
    Input(String),
    /// Shapes that do not fit together.
    #[error("node `{node}` ({op}): {detail}")]
    Shape {
        /// Node name.
        node: String,
        /// Op type.
        op: String,
        /// What disagrees.
        detail: String,
    },
    /// A limit on sizes was exceeded.
    #[error("{what} has {actual} elements, above the limit of {maximum}")]
    Oversized {
        /// What.
        what: String,
        /// Size.
        actual: u64,
        /// Limit.
        maximum: u64,
    },
    /// The `tessera` metadata entry is not valid JSON of the expected form.
    #[error("metadata `tessera`: {0}")]
    Metadata(String),
    /// The IR refused the model.
    #[error(transparent)]
    Model(#[from] tessera_model::ModelError),
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ImportError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_node_and_op() {
        let e = ImportError::UnsupportedOp { node: "n7".into(), op: "Softmax".into() };
        assert_eq!(e.to_string(), "node `n7`: unsupported op `Softmax`");
    }
}
