//! A cluster on this machine: fresh certificates, a configuration with free loopback ports, and
//! every server party started as its own process, by a command the caller builds (the CLI runs
//! `tessera serve`). Dropping it stops them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tessera_model::passes::Merging;
use tessera_net::SessionId;

use crate::cluster::{ClusterConfig, PartyConfig, dev_parties, hex};
use crate::emulate::{LinkProfile, Relay};
use crate::error::{ConfigProblem, Error, Result};
use crate::load::LoadedModel;
use crate::split::{default_split, write_split};
use crate::suite::{Role, Suite};

/// Builds the command that runs one server party of a local cluster, given the party and the
/// configuration file's path. The cluster adds the environment and the pipes.
pub type Launcher = dyn Fn(&PartyConfig, &Path) -> Command + Send + Sync;

/// Running local server processes and the configuration that reaches them.
pub struct LocalCluster {
    dir: PathBuf,
    launch: Arc<Launcher>,
    path: PathBuf,
    threads: String,
    children: Vec<(String, Child)>,
    relays: Vec<Relay>,
    /// The cluster configuration (in a private temporary folder).
    pub config: ClusterConfig,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parties: Vec<_> = self.children.iter().map(|(n, c)| (n, c.id())).collect();
        f.debug_struct("LocalCluster").field("path", &self.path).field("parties", &parties).finish_non_exhaustive()
    }
}

/// How to set up a local cluster.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Share-holders, for suites that have them.
    pub holders: usize,
    /// Emulate this link on every connection to a server (loopback when `None`).
    pub profile: Option<LinkProfile>,
    /// Receive deadline of every party (the configuration's default when `None`).
    pub timeout: Option<Duration>,
    /// Which merging steps every party runs.
    pub merging: Merging,
    /// Suite seco: where to cut the model (weighted layers before the cut;
    /// [`default_split`] when `None`).
    pub split: Option<usize>,
}

fn free_port() -> Result<u16> {
    let io = |e: std::io::Error| Error::Listen { address: "127.0.0.1:0".into(), reason: e.to_string() };
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(l.local_addr().map_err(io)?.port())
}

impl LocalCluster {
    /// Starts `suite` on `model`, each server party as the process `launch` builds for it.
    ///
    /// A listening port is chosen free, then released for its server to bind, and another
    /// process's connection may take it meanwhile (ports come from the ephemeral range): a server
    /// that cannot start is retried on fresh ports, twice.
    pub fn start(
        launch: impl Fn(&PartyConfig, &Path) -> Command + Send + Sync + 'static,
        suite: Suite,
        model: &Path,
        options: &LocalOptions,
    ) -> Result<Self> {
        let launch: Arc<Launcher> = Arc::new(launch);
        let mut attempt = 0;
        loop {
            match Self::start_once(launch.clone(), suite, model, options) {
                Err(Error::ServerExited { party }) if attempt < 2 => {
                    tracing::debug!(%party, "a local server did not start; new ports");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(launch: Arc<Launcher>, suite: Suite, model: &Path, options: &LocalOptions) -> Result<Self> {
        // An unpredictable name, made a private folder by `write_dev`.
        let dir = std::env::temp_dir().join(format!("tessera-local-{}", hex(&SessionId::random().0)));
        let parties = dev_parties(suite, options.holders, free_port)?;
        // Suite seco: a model file is split into the cluster's folder first (a split folder is
        // used as it is).
        let split_dir = dir.join("split");
        let model = if suite.splits_model() && !model.is_dir() {
            let loaded = LoadedModel::load_merged(model, options.merging)?;
            let split = options.split.map_or_else(|| loaded.fixed().map(|f| default_split(&f)), Ok)?;
            write_split(&loaded, split, &split_dir)?;
            split_dir.as_path()
        } else {
            model
        };
        let path = ClusterConfig::write_dev(&dir, suite, model, &parties)?;
        let mut config = ClusterConfig::load(&path)?;
        let mut relays = Vec::new();
        if let Some(profile) = options.profile {
            for p in config.parties.iter_mut().filter(|p| p.role != Role::User) {
                let target = p.address.as_deref().unwrap_or_default().parse().map_err(|_| Error::Config {
                    path: path.display().to_string(),
                    problem: ConfigProblem::NoAddress { party: p.name.clone() },
                })?;
                let relay = Relay::start(profile, target)?;
                p.reach = Some(relay.address().to_string());
                relays.push(relay);
            }
        }
        if let Some(t) = options.timeout {
            config.timeout_ms = t.as_millis().max(1) as u64;
        }
        config.merging = options.merging;
        config.save(&path)?;
        // The parties share this machine: each compute party (holder or server) gets its part
        // of the cores, so their thread pools do not fight over them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let compute = config.parties.iter().filter(|p| p.role.runs_linear_layers()).count();
        let threads = (cores / compute.max(1)).max(1).to_string();
        let mut cluster = Self { dir, launch, path, threads, children: Vec::new(), relays, config };
        for p in cluster.config.parties.clone().iter().filter(|p| p.role != Role::User) {
            cluster.launch(&p.name)?;
        }
        Ok(cluster)
    }

    fn launch(&mut self, name: &str) -> Result<()> {
        let p = self.party(name)?;
        let mut command = (self.launch)(p, &self.path);
        let program = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .env("RAYON_NUM_THREADS", &self.threads)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn { program, reason: e.to_string() })?;
        let stdout = child.stdout.take();
        self.children.push((name.to_string(), child));
        wait_ready(stdout, name, Duration::from_secs(20))
    }

    /// Party `name` of the configuration.
    fn party(&self, name: &str) -> Result<&PartyConfig> {
        self.config.parties.iter().find(|p| p.name == name).ok_or_else(|| Error::Config {
            path: self.path.display().to_string(),
            problem: ConfigProblem::UnknownParty { name: name.to_string() },
        })
    }

    /// The process id of party `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// Kills party `name` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let Some(i) = self.children.iter().position(|(n, _)| n == name) else {
            return Err(Error::Config {
                path: self.path.display().to_string(),
                problem: ConfigProblem::UnknownParty { name: name.to_string() },
            });
        };
        let (_, mut child) = self.children.remove(i);
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Starts party `name` again after [`kill`](Self::kill).
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.launch(name)
    }
}

/// Waits for a server's `listening on …` line (it prints it once it accepts connections).
fn wait_ready(stdout: Option<std::process::ChildStdout>, party: &str, limit: Duration) -> Result<()> {
    let stdout = stdout.ok_or_else(|| Error::ServerExited { party: party.to_string() })?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(limit) {
        Ok(line) if line.starts_with("listening on ") => Ok(()),
        Ok(_) => Err(Error::ServerExited { party: party.to_string() }),
        Err(_) => Err(Error::NotReady { party: party.to_string(), waited: limit }),
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.relays.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
