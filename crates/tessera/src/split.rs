//! A model cut for suite seco, one file per party (`tessera split-model`): the user's holds the
//! architecture before the cut, the gateway's the layers before the cut with their weights and
//! the architecture after it, each remote server's its share of every weight after the cut
//! (B's uniform from the OS CSPRNG, C's the difference). Every file records the BLAKE3 of the
//! model it was cut from, which a cluster configuration names as its `model_hash`; each party's
//! entry in the configuration names its own file and that file's BLAKE3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_field::seed::os_rng;
use tessera_model::fixed::FixedModel;
use tessera_model::part::{ModelPart, PartWeights, SplitFile};
use tessera_model::shares::WeightShares;

use crate::cluster::{hex, private_dir, write_new};
use crate::error::{Error, Result};
use crate::load::LoadedModel;
use crate::suite::Role;

/// The user's file in a split folder.
pub const USER_FILE: &str = "user.tsplit";
/// The gateway's file.
pub const GATEWAY_FILE: &str = "gateway.tsplit";
/// The remote servers' files: B's (first in a configuration), then C's.
pub const REMOTE_FILES: [&str; 2] = ["remote-b.tsplit", "remote-c.tsplit"];

/// The file of the party with `role`, number `index` among that role's parties, in a split
/// folder (`None` for a role suite seco has no place for).
pub fn party_file(dir: &Path, role: Role, index: usize) -> Option<PathBuf> {
    let name = match role {
        Role::User => USER_FILE,
        Role::Gateway => GATEWAY_FILE,
        Role::Remote => REMOTE_FILES.get(index)?,
        _ => return None,
    };
    Some(dir.join(name))
}

/// The split point used where none is given: the first valid one that leaves layers on both
/// sides of the cut, else the first valid one.
pub fn default_split(model: &FixedModel) -> usize {
    let points = model.split_points();
    let weighted = model.weighted_layers();
    points.iter().copied().find(|&l| l > 0 && l < weighted).or(points.first().copied()).unwrap_or(0)
}

/// The four files written by [`write_split`].
#[derive(Debug, Clone)]
pub struct SplitPaths {
    /// The user's.
    pub user: PathBuf,
    /// The gateway's.
    pub gateway: PathBuf,
    /// B's and C's.
    pub remotes: [PathBuf; 2],
}

/// Cuts `model` (calibrated) after `split` weighted layers and deals the weight shares after the
/// cut from the OS CSPRNG: the user's, the gateway's, B's and C's files, each read back from its
/// bytes, so it holds exactly what the party's file holds. An invalid split point is refused
/// with the valid ones.
pub fn split_files(model: &LoadedModel, split: usize) -> Result<[SplitFile; 4]> {
    let fixed = model.fixed()?;
    let valid = fixed.split_points();
    if !valid.contains(&split) {
        return Err(Error::SplitPoint { model: model.path.display().to_string(), split, valid });
    }
    let parts = fixed.split(split)?;
    let file = |prefix: Option<ModelPart>, suffix: Option<ModelPart>| SplitFile {
        meta: model.meta().clone(),
        source: hex(&model.hash),
        split,
        weighted: fixed.weighted_layers(),
        logits: fixed.output_len(),
        output_bits: fixed.output_bits(),
        prefix,
        suffix,
    };
    let part = |model: &Arc<FixedModel>, weights| ModelPart { model: model.clone(), weights };
    let user = file(Some(part(&parts.prefix, PartWeights::Architecture)), None);
    let gateway = file(
        Some(part(&parts.prefix, PartWeights::Plain)),
        parts.suffix.as_ref().map(|s| part(s, PartWeights::Architecture)),
    );
    let [b, c]: [SplitFile; 2] = match &parts.suffix {
        Some(suffix) => WeightShares::deal(suffix, &mut os_rng())
            .map(|shares| file(None, Some(part(suffix, PartWeights::Shares(Arc::new(shares)))))),
        // Every layer is before the cut: the remote servers hold nothing.
        None => [file(None, None), file(None, None)],
    };
    let reread = |f: SplitFile| -> Result<SplitFile> { Ok(SplitFile::from_bytes(&f.to_bytes())?) };
    Ok([reread(user)?, reread(gateway)?, reread(b)?, reread(c)?])
}

/// [`split_files`], written into `dir` (made private; each file readable by its owner only).
pub fn write_split(model: &LoadedModel, split: usize, dir: &Path) -> Result<SplitPaths> {
    let [user, gateway, b, c] = split_files(model, split)?;
    let remotes = [b, c];
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |e: std::io::Error| Error::Write { path, reason: e.to_string() }
    };
    private_dir(dir).map_err(io(dir))?;
    let paths = SplitPaths {
        user: dir.join(USER_FILE),
        gateway: dir.join(GATEWAY_FILE),
        remotes: REMOTE_FILES.map(|f| dir.join(f)),
    };
    let files = [(&paths.user, &user), (&paths.gateway, &gateway)];
    for (path, file) in files.into_iter().chain(paths.remotes.iter().zip(&remotes)) {
        write_new(path, &file.to_bytes()).map_err(io(path))?;
    }
    Ok(paths)
}

/// Reads a split file: the file and the BLAKE3 of its bytes.
pub fn read_split(path: &Path) -> Result<(SplitFile, [u8; 32])> {
    let bytes = std::fs::read(path)
        .map_err(|e| tessera_onnx::ImportError::Io { path: path.display().to_string(), reason: e.to_string() })?;
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok((SplitFile::from_bytes(&bytes)?, hash))
}
