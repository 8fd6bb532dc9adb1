//! The suites a cluster runs, as one enum, and what each is at a deployment: its roles, the
//! services its server parties run, and its user's side of a query.
//!
//! Each suite implements the crate-private `Deployment` trait in its own module here, over the
//! protocol code in `tessera_suites`; [`Suite`]'s methods dispatch to it through one exhaustive
//! `match` (`with_deployment!`), so a new suite is a variant, one line there, and its module
//! (docs/architecture.md).

mod bayes;
mod clientserver;
mod plain;
mod seco;
mod serpens_2;
mod serpens_n;
mod verify;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tessera_he::HeParams;
use tessera_model::part::SplitFile;
use tessera_net::Channel;
use tessera_net::admission::FrameLimits;
use tessera_net::certs::KeyUse;
use tessera_suites::service::{Connect, Limits, Service};

use crate::error::{ConfigProblem, Error, Result};
use crate::load::LoadedModel;
use crate::query::{QueryOptions, QueryResult};
use crate::serve::ServeOptions;

/// A protocol suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Suite {
    /// Plaintext inference over the network: the transport baseline, no privacy.
    #[serde(rename = "plain")]
    #[cfg_attr(feature = "clap", value(name = "plain"))]
    Plain,
    /// Share-holders run the linear layers on shares; a central server evaluates ReLU and max
    /// pool on masked, permuted values.
    #[serde(rename = "serpens-n")]
    #[cfg_attr(feature = "clap", value(name = "serpens-n"))]
    SerpensN,
    /// Two servers hold the shares and evaluate ReLU and max pool between themselves with BFV
    /// and random masks.
    #[serde(rename = "serpens-2")]
    #[cfg_attr(feature = "clap", value(name = "serpens-2"))]
    Serpens2,
    /// A client offloads its convolutions to an untrusted cloud and checks every product.
    #[serde(rename = "verify")]
    #[cfg_attr(feature = "clap", value(name = "verify"))]
    Verify,
    /// HE protects the input; weights sampled from a Bayesian posterior blur the model.
    #[serde(rename = "bayes")]
    #[cfg_attr(feature = "clap", value(name = "bayes"))]
    Bayes,
    /// A user and a model owner: masks prepared under the user's BFV key, every ReLU and max
    /// pool a garbled circuit; both the image and the weights stay private.
    #[serde(rename = "clientserver")]
    #[cfg_attr(feature = "clap", value(name = "clientserver"))]
    ClientServer,
    /// A gateway runs the layers before a cut with the user as in clientserver; two remote
    /// servers hold additive shares of the weights after it and run those layers with the
    /// gateway, any two of the three servers colluding learning nothing.
    #[serde(rename = "seco")]
    #[cfg_attr(feature = "clap", value(name = "seco"))]
    Seco,
}

/// What a party does in its suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Holds the input, receives the result.
    User,
    /// The model owner of suites `plain`, `bayes` and `clientserver`.
    Server,
    /// A share-holder of suite `serpens-n`.
    Holder,
    /// The central server of suite `serpens-n`.
    Central,
    /// One of the two servers of suite `serpens-2`, which hold the shares and run every
    /// nonlinear layer together.
    ShareServer,
    /// The untrusted cloud of suite `verify`.
    Cloud,
    /// The gateway of suite `seco`: holds the layers before the cut and relays between the
    /// user and the remote servers.
    Gateway,
    /// One of the two remote servers of suite `seco`, which hold shares of the weights after
    /// the cut; the first in the configuration is B, the second C.
    Remote,
}

impl Suite {
    /// Every suite.
    pub const ALL: [Suite; 7] =
        [Suite::Plain, Suite::SerpensN, Suite::Serpens2, Suite::Verify, Suite::Bayes, Suite::ClientServer, Suite::Seco];

    /// Its name in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Plain => "plain",
            Suite::SerpensN => "serpens-n",
            Suite::Serpens2 => "serpens-2",
            Suite::Verify => "verify",
            Suite::Bayes => "bayes",
            Suite::ClientServer => "clientserver",
            Suite::Seco => "seco",
        }
    }

    /// Its roles, each with the fewest and most parties it needs.
    pub fn roles(self) -> &'static [RoleCount] {
        with_deployment!(self, D => D::ROLES)
    }

    /// Checks that `parties` has as many parties of each role as the suite needs and none with a
    /// role it has no place for; `path` names the configuration in the error.
    pub fn check_roster(self, parties: &[(String, Role)], path: &str) -> Result<()> {
        let roles = self.roles();
        for &RoleCount { role, fewest, most } in roles {
            let found = parties.iter().filter(|(_, r)| *r == role).count();
            if found < fewest || found > most {
                let problem = ConfigProblem::PartyCount { suite: self, role, fewest, most, found };
                return Err(Error::Config { path: path.to_string(), problem });
            }
        }
        match parties.iter().find(|(_, r)| !roles.iter().any(|c| c.role == *r)) {
            Some((party, role)) => Err(Error::RoleNotInSuite { party: party.clone(), role: *role, suite: self }),
            None => Ok(()),
        }
    }

    /// Whether each party loads its own file of a split model (`tessera split-model`), named
    /// in its configuration entry, instead of the cluster's whole model.
    pub fn splits_model(self) -> bool {
        matches!(self, Suite::Seco)
    }

    /// Whether its logits are exactly the fixed-point reference's (bayes samples other
    /// weights; plain runs the `f32` engine).
    pub fn is_exact(self) -> bool {
        with_deployment!(self, D => D::EXACT)
    }

    /// The server parties of a development cluster, named and in configuration order
    /// (`holders` share-holders where the suite has them).
    pub fn dev_servers(self, holders: usize) -> Vec<(String, Role)> {
        with_deployment!(self, D => D::dev_servers(holders))
    }

    /// The service server party `party` runs.
    pub(crate) fn service(self, party: &ServerParty<'_>) -> Result<Served> {
        with_deployment!(self, D => D::service(party))
    }

    /// The user's side of one query.
    pub(crate) async fn query(self, user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let start = Instant::now();
        let mut result = with_deployment!(self, D => D::query(user, input, batch).await)?;
        result.elapsed = start.elapsed();
        Ok(result)
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Suite::ALL.into_iter().find(|suite| suite.name() == s).ok_or_else(|| {
            let known: Vec<_> = Suite::ALL.iter().map(|s| s.name()).collect();
            format!("unknown suite `{s}` (known: {})", known.join(", "))
        })
    }
}

impl Role {
    /// Its name in configurations and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Server => "server",
            Role::Holder => "holder",
            Role::Central => "central",
            Role::ShareServer => "share-server",
            Role::Cloud => "cloud",
            Role::Gateway => "gateway",
            Role::Remote => "remote",
        }
    }

    /// Every role.
    pub const ALL: [Role; 8] = [
        Role::User,
        Role::Server,
        Role::Holder,
        Role::Central,
        Role::ShareServer,
        Role::Cloud,
        Role::Gateway,
        Role::Remote,
    ];

    /// The TLS side(s) its certificate is for: users only connect, the servers that dial other
    /// servers (holders to `S0`, `S1` to `S2`, the seco gateway to both remote servers and the
    /// first remote server to the second) both accept and connect, the others only accept.
    pub fn key_use(self) -> KeyUse {
        match self {
            Role::User => KeyUse::Client,
            Role::Holder | Role::ShareServer | Role::Gateway | Role::Remote => KeyUse::Both,
            Role::Server | Role::Central | Role::Cloud => KeyUse::Server,
        }
    }

    /// Whether the party runs the model's linear layers (so it needs its share of the cores).
    pub fn runs_linear_layers(self) -> bool {
        match self {
            Role::Server | Role::Holder | Role::ShareServer | Role::Cloud | Role::Gateway | Role::Remote => true,
            Role::User | Role::Central => false,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Role::ALL.into_iter().find(|role| role.name() == s).ok_or_else(|| {
            let known: Vec<_> = Role::ALL.iter().map(|r| r.name()).collect();
            format!("unknown role `{s}` (roles: {})", known.join(", "))
        })
    }
}

/// What each suite returns beyond the logits.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// Suite `plain`: nothing more.
    Plain,
    /// Suite `serpens-n`: nothing more.
    SerpensN,
    /// Suite `serpens-2`: nothing more.
    Serpens2,
    /// Suite `verify`.
    Verify {
        /// Layers whose offloaded product failed its check and were recomputed locally.
        recomputed: Vec<u32>,
        /// The client's operations and online CPU time, beside running the model itself.
        client: Box<tessera_suites::verify::ClientCost>,
    },
    /// Suite `clientserver`.
    ClientServer {
        /// Bytes the user stored between the preprocessing and the online phase.
        user_storage_bytes: u64,
    },
    /// Suite `seco`.
    Seco {
        /// Bytes the user stored between the preprocessing and the online phase.
        user_storage_bytes: u64,
    },
    /// Suite `bayes` (the query's `logits` are the log of the meta-prediction, so that their
    /// softmax is the mean of the samples' softmax).
    Bayes {
        /// Each sampled forward pass's `batch × classes` logits.
        sample_logits: Vec<Vec<f32>>,
    },
}

/// How many parties of a role a suite needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleCount {
    /// The role.
    pub role: Role,
    /// Fewest parties.
    pub fewest: usize,
    /// Most parties.
    pub most: usize,
}

impl RoleCount {
    /// Any number of users, at least one.
    const USERS: RoleCount = RoleCount { role: Role::User, fewest: 1, most: usize::MAX };

    /// Exactly `n` parties of `role`.
    const fn exactly(role: Role, n: usize) -> Self {
        RoleCount { role, fewest: n, most: n }
    }
}

/// Calls `$body` with `$d` naming the [`Deployment`] of `$suite`: the one place that maps a
/// suite to its implementation, checked exhaustive by the compiler.
macro_rules! with_deployment {
    ($suite:expr, $d:ident => $body:expr) => {
        match $suite {
            Suite::Plain => {
                type $d = plain::Plain;
                $body
            }
            Suite::SerpensN => {
                type $d = serpens_n::SerpensN;
                $body
            }
            Suite::Serpens2 => {
                type $d = serpens_2::Serpens2;
                $body
            }
            Suite::Verify => {
                type $d = verify::Verify;
                $body
            }
            Suite::Bayes => {
                type $d = bayes::Bayes;
                $body
            }
            Suite::ClientServer => {
                type $d = clientserver::ClientServer;
                $body
            }
            Suite::Seco => {
                type $d = seco::Seco;
                $body
            }
        }
    };
}
use with_deployment;

/// What a suite is at a deployment.
pub(crate) trait Deployment {
    /// Its roles and how many parties each needs.
    const ROLES: &'static [RoleCount];

    /// Whether its logits are exactly the fixed-point reference's.
    const EXACT: bool;

    /// The server parties of a development cluster.
    fn dev_servers(holders: usize) -> Vec<(String, Role)>;

    /// The service of server party `party`, and who may connect to it.
    fn service(party: &ServerParty<'_>) -> Result<Served>;

    /// The user's side of one query of `batch` images (`input`, normalized).
    fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> impl Future<Output = Result<QueryResult>> + Send;
}

/// The parties of a cluster: name and role, in configuration order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Roster<'a>(pub &'a [(String, Role)]);

impl<'a> Roster<'a> {
    /// The names of the parties with `role`, in order.
    pub fn names(&self, role: Role) -> Vec<&'a str> {
        self.0.iter().filter(|(_, r)| *r == role).map(|(n, _)| n.as_str()).collect()
    }

    /// The first party with `role` (the roster was checked against the suite's roles).
    pub fn first(&self, role: Role) -> &'a str {
        self.names(role).first().copied().unwrap_or_default()
    }
}

/// A server party about to serve.
pub(crate) struct ServerParty<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its role.
    pub role: Role,
    /// Every party of the cluster.
    pub roster: Roster<'a>,
    /// The model, checked against the cluster's hash (`None` where the party loads its own
    /// file of a split model instead).
    pub model: Option<&'a LoadedModel>,
    /// Suite seco: the party's own file of the split model, checked against its hash.
    pub split: Option<&'a SplitFile>,
    /// How it behaves beyond its role.
    pub options: &'a ServeOptions,
    /// How it reaches the other servers.
    pub net: Arc<dyn Connect>,
    /// The channels' limits.
    pub limits: Limits,
}

/// The standard BFV parameters, built once per process: their NTT tables for every prime cost
/// more than a small query's HE work.
pub(crate) fn he_params() -> Result<Arc<HeParams>> {
    static HE: OnceLock<Arc<HeParams>> = OnceLock::new();
    if let Some(he) = HE.get() {
        return Ok(he.clone());
    }
    let he = Arc::new(HeParams::standard()?);
    Ok(HE.get_or_init(|| he).clone())
}

impl<'a> ServerParty<'a> {
    /// The error for a party whose role has no place in `suite`.
    pub fn not_served(&self, suite: Suite, role: Role) -> Error {
        Error::RoleNotInSuite { party: self.name.to_string(), role, suite }
    }

    /// The whole model, which every suite but seco serves.
    pub fn model(&self) -> Result<&'a LoadedModel> {
        self.model.ok_or_else(|| party_model(self.name, "this suite's parties load the cluster's whole model"))
    }
}

/// The error for party `party` without the model it needs.
pub(crate) fn party_model(party: &str, reason: &str) -> Error {
    Error::Config {
        path: "<cluster>".into(),
        problem: ConfigProblem::PartyModel { party: party.to_string(), reason: reason.to_string() },
    }
}

/// What a server party runs, the parties that may connect to it, and how large each kind of
/// frame they send may be.
pub(crate) struct Served {
    /// Serves each connection.
    pub service: Arc<dyn Service>,
    /// The parties whose connections it accepts.
    pub callers: Vec<String>,
    /// The largest payload of each kind it receives (the configured maximum for kinds the suite
    /// does not bound more tightly).
    pub frames: FrameLimits,
}

impl Served {
    /// `service`, called by the parties with `roles` (other than itself).
    pub fn new(service: impl Service, party: &ServerParty<'_>, roles: &[Role]) -> Self {
        let callers = roles
            .iter()
            .flat_map(|&role| party.roster.names(role))
            .filter(|&n| n != party.name)
            .map(String::from)
            .collect();
        Self { service: Arc::new(service), callers, frames: FrameLimits::new(party.limits.max_frame) }
    }

    /// The same, receiving frames only up to `frames`.
    pub fn with_frames(self, frames: FrameLimits) -> Self {
        Self { frames, ..self }
    }
}

/// The user of a query.
pub(crate) struct UserParty<'a> {
    /// Its name.
    pub name: &'a str,
    /// Every party of the cluster.
    pub roster: Roster<'a>,
    /// The model, checked against the cluster's hash (`None` where the user loads its own file
    /// of a split model instead).
    pub model: Option<&'a LoadedModel>,
    /// Suite seco: the user's file of the split model.
    pub split: Option<&'a SplitFile>,
    /// How it runs the query.
    pub options: &'a QueryOptions,
    /// How it reaches the servers.
    pub net: &'a dyn Connect,
}

impl<'a> UserParty<'a> {
    /// The whole model, which every suite but seco runs.
    pub fn model(&self) -> Result<&'a LoadedModel> {
        self.model.ok_or_else(|| party_model(self.name, "this suite's user loads the cluster's whole model"))
    }

    /// Channels to every party with `role`, in order, and how long opening them took.
    pub async fn connect(&self, role: Role) -> Result<(Vec<Channel>, Duration)> {
        let start = Instant::now();
        let names = self.roster.names(role);
        let channels = futures::future::try_join_all(names.iter().map(|n| self.net.connect(n))).await?;
        Ok((channels, start.elapsed()))
    }
}
