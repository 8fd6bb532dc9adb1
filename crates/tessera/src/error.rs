//! The library's error type.

/// Everything that can go wrong at the library surface.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model could not be imported.
    #[error(transparent)]
    Import(#[from] tessera_onnx::ImportError),
    /// The model could not be transformed or run.
    #[error(transparent)]
    Model(#[from] tessera_model::ModelError),
    /// An input image or dataset is unusable.
    #[error("input {path}: {problem}")]
    Input {
        /// The file.
        path: String,
        /// What is wrong with it.
        problem: InputProblem,
    },
    /// The model has no fixed-point calibration.
    #[error("{model} has no calibration ({sidecar} is missing): run `tessera calibrate`")]
    NotCalibrated {
        /// The model file.
        model: String,
        /// The expected sidecar file.
        sidecar: String,
    },
    /// The cluster configuration is unusable.
    #[error("cluster config {path}: {reason}")]
    Config {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The model file differs from the one the cluster agreed on.
    #[error("model {path} has hash {actual}, the cluster config requires {expected}")]
    ModelMismatch {
        /// The model file.
        path: String,
        /// Hash in the config.
        expected: String,
        /// Hash of the file.
        actual: String,
    },
    /// A channel failed.
    #[error(transparent)]
    Net(#[from] tessera_net::NetError),
    /// A protocol failed.
    #[error(transparent)]
    Suite(#[from] tessera_suites::SuiteError),
    /// A local process could not be started or reached.
    #[error("local cluster: {0}")]
    Local(String),
    /// A local server process ended before it listened (a taken port, a bad configuration).
    #[error("local cluster: server `{party}` exited before listening (run `tessera serve` by hand to see why)")]
    ServerExited {
        /// The party.
        party: String,
    },
    /// A calibration file is unreadable or does not fit the field.
    #[error("calibration {path}: {reason}")]
    Calibration {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What is wrong with an input file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum InputProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The file is empty.
    #[error("the file is empty")]
    Empty,
    /// The file is larger than allowed.
    #[error("{actual} bytes, above the limit of {maximum}")]
    TooLarge {
        /// Size.
        actual: u64,
        /// Limit.
        maximum: u64,
    },
    /// The format is not recognized or the content is corrupt.
    #[error("corrupt or unsupported format: {0}")]
    Corrupt(String),
    /// The image does not have the model's size.
    #[error("image is {actual_h}×{actual_w}, the model expects {expected_h}×{expected_w}")]
    WrongSize {
        /// Height found.
        actual_h: usize,
        /// Width found.
        actual_w: usize,
        /// Height expected.
        expected_h: usize,
        /// Width expected.
        expected_w: usize,
    },
    /// The image does not have the model's channel count.
    #[error("image has {actual} channel(s), the model expects {expected}")]
    WrongChannels {
        /// Channels found.
        actual: usize,
        /// Channels expected.
        expected: usize,
    },
    /// Image and label counts differ.
    #[error("{images} images but {labels} labels")]
    LabelCount {
        /// Images.
        images: usize,
        /// Labels.
        labels: usize,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn input(path: &std::path::Path, problem: InputProblem) -> Self {
        Error::Input { path: path.display().to_string(), problem }
    }
}
