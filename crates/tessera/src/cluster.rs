//! The cluster configuration (TOML): suite, model and its hash, parties with their roles,
//! addresses and certificates, timeouts and the maximum frame size.
//!
//! ```toml
//! suite = "plain"
//! model = "models/minionn-mnist.onnx"
//! model_hash = "…"          # BLAKE3 of the model file; every party checks it
//! ca = "certs/ca.pem"
//! timeout_ms = 10000
//! max_frame_bytes = 67108864
//! frame_budget_bytes = 268435456   # bytes of frames a server reads at once, all connections
//! max_connections = 256            # connections a server holds at once
//! max_connections_per_peer = 32    # of which from one party (certificate name)
//!
//! [[party]]
//! name = "server"
//! role = "server"
//! address = "127.0.0.1:7001"
//! cert = "certs/server.pem"
//! key = "certs/server.key"
//!
//! [[party]]
//! name = "user"
//! role = "user"
//! cert = "certs/user.pem"
//! key = "certs/user.key"
//! ```
//! Relative paths are resolved against the configuration file's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_model::part::SplitFile;
use tessera_model::passes::Merging;
use tessera_net::certs::{KeyUse, dev_cluster};
use tessera_net::tls::Identity;

use tessera_suites::service::Limits;

use crate::error::{ConfigProblem, Error, Result};
use crate::load::LoadedModel;
use crate::suite::{Role, Suite};

/// One party of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConfig {
    /// The party's name: the DNS name its certificate is valid for.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Where it listens (servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Where the other parties connect to it, if not `address` (a relay, a NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reach: Option<String>,
    /// Its certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Its own model file, where the suite gives each party its own (suite seco: its file of
    /// the split model, from `tessera split-model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// BLAKE3 of its own model file, hex; the party checks it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_hash: Option<String>,
}

impl PartyConfig {
    /// Where the other parties connect to this one.
    pub fn reach_address(&self) -> String {
        self.reach.clone().or_else(|| self.address.clone()).unwrap_or_default()
    }
}

/// A whole cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The suite every party runs.
    pub suite: Suite,
    /// The model file (suite seco: the model's split folder; each party loads its own file,
    /// named in its entry).
    pub model: PathBuf,
    /// BLAKE3 of the model file, hex (suite seco: of the model the split was cut from, which
    /// every party's file records).
    pub model_hash: String,
    /// Which merging steps every party runs on the model (all unless an ablation says
    /// otherwise).
    #[serde(default, skip_serializing_if = "is_full")]
    pub merging: Merging,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// Deadline of every receive, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest frame payload accepted.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: u32,
    /// Bytes of frames a server reads at once over all its connections (at least
    /// `max_frame_bytes`).
    #[serde(default = "default_frame_budget")]
    pub frame_budget_bytes: u32,
    /// Connections a server holds at once; more are closed as they arrive.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Connections a server holds at once from one party.
    #[serde(default = "default_max_connections_per_peer")]
    pub max_connections_per_peer: u32,
    /// The parties.
    #[serde(rename = "party")]
    pub parties: Vec<PartyConfig>,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    pub base: PathBuf,
}

/// Sessions a server remembers per process to refuse their reuse (16 bytes and a name each).
const SESSIONS_REMEMBERED: usize = 1 << 16;

fn is_full(merging: &Merging) -> bool {
    *merging == Merging::Full
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_frame() -> u32 {
    64 << 20
}

fn default_frame_budget() -> u32 {
    256 << 20
}

fn default_max_connections() -> u32 {
    256
}

fn default_max_connections_per_peer() -> u32 {
    32
}

/// The parties of a development cluster of `suite` on loopback: names, roles and addresses
/// (`holders` share-holders where the suite has them). `port` hands out listening ports.
pub fn dev_parties(
    suite: Suite,
    holders: usize,
    mut port: impl FnMut() -> Result<u16>,
) -> Result<Vec<(String, Role, Option<String>)>> {
    let mut parties = Vec::new();
    for (name, role) in suite.dev_servers(holders) {
        parties.push((name, role, Some(format!("127.0.0.1:{}", port()?))));
    }
    parties.push(("user".to_string(), Role::User, None));
    Ok(parties)
}

impl ClusterConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |problem: ConfigProblem| Error::Config { path: path.display().to_string(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| err(ConfigProblem::Unreadable(e.to_string())))?;
        let mut c: ClusterConfig = toml::from_str(&text).map_err(|e| err(ConfigProblem::Syntax(e.to_string())))?;
        c.base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for p in &c.parties {
            if p.role != Role::User && p.address.as_deref().is_none_or(|a| a.parse::<std::net::SocketAddr>().is_err()) {
                return Err(err(ConfigProblem::NoAddress { party: p.name.clone() }));
            }
        }
        c.suite.check_roster(&c.roster(), &path.display().to_string())?;
        if [c.timeout_ms, c.max_frame_bytes.into(), c.max_connections.into(), c.max_connections_per_peer.into()]
            .contains(&0)
        {
            return Err(err(ConfigProblem::ZeroLimit));
        }
        if c.frame_budget_bytes < c.max_frame_bytes {
            return Err(err(ConfigProblem::BudgetBelowFrame));
        }
        Ok(c)
    }

    /// A path from the file, resolved against the configuration's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base.join(p) }
    }

    /// The receive deadline.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// A server's admission rules for the frames it receives: `limits` per kind, this
    /// configuration's read budget, and sessions used once.
    pub fn admission(&self, limits: tessera_net::admission::FrameLimits) -> tessera_net::admission::Admission {
        use tessera_net::admission::{Admission, FrameBudget, SessionLog};
        Admission {
            limits,
            budget: FrameBudget::new(self.frame_budget_bytes),
            sessions: SessionLog::new(SESSIONS_REMEMBERED),
        }
    }

    /// The limits of every channel.
    pub fn limits(&self) -> Limits {
        Limits { timeout: self.timeout(), max_frame: self.max_frame_bytes }
    }

    /// Every party's name and role, in configuration order.
    pub fn roster(&self) -> Vec<(String, Role)> {
        self.parties.iter().map(|p| (p.name.clone(), p.role)).collect()
    }

    /// The server party `name` with `role`, or the only party with `role` when no name is given.
    pub fn server(&self, role: Role, name: Option<&str>) -> Result<&PartyConfig> {
        let refuse = |problem: ConfigProblem| Error::Config { path: self.base.display().to_string(), problem };
        if role == Role::User {
            return Err(refuse(ConfigProblem::UserDoesNotServe));
        }
        let candidates = self.parties_with(role);
        match (name, candidates.as_slice()) {
            (Some(n), _) => candidates
                .iter()
                .find(|p| p.name == n)
                .copied()
                .ok_or_else(|| refuse(ConfigProblem::NoPartyNamed { role, name: n.to_string() })),
            (None, [only]) => Ok(only),
            (None, []) => Err(refuse(ConfigProblem::NoParty { role })),
            (None, [_, _, ..]) => Err(refuse(ConfigProblem::AmbiguousRole { role })),
        }
    }

    /// The parties with `role`, in configuration order.
    pub fn parties_with(&self, role: Role) -> Vec<&PartyConfig> {
        self.parties.iter().filter(|p| p.role == role).collect()
    }

    /// The (first) party with `role`.
    pub fn party(&self, role: Role) -> Result<&PartyConfig> {
        self.parties.iter().find(|p| p.role == role).ok_or_else(|| Error::Config {
            path: self.base.display().to_string(),
            problem: ConfigProblem::NoParty { role },
        })
    }

    /// The TLS identity of `party`.
    pub fn identity(&self, party: &PartyConfig) -> Result<Identity> {
        Ok(Identity::from_files(
            &party.name,
            &self.resolve(&self.ca),
            &self.resolve(&party.cert),
            &self.resolve(&party.key),
        )?)
    }

    /// Loads the model and refuses it unless its hash is the agreed one.
    pub fn load_model(&self) -> Result<LoadedModel> {
        let path = self.resolve(&self.model);
        let model = LoadedModel::load_merged(&path, self.merging)?;
        let actual = hex(&model.hash);
        if !actual.eq_ignore_ascii_case(&self.model_hash) {
            return Err(Error::ModelMismatch {
                path: path.display().to_string(),
                expected: self.model_hash.clone(),
                actual,
            });
        }
        Ok(model)
    }

    /// Reads party `party`'s own file of a split model (suite seco) and refuses it unless its
    /// hash is the one its entry names and it was cut from the model the cluster names.
    pub fn load_split(&self, party: &PartyConfig) -> Result<SplitFile> {
        let refuse = |reason: String| Error::Config {
            path: self.base.display().to_string(),
            problem: ConfigProblem::PartyModel { party: party.name.clone(), reason },
        };
        let (Some(path), Some(expected)) = (&party.model, &party.model_hash) else {
            return Err(refuse(
                "its entry needs `model` and `model_hash` (its file from `tessera split-model`)".into(),
            ));
        };
        let path = self.resolve(path);
        let (file, hash) = crate::split::read_split(&path)?;
        let actual = hex(&hash);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::ModelMismatch { path: path.display().to_string(), expected: expected.clone(), actual });
        }
        if !file.source.eq_ignore_ascii_case(&self.model_hash) {
            return Err(refuse(format!(
                "{} was split from the model with hash {}, the cluster config names {}",
                path.display(),
                file.source,
                self.model_hash
            )));
        }
        Ok(file)
    }

    /// Writes a development cluster into `dir`: a fresh CA, a certificate and key per party,
    /// and `cluster.toml`. Returns the configuration's path. For suite seco, `model` is a split
    /// folder (`tessera split-model`): each party's entry names its own file there.
    pub fn write_dev(
        dir: &Path,
        suite: Suite,
        model: &Path,
        parties: &[(String, Role, Option<String>)],
    ) -> Result<PathBuf> {
        let io = |e: std::io::Error| Error::Write { path: dir.display().to_string(), reason: e.to_string() };
        private_dir(dir).map_err(io)?;
        let names: Vec<(&str, KeyUse)> = parties.iter().map(|p| (p.0.as_str(), p.1.key_use())).collect();
        let (ca, pems) = dev_cluster("tessera", &names)?;
        write_new(&dir.join("ca.pem"), ca.as_bytes()).map_err(io)?;
        let model_abs = std::fs::canonicalize(model)
            .map_err(|e| Error::Write { path: model.display().to_string(), reason: e.to_string() })?;
        if suite.splits_model() && !model_abs.is_dir() {
            let reason = "suite seco's parties each load a file of a split folder (`tessera split-model` writes it)";
            let problem = ConfigProblem::PartyModel { party: "every party".into(), reason: reason.into() };
            return Err(Error::Config { path: model_abs.display().to_string(), problem });
        }
        let mut configs = Vec::new();
        let mut sources = Vec::new();
        for ((name, role, address), pem) in parties.iter().zip(pems) {
            let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
            write_new(&dir.join(&cert), pem.cert.as_bytes()).map_err(io)?;
            write_new(&dir.join(&key), pem.key.as_bytes()).map_err(io)?;
            // Suite seco: each party's own file of the split model, and its hash.
            let own =
                if suite.splits_model() {
                    let index = parties.iter().filter(|p| p.1 == *role).position(|p| p.0 == *name).unwrap_or_default();
                    let path = crate::split::party_file(&model_abs, *role, index)
                        .ok_or_else(|| Error::RoleNotInSuite { party: name.clone(), role: *role, suite })?;
                    let (file, hash) = crate::split::read_split(&path)?;
                    sources.push(file.source);
                    Some((path, hex(&hash)))
                } else {
                    None
                };
            let (model, model_hash) = own.unzip();
            configs.push(PartyConfig {
                name: name.clone(),
                role: *role,
                address: address.clone(),
                reach: None,
                cert: cert.into(),
                key: key.into(),
                model,
                model_hash,
            });
        }
        let hash = if suite.splits_model() {
            // The files of one split name the same model.
            let first = sources.first().cloned().unwrap_or_default();
            if let Some(other) = sources.iter().find(|s| **s != first) {
                let reason = format!("files split from different models ({first} and {other})");
                let problem = ConfigProblem::PartyModel { party: "every party".into(), reason };
                return Err(Error::Config { path: model_abs.display().to_string(), problem });
            }
            first
        } else {
            hex(&LoadedModel::load(&model_abs)?.hash)
        };
        let config = ClusterConfig {
            suite,
            model: model_abs,
            model_hash: hash,
            merging: Merging::Full,
            ca: "ca.pem".into(),
            timeout_ms: default_timeout_ms(),
            max_frame_bytes: default_max_frame(),
            frame_budget_bytes: default_frame_budget(),
            max_connections: default_max_connections(),
            max_connections_per_peer: default_max_connections_per_peer(),
            parties: configs,
            base: dir.to_path_buf(),
        };
        let path = dir.join("cluster.toml");
        config.save(&path)?;
        Ok(path)
    }

    /// Writes the configuration to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        std::fs::write(path, toml::to_string_pretty(self).expect("config serializes"))
            .map_err(|e| Error::Write { path: path.display().to_string(), reason: e.to_string() })
    }
}

/// Makes `dir` (and its missing parents) a folder only its owner may enter: created with mode
/// 0700, or set to it when it exists; a symbolic link there is refused.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.file_type().is_dir() => {
            return Err(std::io::Error::other("not a folder (a symbolic link or a file is in the way)"));
        }
        Ok(_) => {}
        Err(_) => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
    }
    #[cfg(unix)]
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(())
}

/// Writes `bytes` to a new file at `path` readable by its owner only. What was there is removed
/// first (a symbolic link itself, never its target), and the file is created exclusively, so
/// the write never follows a link planted meanwhile.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)?.write_all(bytes)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
