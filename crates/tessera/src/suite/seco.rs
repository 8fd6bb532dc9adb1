//! Suite `seco`: a gateway runs the layers before a cut with the user as in clientserver; two
//! remote servers hold additive shares of the weights after it and run those layers, the
//! gateway helping. Each party loads its own file of the split model (`tessera split-model`).

use tessera_model::part::{PartWeights, SplitFile};
use tessera_suites::seco::{self, GatewayService, Remote, RemoteRole, RemoteService, UserModel};

use super::{Deployment, Outcome, Role, RoleCount, Served, ServerParty, Suite, UserParty, he_params, party_model};
use crate::error::Result;
use crate::query::{QueryResult, decoded_at};

/// Suite `seco`.
pub(crate) struct Seco;

/// The development cluster's server parties: the gateway, then B and C.
const DEV_SERVERS: [(&str, Role); 3] =
    [("gateway", Role::Gateway), ("remote-b", Role::Remote), ("remote-c", Role::Remote)];

/// `party`'s split file, which must hold what `role` needs: the user the architecture before
/// the cut only; the gateway the layers before the cut with their weights and the architecture
/// after it; a remote server shares of the weights after the cut only (nothing when every layer
/// is before the cut).
fn part<'a>(party: &str, role: Role, file: Option<&'a SplitFile>) -> Result<&'a SplitFile> {
    let refuse = |reason: &str| party_model(party, reason);
    let file = file.ok_or_else(|| refuse("suite seco's parties load their own file of the split model"))?;
    let remote = file.split < file.weighted;
    let fits = match role {
        Role::User => {
            matches!(&file.prefix, Some(p) if matches!(p.weights, PartWeights::Architecture)) && file.suffix.is_none()
        }
        Role::Gateway => {
            matches!(&file.prefix, Some(p) if matches!(p.weights, PartWeights::Plain))
                && match &file.suffix {
                    Some(s) => remote && matches!(s.weights, PartWeights::Architecture),
                    None => !remote,
                }
        }
        Role::Remote => {
            file.prefix.is_none()
                && match &file.suffix {
                    Some(s) => remote && matches!(s.weights, PartWeights::Shares(_)),
                    None => !remote,
                }
        }
        _ => false,
    };
    if !fits {
        return Err(refuse(&format!("not the {role}'s file of a split model (`tessera split-model` writes it)")));
    }
    Ok(file)
}

impl Deployment for Seco {
    // The first remote server in the configuration is B, the second C.
    const ROLES: &'static [RoleCount] =
        &[RoleCount::USERS, RoleCount::exactly(Role::Gateway, 1), RoleCount::exactly(Role::Remote, 2)];
    const EXACT: bool = true;

    fn dev_servers(_holders: usize) -> Vec<(String, Role)> {
        DEV_SERVERS.iter().map(|&(name, role)| (name.to_string(), role)).collect()
    }

    fn service(party: &ServerParty<'_>) -> Result<Served> {
        let he = he_params()?;
        let remotes = party.roster.names(Role::Remote);
        let names = [remotes[0].to_string(), remotes[1].to_string()];
        match party.role {
            Role::Gateway => {
                let file = part(party.name, Role::Gateway, party.split)?;
                let prefix = file.prefix.as_ref().map(|p| p.model.clone()).expect("checked");
                let suffix = file.suffix.as_ref().map(|s| s.model.clone());
                let frames = seco::frame_limits(Some(&prefix), suffix.as_deref(), &he)?;
                let service =
                    GatewayService::new(party.name, (prefix, suffix), he, names, party.net.clone(), party.limits);
                Ok(Served::new(service, party, &[Role::User]).with_frames(frames.user))
            }
            Role::Remote => {
                let file = part(party.name, Role::Remote, party.split)?;
                let b = names[0] == party.name;
                let (role, other) = if b { (RemoteRole::B, &names[1]) } else { (RemoteRole::C, &names[0]) };
                let remote = file.suffix.as_ref().map(|s| match &s.weights {
                    PartWeights::Shares(shares) => Remote::new(role, s.model.clone(), shares.clone(), he.clone()),
                    _ => unreachable!("checked"),
                });
                let suffix = file.suffix.as_ref().map(|s| &*s.model);
                let frames = seco::frame_limits(None, suffix, &he)?;
                let service = RemoteService::new(party.name, role, remote, other, party.net.clone(), party.limits);
                // B is reached by the gateway; C by the gateway and by B, under limits of its own.
                if b {
                    return Ok(Served::new(service, party, &[Role::Gateway]).with_frames(frames.gateway));
                }
                let limits = frames.gateway.with_peer(other, frames.peer);
                Ok(Served::new(service, party, &[Role::Gateway, Role::Remote]).with_frames(limits))
            }
            role => Err(party.not_served(Suite::Seco, role)),
        }
    }

    async fn query(user: &UserParty<'_>, input: &[f32], batch: u32) -> Result<QueryResult> {
        let file = part(user.name, Role::User, user.split)?;
        let prefix = file.prefix.as_ref().map(|p| p.model.clone()).expect("checked");
        let model = UserModel { prefix: prefix.clone(), logits: file.logits, remote: file.split < file.weighted };
        let encoded = prefix.encode_input(input, batch as usize)?;
        let he = he_params()?;
        let (mut channels, connect) = user.connect(Role::Gateway).await?;
        let mut gateway = channels.remove(0);
        // The material does not depend on the input: a deployment prepares it ahead of time.
        let material = seco::prepare(user.name, &model, &he, &mut gateway, batch as usize).await?;
        let user_storage_bytes = material.stored_bytes() as u64;
        let outcome = seco::run(user.name, &model, &mut gateway, material, &encoded).await?;
        gateway.close().await;
        let logits = decoded_at(file.output_bits, &outcome.logits);
        Ok(QueryResult::new(logits, outcome.reports, connect, Outcome::Seco { user_storage_bytes }))
    }
}
