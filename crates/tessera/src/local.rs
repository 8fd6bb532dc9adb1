//! A cluster on this machine: fresh certificates, a configuration with free loopback ports, and
//! every server party started as its own `tessera serve` process. Dropping it stops them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cluster::{ClusterConfig, Role, dev_parties};
use crate::emulate::{LinkProfile, Relay};
use crate::error::{Error, Result};

/// Running local server processes and the configuration that reaches them.
#[derive(Debug)]
pub struct LocalCluster {
    dir: PathBuf,
    exe: PathBuf,
    path: PathBuf,
    threads: String,
    cheat: Option<String>,
    children: Vec<(String, Child)>,
    relays: Vec<Relay>,
    /// The cluster configuration (in a private temporary folder).
    pub config: ClusterConfig,
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
    /// Tell a `verify` cloud to cheat this way (`tessera serve --cheat`).
    pub cheat: Option<String>,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Local(e.to_string()))?;
    Ok(l.local_addr().map_err(|e| Error::Local(e.to_string()))?.port())
}

impl LocalCluster {
    /// Starts `suite` on `model`, running each server with the `tessera` executable `exe`.
    ///
    /// A listening port is chosen free, then released for its server to bind, and another
    /// process's connection may take it meanwhile (ports come from the ephemeral range): a server
    /// that cannot start is retried on fresh ports, twice.
    pub fn start(exe: &Path, suite: &str, model: &Path, options: &LocalOptions) -> Result<Self> {
        let mut attempt = 0;
        loop {
            match Self::start_once(exe, suite, model, options) {
                Err(Error::ServerExited { party }) if attempt < 2 => {
                    tracing::debug!(%party, "a local server did not start; new ports");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(exe: &Path, suite: &str, model: &Path, options: &LocalOptions) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("tessera-local-{}-{}", std::process::id(), free_port()?));
        let parties = dev_parties(suite, options.holders, free_port)?;
        let path = ClusterConfig::write_dev(&dir, suite, model, &parties)?;
        let mut config = ClusterConfig::load(&path)?;
        let mut relays = Vec::new();
        if let Some(profile) = options.profile {
            for p in config.parties.iter_mut().filter(|p| p.role != Role::User) {
                let target =
                    p.address.as_deref().unwrap_or_default().parse().map_err(|_| Error::Local("bad address".into()))?;
                let relay = Relay::start(profile, target)?;
                p.reach = Some(relay.address().to_string());
                relays.push(relay);
            }
        }
        if let Some(t) = options.timeout {
            config.timeout_ms = t.as_millis().max(1) as u64;
        }
        config.save(&path)?;
        // The parties share this machine: each compute party (holder or server) gets its part
        // of the cores, so their thread pools do not fight over them.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let compute =
            config.parties.iter().filter(|p| matches!(p.role, Role::Holder | Role::Server | Role::Cloud)).count();
        let threads = (cores / compute.max(1)).max(1).to_string();
        let cheat = options.cheat.clone();
        let mut cluster =
            Self { dir, exe: exe.to_path_buf(), path, threads, cheat, children: Vec::new(), relays, config };
        for p in cluster.config.parties.clone().iter().filter(|p| p.role != Role::User) {
            cluster.launch(&p.name)?;
        }
        Ok(cluster)
    }

    fn launch(&mut self, name: &str) -> Result<()> {
        let p = self
            .config
            .parties
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| Error::Local(format!("no party {name}")))?;
        let mut command = Command::new(&self.exe);
        command.args(["serve", "--role", &p.role.to_string(), "--name", &p.name, "--config"]).arg(&self.path);
        if let (Some(cheat), Role::Cloud) = (&self.cheat, p.role) {
            command.args(["--cheat", cheat]);
        }
        let mut child = command
            .env("RAYON_NUM_THREADS", &self.threads)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Local(format!("cannot start {}: {e}", self.exe.display())))?;
        let stdout = child.stdout.take();
        self.children.push((name.to_string(), child));
        wait_ready(stdout, name, Duration::from_secs(20))
    }

    /// The process id of party `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.iter().find(|(n, _)| n == name).map(|(_, c)| c.id())
    }

    /// Kills party `name` at once (SIGKILL), as a crash would.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        let i = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| Error::Local(format!("no party {name}")))?;
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
    let stdout = stdout.ok_or_else(|| Error::Local("no stdout from the server".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(limit) {
        Ok(line) if line.starts_with("listening on ") => Ok(()),
        Ok(_) => Err(Error::ServerExited { party: party.to_string() }),
        Err(_) => Err(Error::Local(format!("server `{party}` not listening after {limit:?}"))),
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
