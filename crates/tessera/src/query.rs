//! The user's side of a query against a running cluster, and what a query returns.

use std::time::Duration;

use tessera_field::fixed;
use tessera_model::fixed::FixedModel;
use tessera_model::part::SplitFile;
use tessera_net::PartyReport;
use tessera_suites::{serpens_2, verify};

use crate::cluster::ClusterConfig;
use crate::dial::TlsConnect;
use crate::error::Result;
use crate::load::LoadedModel;
pub use crate::suite::Outcome;
use crate::suite::{Role, Roster, UserParty};

/// What a query returned, with its cost.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// `batch × classes` logits.
    pub logits: Vec<f32>,
    /// Every party's cost report, the user's first.
    pub reports: Vec<PartyReport>,
    /// Wall time of the query (connections included).
    pub elapsed: Duration,
    /// Wall time of the connection setup.
    pub connect: Duration,
    /// What the suite returned beyond the logits.
    pub outcome: Outcome,
}

impl QueryResult {
    /// A result whose elapsed time the caller fills in.
    pub(crate) fn new(logits: Vec<f32>, reports: Vec<PartyReport>, connect: Duration, outcome: Outcome) -> Self {
        Self { logits, reports, elapsed: Duration::ZERO, connect, outcome }
    }

    /// verify: the layers recomputed locally after a failed check (empty for other suites).
    pub fn recomputed(&self) -> &[u32] {
        match &self.outcome {
            Outcome::Verify { recomputed, .. } => recomputed,
            Outcome::Plain
            | Outcome::SerpensN
            | Outcome::Serpens2
            | Outcome::Bayes { .. }
            | Outcome::ClientServer { .. }
            | Outcome::Seco { .. } => &[],
        }
    }

    /// verify: the client's operations and online CPU time (`None` for other suites).
    pub fn client_cost(&self) -> Option<&tessera_suites::verify::ClientCost> {
        match &self.outcome {
            Outcome::Verify { client, .. } => Some(client.as_ref()),
            Outcome::Plain
            | Outcome::SerpensN
            | Outcome::Serpens2
            | Outcome::Bayes { .. }
            | Outcome::ClientServer { .. }
            | Outcome::Seco { .. } => None,
        }
    }

    /// bayes: each sample's logits (empty for other suites).
    pub fn sample_logits(&self) -> &[Vec<f32>] {
        match &self.outcome {
            Outcome::Bayes { sample_logits } => sample_logits,
            Outcome::Plain
            | Outcome::SerpensN
            | Outcome::Serpens2
            | Outcome::Verify { .. }
            | Outcome::ClientServer { .. }
            | Outcome::Seco { .. } => &[],
        }
    }

    /// clientserver and seco: the bytes the user stored between preprocessing and the online phase
    /// (`None` for other suites).
    pub fn user_storage_bytes(&self) -> Option<u64> {
        match &self.outcome {
            Outcome::ClientServer { user_storage_bytes } | Outcome::Seco { user_storage_bytes } => {
                Some(*user_storage_bytes)
            }
            Outcome::Plain | Outcome::SerpensN | Outcome::Serpens2 | Outcome::Verify { .. } | Outcome::Bayes { .. } => {
                None
            }
        }
    }
}

/// Logits in `Z_t` as real numbers at the model's output scale.
pub(crate) fn decoded(model: &FixedModel, logits: &[u64]) -> Vec<f32> {
    decoded_at(model.output_bits(), logits)
}

/// Logits in `Z_t` as real numbers with `bits` fractional bits.
pub(crate) fn decoded_at(bits: u32, logits: &[u64]) -> Vec<f32> {
    logits.iter().map(|&v| fixed::decode(v, bits) as f32).collect()
}

/// Sampled forward passes per bayes query unless asked otherwise.
pub const DEFAULT_SAMPLES: usize = 4;

/// How the user runs a query, beyond its input.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// verify: how the client checks the cloud.
    pub verify: verify::ClientSettings,
    /// bayes: sampled forward passes averaged into the prediction.
    pub samples: usize,
    /// serpens-2: where a nonlinear layer's items reach their key owner.
    pub layout: serpens_2::Layout,
}

impl Default for QueryOptions {
    fn default() -> Self {
        let verify = verify::ClientSettings {
            disguise: verify::Disguise::Pad,
            challenge: verify::Challenge::Field,
            repetitions: 1,
            recompute_on_failure: false,
            narrow_pad: true,
        };
        Self { verify, samples: DEFAULT_SAMPLES, layout: serpens_2::Layout::Hidden }
    }
}

/// Runs one query of the cluster's suite as its user, with default options.
pub async fn query(config: &ClusterConfig, model: &LoadedModel, input: &[f32], batch: u32) -> Result<QueryResult> {
    query_with(config, model, input, batch, &QueryOptions::default()).await
}

/// Runs one query of the cluster's suite as its user: `input` holds `batch` normalized images.
/// Suite seco's user runs from its own file of the split model, which its configuration entry
/// names (as [`query_split`]); `model` is not read there.
pub async fn query_with(
    config: &ClusterConfig,
    model: &LoadedModel,
    input: &[f32],
    batch: u32,
    options: &QueryOptions,
) -> Result<QueryResult> {
    let me = config.party(Role::User)?;
    let split = match config.suite.splits_model() {
        true => Some(config.load_split(me)?),
        false => None,
    };
    let net = TlsConnect::new(config, me)?;
    let roster = config.roster();
    let split = split.as_ref();
    let user = UserParty { name: &me.name, roster: Roster(&roster), model: Some(model), split, options, net: &net };
    config.suite.query(&user, input, batch).await
}

/// Runs one query of a suite seco cluster as its user, from the user's own file of the split
/// model (`tessera split-model` writes it; [`ClusterConfig::load_split`] reads and checks it):
/// `input` holds `batch` normalized images.
pub async fn query_split(config: &ClusterConfig, user: &SplitFile, input: &[f32], batch: u32) -> Result<QueryResult> {
    let me = config.party(Role::User)?;
    let net = TlsConnect::new(config, me)?;
    let roster = config.roster();
    let options = QueryOptions::default();
    let user = UserParty {
        name: &me.name,
        roster: Roster(&roster),
        model: None,
        split: Some(user),
        options: &options,
        net: &net,
    };
    config.suite.query(&user, input, batch).await
}
