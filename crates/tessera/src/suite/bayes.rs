//! Suite `bayes`: the server evaluates the linear layers on the user's BFV ciphertexts with
//! weights sampled from a Bayesian posterior; the user runs the nonlinear layers in the clear.

use tessera_net::SessionId;
use tessera_suites::bayes::{self, BayesServer, BayesService, Sampling};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty, he_params};
use crate::error::{Error, Result};
use crate::query::{QueryResult, decoded};

/// Suite `bayes`.
pub(crate) struct Bayes;

/// Most images in one bayes query: with `S` samples, a layer's frame carries `S × batch` sets
/// of ciphertexts.
pub(crate) const MAX_BATCH: usize = 16;

impl Deployment for Bayes {
    const ROLES: &'static [RoleCount] = &[RoleCount::USERS, RoleCount::exactly(Role::Server, 1)];
    const EXACT: bool = false;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        vec![("server".into(), Role::Server)]
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        if party.role != Role::Server {
            return Err(party.not_served(Suite::Bayes, party.role));
        }
        let model = party.model()?;
        let posterior =
            model.posterior.clone().ok_or_else(|| Error::NoPosterior { model: model.path.display().to_string() })?;
        let he = he_params()?;
        let frames = bayes::frame_limits(&*model.fixed()?, &he, MAX_BATCH)?;
        let server =
            BayesServer::new(model.original.clone(), posterior, model.params()?, he, Sampling::Fresh, MAX_BATCH);
        Ok(Served::new(BayesService::new(party.name, server.into()), party, &[Role::User]).with_frames(frames))
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let fixed = user.model()?.fixed()?;
        let encoded = fixed.encode_input(input, batch as usize)?;
        let he = he_params()?;
        let (mut channels, connect) = user.connect(Role::Server).await?;
        let mut server = channels.remove(0);
        let query = bayes::Query { input: encoded, batch: batch as usize, samples: user.options.samples };
        let outcome = bayes::user(user.name, fixed.clone(), &he, &mut server, SessionId::random(), query).await?;
        server.close().await;
        // The logits are the log of the meta-prediction, so that their softmax is the mean of
        // the samples' softmax.
        let logits = outcome.probabilities.iter().map(|&p| p.max(f64::MIN_POSITIVE).ln() as f32).collect();
        let sample_logits = outcome.samples.iter().map(|l| decoded(&fixed, l)).collect();
        Ok(QueryResult::new(logits, outcome.reports, connect, Outcome::Bayes { sample_logits }))
    }
}
