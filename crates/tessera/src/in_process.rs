//! A whole cluster in this process: every server party's service on in-memory channels, and the
//! user's side of each query — the same code that runs across processes over TLS, without
//! certificates or ports. For examples, notebooks and tests.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tessera_model::part::SplitFile;
use tessera_net::{Channel, NetError};
use tessera_suites::service::{Connect, Limits, Service};

use crate::error::Result;
use crate::load::LoadedModel;
use crate::query::{QueryOptions, QueryResult};
use crate::serve::ServeOptions;
use crate::split::{default_split, split_files};
use crate::suite::{Role, Roster, ServerParty, Suite, UserParty};

/// The services of an in-process cluster by party name, each with the parties it accepts.
struct Registry {
    services: HashMap<String, (Arc<dyn Service>, Vec<String>)>,
    limits: Limits,
}

/// A party's connections in an in-process cluster: each one is a fresh in-memory channel whose
/// other end the called party's service serves on its own task.
struct InMemoryConnect {
    me: String,
    /// Weak: the services hold their own party's `InMemoryConnect`.
    registry: Weak<std::sync::OnceLock<Registry>>,
}

impl Connect for InMemoryConnect {
    fn connect<'a>(&'a self, name: &'a str) -> BoxFuture<'a, tessera_suites::Result<Channel>> {
        Box::pin(async move {
            let registry = self.registry.upgrade();
            let Some(((service, callers), limits)) =
                registry.as_ref().and_then(|r| r.get()).and_then(|r| Some((r.services.get(name)?.clone(), r.limits)))
            else {
                return Err(NetError::Tls { peer: name.to_string(), reason: "no such party".into() }.into());
            };
            // As a TLS server refuses a party it does not serve.
            if !callers.contains(&self.me) {
                return Err(NetError::UnexpectedParty { expected: callers }.into());
            }
            let (ours, theirs) = Channel::pair(&self.me, name, limits.timeout, limits.max_frame);
            tokio::spawn(async move {
                if let Err(e) = service.handle(theirs).await {
                    tracing::warn!(error = %e, "in-process connection ended with an error");
                }
            });
            Ok(ours)
        })
    }
}

/// A cluster of one suite whose parties all run in this process.
pub struct InProcessCluster {
    suite: Suite,
    model: LoadedModel,
    /// Suite seco: the user's file of the model, split in memory at its default point.
    user_file: Option<SplitFile>,
    roster: Vec<(String, Role)>,
    registry: Arc<std::sync::OnceLock<Registry>>,
}

impl std::fmt::Debug for InProcessCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessCluster").field("suite", &self.suite).field("roster", &self.roster).finish()
    }
}

impl InProcessCluster {
    /// Starts `suite`'s server parties on `model` (calibrated; with a posterior for bayes), with
    /// `holders` share-holders where the suite has them.
    pub fn start(suite: Suite, model: LoadedModel, holders: usize, options: ServeOptions) -> Result<Self> {
        let mut roster = suite.dev_servers(holders);
        roster.push(("user".into(), Role::User));
        suite.check_roster(&roster, "<in-process cluster>")?;
        let limits = Limits { timeout: Duration::from_secs(60), max_frame: 1 << 30 };
        let registry = Arc::new(std::sync::OnceLock::new());
        let mut services = HashMap::new();
        // A splitting suite's parties each get their own file, as `tessera split-model` writes them.
        let files = match suite.splits_model() {
            true => Some(split_files(&model, default_split(&*model.fixed()?))?),
            false => None,
        };
        let remotes = roster.iter().filter(|(_, r)| *r == Role::Remote).map(|(n, _)| n.as_str()).collect::<Vec<_>>();
        let file_of = |name: &str, role: Role| {
            let [_, gateway, b, c] = files.as_ref()?;
            match role {
                Role::Gateway => Some(gateway),
                Role::Remote if remotes.first() == Some(&name) => Some(b),
                Role::Remote => Some(c),
                _ => None,
            }
        };
        for (name, role) in roster.iter().filter(|(_, role)| *role != Role::User) {
            let net = Arc::new(InMemoryConnect { me: name.clone(), registry: Arc::downgrade(&registry) });
            let party = ServerParty {
                name,
                role: *role,
                roster: Roster(&roster),
                model: Some(&model),
                split: file_of(name, *role),
                options: &options,
                net,
                limits,
            };
            let served = suite.service(&party)?;
            services.insert(name.clone(), (served.service, served.callers));
        }
        let _ = registry.set(Registry { services, limits });
        let user_file = files.map(|[user, ..]| user);
        Ok(Self { suite, model, user_file, roster, registry })
    }

    /// The model the parties run.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    /// Runs one query as the user: `input` holds `batch` normalized images.
    pub async fn query(&self, input: &[f32], batch: u32, options: &QueryOptions) -> Result<QueryResult> {
        let net = InMemoryConnect { me: "user".into(), registry: Arc::downgrade(&self.registry) };
        let user = UserParty {
            name: "user",
            roster: Roster(&self.roster),
            model: Some(&self.model),
            split: self.user_file.as_ref(),
            options,
            net: &net,
        };
        self.suite.query(&user, input, batch).await
    }
}
