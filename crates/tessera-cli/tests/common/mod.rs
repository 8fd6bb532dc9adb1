//! What the tests that start local clusters share.

use std::path::Path;
use std::process::Command;

use tessera::Suite;
use tessera::cluster::PartyConfig;
use tessera::local::{LocalCluster, LocalOptions};

/// Starts `suite` on `model`, each server party a `tessera serve` process of the binary under test.
pub fn start_local(suite: Suite, model: &Path, options: &LocalOptions) -> tessera::Result<LocalCluster> {
    let launch = |party: &PartyConfig, config: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tessera"));
        command.args(["serve", "--role", party.role.name(), "--name", &party.name, "--config"]).arg(config);
        command
    };
    LocalCluster::start(launch, suite, model, options)
}
