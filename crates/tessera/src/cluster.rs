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
use tessera_net::certs::dev_cluster;
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
    /// The model file.
    pub model: PathBuf,
    /// BLAKE3 of the model file, hex.
    pub model_hash: String,
    /// The cluster CA certificate (PEM).
    pub ca: PathBuf,
    /// Deadline of every receive, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Largest frame payload accepted.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: u32,
    /// The parties.
    #[serde(rename = "party")]
    pub parties: Vec<PartyConfig>,
    /// The folder relative paths are resolved against.
    #[serde(skip)]
    pub base: PathBuf,
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_max_frame() -> u32 {
    64 << 20
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
        if c.timeout_ms == 0 || c.max_frame_bytes == 0 {
            return Err(err(ConfigProblem::ZeroLimit));
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
        let model = LoadedModel::load(&path)?;
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

    /// Writes a development cluster into `dir`: a fresh CA, a certificate and key per party,
    /// and `cluster.toml`. Returns the configuration's path.
    pub fn write_dev(
        dir: &Path,
        suite: Suite,
        model: &Path,
        parties: &[(String, Role, Option<String>)],
    ) -> Result<PathBuf> {
        let io = |e: std::io::Error| Error::Write { path: dir.display().to_string(), reason: e.to_string() };
        std::fs::create_dir_all(dir).map_err(io)?;
        let names: Vec<&str> = parties.iter().map(|p| p.0.as_str()).collect();
        let (ca, pems) = dev_cluster("tessera", &names)?;
        std::fs::write(dir.join("ca.pem"), ca).map_err(io)?;
        let mut configs = Vec::new();
        for ((name, role, address), pem) in parties.iter().zip(pems) {
            let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
            std::fs::write(dir.join(&cert), &pem.cert).map_err(io)?;
            write_private(&dir.join(&key), &pem.key).map_err(io)?;
            configs.push(PartyConfig {
                name: name.clone(),
                role: *role,
                address: address.clone(),
                reach: None,
                cert: cert.into(),
                key: key.into(),
            });
        }
        let model_abs = std::fs::canonicalize(model).map_err(io)?;
        let hash = hex(&LoadedModel::load(&model_abs)?.hash);
        let config = ClusterConfig {
            suite,
            model: model_abs,
            model_hash: hash,
            ca: "ca.pem".into(),
            timeout_ms: default_timeout_ms(),
            max_frame_bytes: default_max_frame(),
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

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?.write_all(text.as_bytes())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
