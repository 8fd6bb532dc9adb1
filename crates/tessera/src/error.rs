//! The library's error type.

use crate::suite::{Role, Suite};

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
    #[error("cluster config {path}: {problem}")]
    Config {
        /// The file (or the folder of its party files).
        path: String,
        /// What is wrong.
        problem: ConfigProblem,
    },
    /// A party's role has no place in the cluster's suite.
    #[error("party `{party}`: role `{role}` has no place in suite `{suite}`")]
    RoleNotInSuite {
        /// The party.
        party: String,
        /// Its role.
        role: Role,
        /// The suite.
        suite: Suite,
    },
    /// Suite bayes was asked to serve a model without a posterior.
    #[error("model {model} has no posterior: suite bayes needs a Bayesian model")]
    NoPosterior {
        /// The model file.
        model: String,
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
    /// The HE parameters could not be built.
    #[error(transparent)]
    He(#[from] tessera_he::HeError),
    /// A server could not listen on its address.
    #[error("cannot listen on {address}: {reason}")]
    Listen {
        /// The configured address.
        address: String,
        /// The OS error.
        reason: String,
    },
    /// A file or folder could not be written.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file or folder.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// A local server process could not be started.
    #[error("local cluster: cannot start `{program}`: {reason}")]
    Spawn {
        /// The executable.
        program: String,
        /// The OS error.
        reason: String,
    },
    /// A local server process did not print its readiness line in time.
    #[error("local cluster: server `{party}` not listening after {waited:?}")]
    NotReady {
        /// The party.
        party: String,
        /// How long it was given.
        waited: std::time::Duration,
    },
    /// A local server process ended before it listened (a taken port, a bad configuration).
    #[error("local cluster: server `{party}` exited before listening (run `tessera serve` by hand to see why)")]
    ServerExited {
        /// The party.
        party: String,
    },
    /// A split point at which the model cannot be cut for suite seco.
    #[error("{model} cannot be split after {split} weighted layers (valid split points: {valid:?})")]
    SplitPoint {
        /// The model file.
        model: String,
        /// The split point asked for.
        split: usize,
        /// The model's valid split points.
        valid: Vec<usize>,
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

/// What is wrong with a cluster configuration.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Unreadable(String),
    /// The TOML does not parse into a configuration.
    #[error("{0}")]
    Syntax(String),
    /// A server party has no usable listening address.
    #[error("party `{party}` needs an address of the form host-ip:port")]
    NoAddress {
        /// The party.
        party: String,
    },
    /// The suite needs another number of parties with a role.
    #[error("suite `{suite}` needs {} parties with role `{role}`, not {found}", count(*fewest, *most))]
    PartyCount {
        /// The suite.
        suite: Suite,
        /// The role.
        role: Role,
        /// Fewest it needs.
        fewest: usize,
        /// Most it takes.
        most: usize,
        /// How many the configuration has.
        found: usize,
    },
    /// The timeout, the frame limit or a connection limit is zero.
    #[error("timeout_ms, max_frame_bytes, max_connections and max_connections_per_peer must be positive")]
    ZeroLimit,
    /// The read budget cannot hold one largest frame.
    #[error("frame_budget_bytes must be at least max_frame_bytes")]
    BudgetBelowFrame,
    /// No party has the role.
    #[error("no party with role `{role}`")]
    NoParty {
        /// The role.
        role: Role,
    },
    /// No party with the role has the name.
    #[error("no {role} named `{name}`")]
    NoPartyNamed {
        /// The role.
        role: Role,
        /// The name asked for.
        name: String,
    },
    /// No party has the name.
    #[error("no party named `{name}`")]
    UnknownParty {
        /// The name asked for.
        name: String,
    },
    /// Several parties have the role and none was named.
    #[error("several parties are `{role}`: name one with --name")]
    AmbiguousRole {
        /// The role.
        role: Role,
    },
    /// The user was asked to serve.
    #[error("the user does not serve")]
    UserDoesNotServe,
    /// A party's own model file (suite seco: its file of the split model) is missing,
    /// unreadable, or not what its role needs.
    #[error("party `{party}`'s model: {reason}")]
    PartyModel {
        /// The party.
        party: String,
        /// What is wrong.
        reason: String,
    },
}

/// `n`, `at least n` or `fewest to most`.
fn count(fewest: usize, most: usize) -> String {
    match (fewest, most) {
        (f, m) if f == m => f.to_string(),
        (f, usize::MAX) => format!("at least {f}"),
        (f, m) => format!("{f} to {m}"),
    }
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

pub use tessera_net::Fault;

impl Error {
    /// Who is at fault: a peer, an incompatible peer, this party, or its own arguments and files.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Net(e) => e.fault(),
            Error::Suite(e) => e.fault(),
            Error::Import(_)
            | Error::Model(_)
            | Error::Input { .. }
            | Error::NotCalibrated { .. }
            | Error::Config { .. }
            | Error::RoleNotInSuite { .. }
            | Error::NoPosterior { .. }
            | Error::ModelMismatch { .. }
            | Error::SplitPoint { .. }
            | Error::Calibration { .. } => Fault::Config,
            Error::He(_)
            | Error::Listen { .. }
            | Error::Write { .. }
            | Error::Spawn { .. }
            | Error::NotReady { .. }
            | Error::ServerExited { .. } => Fault::Local,
        }
    }

    pub(crate) fn input(path: &std::path::Path, problem: InputProblem) -> Self {
        Error::Input { path: path.display().to_string(), problem }
    }
}
