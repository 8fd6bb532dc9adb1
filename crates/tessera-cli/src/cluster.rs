//! `tessera serve`, `tessera certs` and `tessera infer --suite`.

use std::path::Path;

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tessera::cluster::{ClusterConfig, PartyConfig, dev_parties};
use tessera::cost::QueryCost;
use tessera::eval::argmax;
use tessera::input::load_input;
use tessera::local::{LocalCluster, LocalOptions};
use tessera::net::{PartyReport, StageKind};
use tessera::{LoadedModel, QueryOptions, QueryResult, Role, ServeOptions, Suite, query_split, query_with};

use crate::output::{Table, print_json};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// How a local cluster starts each server party: `tessera serve` from this executable, the
/// `verify` cloud told to cheat as `cheat` says.
pub fn launcher(
    cheat: Option<String>,
) -> Result<impl Fn(&PartyConfig, &Path) -> Command + Clone + Send + Sync + 'static> {
    let exe = std::env::current_exe().context("locating the tessera executable")?;
    Ok(move |party: &PartyConfig, config: &Path| {
        let mut command = Command::new(&exe);
        command.args(["serve", "--role", party.role.name(), "--name", &party.name, "--config"]).arg(config);
        if let (Some(cheat), Role::Cloud) = (&cheat, party.role) {
            command.args(["--cheat", cheat]);
        }
        command
    })
}

/// Runs one party until SIGINT or SIGTERM; `model` replaces the file its entry names (suite
/// seco), still checked against the entry's hash.
pub fn serve(role: Role, name: Option<&str>, options: ServeOptions, config: &Path, model: Option<&Path>) -> Result<()> {
    let mut config = ClusterConfig::load(config)?;
    if let Some(model) = model {
        if !config.suite.splits_model() {
            bail!(
                "--model names a party's own file of a split model (suite seco); suite `{}` loads the cluster's model",
                config.suite
            );
        }
        let me = config.server(role, name)?.name.clone();
        let path = std::fs::canonicalize(model).with_context(|| format!("reading {}", model.display()))?;
        config.parties.iter_mut().filter(|p| p.name == me).for_each(|p| p.model = Some(path.clone()));
    }
    runtime()?.block_on(async {
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        // The readiness line local clusters wait for.
        let ready = |addr| {
            use std::io::Write;
            crate::outln!("listening on {addr}");
            let _ = std::io::stdout().flush();
        };
        tessera::serve(&config, role, name, options, ready, shutdown).await
    })?;
    Ok(())
}

/// Writes a development cluster with consecutive ports from `port`.
pub fn certs(out: &Path, model: &Path, suite: Suite, holders: usize, port: u16) -> Result<()> {
    let mut next = port;
    let parties = dev_parties(suite, holders, || {
        next += 1;
        Ok(next - 1)
    })?;
    let path = ClusterConfig::write_dev(out, suite, model, &parties)?;
    crate::outln!("wrote a development CA, certificates for {} parties and {}", parties.len(), path.display());
    for (name, role, address) in &parties {
        if let Some(a) = address {
            crate::outln!("  {name}: tessera serve --role {role} --name {name} --config {}   ({a})", path.display());
        }
    }
    Ok(())
}

/// Where `tessera infer --suite` sends its query.
pub struct Target<'a> {
    /// The suite.
    pub suite: Suite,
    /// A running cluster's configuration; a local cluster is started when `None`.
    pub config: Option<&'a Path>,
    /// How to set up the local cluster.
    pub local: LocalOptions,
    /// verify, local cluster: how the cloud cheats.
    pub cheat: Option<String>,
}

/// One query across parties.
pub fn infer(
    target: &Target<'_>,
    query_options: &QueryOptions,
    model_path: &Path,
    images: &[std::path::PathBuf],
    json: bool,
) -> Result<()> {
    let local;
    let suite = target.suite;
    let config = match target.config {
        Some(c) => ClusterConfig::load(c)?,
        None => {
            local = LocalCluster::start(launcher(target.cheat.clone())?, suite, model_path, &target.local)?;
            local.config.clone()
        }
    };
    if config.suite != suite {
        bail!("the cluster runs suite `{}`, not `{suite}`", config.suite);
    }
    if suite.splits_model() {
        return infer_split(&config, target.config.map(|_| model_path), images, json);
    }
    let model = config.load_model()?;
    let expected = LoadedModel::load(model_path)?;
    if expected.hash != model.hash {
        bail!("{} is not the model the cluster serves", model_path.display());
    }
    let mut x = Vec::new();
    for image in images {
        x.extend(load_input(image, model.merged.input_shape(), model.meta())?);
    }
    let r = runtime()?.block_on(query_with(&config, &model, &x, images.len() as u32, query_options))?;
    let fixed = model.fixed().ok();
    let names = Names {
        classes: model.merged.output_len(),
        labels: &model.meta().classes,
        node: &|n| fixed.as_ref().map_or(n.to_string(), |f| f.node_name(n as usize).to_string()),
    };
    print_result(suite, &names, images, &r, json);
    Ok(())
}

/// One query of a suite seco cluster, from the user's own file of the split model (which
/// `user_file`, for a running cluster, must be).
fn infer_split(
    config: &ClusterConfig,
    user_file: Option<&Path>,
    images: &[std::path::PathBuf],
    json: bool,
) -> Result<()> {
    let me = config.party(Role::User)?;
    let split = config.load_split(me)?;
    if let Some(path) = user_file {
        let (_, hash) = tessera::split::read_split(path)?;
        if Some(tessera::cluster::hex(&hash)) != me.model_hash.as_ref().map(|h| h.to_ascii_lowercase()) {
            bail!("{} is not the user's file of the model the cluster serves", path.display());
        }
    }
    let prefix = split.prefix.as_ref().map(|p| p.model.clone()).context("the user's file holds no layers")?;
    let mut x = Vec::new();
    for image in images {
        x.extend(load_input(image, prefix.input_shape(), &split.meta)?);
    }
    let r = runtime()?.block_on(query_split(config, &split, &x, images.len() as u32))?;
    let names = Names { classes: split.logits, labels: &split.meta.classes, node: &|n| n.to_string() };
    print_result(Suite::Seco, &names, images, &r, json);
    if !json {
        crate::outln!("the model was cut after {} of its {} weighted layers", split.split, split.weighted);
    }
    Ok(())
}

/// What the printed results name: classes and layers.
struct Names<'a> {
    /// Logits per image.
    classes: usize,
    /// Class names, in logit order (numbers where missing).
    labels: &'a [String],
    /// A layer's name from its node index.
    node: &'a dyn Fn(u32) -> String,
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1e3)
}

fn print_result(suite: Suite, names: &Names<'_>, images: &[std::path::PathBuf], r: &QueryResult, json: bool) {
    let classes = names.classes;
    let class = |i: usize| names.labels.get(i).cloned().unwrap_or_else(|| i.to_string());
    let total_ms = r.elapsed.as_secs_f64() * 1e3;
    let connect_ms = r.connect.as_secs_f64() * 1e3;
    let results: Vec<_> = r
        .logits
        .chunks(classes)
        .zip(images)
        .map(|(logits, image)| {
            let label = argmax(logits);
            (image, label, logits, softmax(logits))
        })
        .collect();
    if json {
        let per_image: Vec<_> = results
            .iter()
            .map(|(image, label, logits, p)| {
                json!({ "image": image, "label": label, "class": class(*label), "logits": logits, "softmax": p })
            })
            .collect();
        print_json(&json!({
            "suite": suite, "batch": images.len(), "results": per_image, "recomputed_layers": r.recomputed(),
            "sample_logits": r.sample_logits(), "user_storage_bytes": r.user_storage_bytes(),
            "total_ms": total_ms, "connect_ms": connect_ms, "parties": r.reports,
        }));
        return;
    }
    for (image, label, logits, p) in &results {
        crate::outln!("{}: label {label} ({}), p = {:.3}", image.display(), class(*label), p[*label]);
        if results.len() == 1 {
            let mut t = Table::new(&["class", "logit", "softmax"]);
            for (i, (l, q)) in logits.iter().zip(p).enumerate() {
                t.row(vec![class(i), format!("{l:.4}"), format!("{q:.4}")]);
            }
            t.print();
        }
    }
    crate::outln!(
        "suite {suite}, {} image(s) in one query: {total_ms:.2} ms in total, of which {connect_ms:.2} ms TLS connect",
        images.len()
    );
    let cost = QueryCost::from_reports(&r.reports, r.connect, names.node);
    if cost.preprocess_ms > 0.0 {
        crate::outln!(
            "preprocessing (input-independent, can run ahead): {:.2} ms, {} bytes; online: {:.2} ms, {} bytes",
            cost.preprocess_ms,
            cost.preprocess_bytes,
            (total_ms - cost.preprocess_ms).max(0.0),
            cost.bytes - cost.preprocess_bytes
        );
    }
    if let Some(bytes) = r.user_storage_bytes() {
        crate::outln!("the user stored {bytes} bytes between preprocessing and the online phase");
    }
    if !r.sample_logits().is_empty() {
        crate::outln!(
            "meta-prediction over {} sampled forward passes (softmax above is their mean)",
            r.sample_logits().len()
        );
    }
    if !r.recomputed().is_empty() {
        crate::outln!(
            "warning: the cloud's products for layers {:?} failed verification and were recomputed locally",
            r.recomputed()
        );
    }
    stage_table(&r.reports);
    party_table(&r.reports);
}

/// Per stage: each party's wall time and the bytes and rounds of every link. A stage is one
/// party's step of one layer (or setup, input, output); each row gathers the parties' stages of
/// the same layer and kind, preprocessing first, then the model's layers in order.
fn stage_table(reports: &[PartyReport]) {
    let Some(lead) = reports.iter().find(|p| p.stages.iter().any(|s| !s.kind.is_input_or_output())) else {
        return;
    };
    let shown: Vec<&PartyReport> =
        std::iter::once(lead).chain(reports.iter().filter(|p| p.party != lead.party && p.stages.len() > 2)).collect();
    let mut rows: Vec<(u32, StageKind, &str)> = Vec::new();
    for stage in shown.iter().flat_map(|p| &p.stages).filter(|s| !s.kind.is_input_or_output()) {
        if !rows.iter().any(|&(layer, kind, _)| layer == stage.layer && kind == stage.kind) {
            rows.push((stage.layer, stage.kind, &stage.name));
        }
    }
    let online = |kind: StageKind| !matches!(kind, StageKind::Keys | StageKind::Preprocess);
    rows.sort_by_key(|&(layer, kind, _)| (online(kind), if online(kind) { layer } else { 0 }));
    let mut header = vec!["stage".to_string(), "kind".into()];
    header.extend(shown.iter().map(|p| format!("{} ms", p.party)));
    header.extend(["bytes sent (all parties)".into(), "rounds".into()]);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = Table::new(&header);
    for (layer, kind, name) in rows {
        let mut row = vec![name.to_string(), kind.to_string()];
        let (mut bytes, mut rounds) = (0, 0);
        for p in &shown {
            let same = p.stages.iter().find(|s| s.layer == layer && s.kind == kind);
            row.push(same.map_or("-".into(), |s| ms(s.wall_us)));
            if let Some(s) = same {
                bytes += s.links.iter().map(|l| l.traffic.bytes_sent).sum::<u64>();
                rounds = rounds.max(s.links.iter().map(|l| l.traffic.rounds).max().unwrap_or(0));
            }
        }
        row.extend([bytes.to_string(), rounds.to_string()]);
        t.row(row);
    }
    t.print();
}

/// Per party and link: totals.
fn party_table(reports: &[PartyReport]) {
    let mut t =
        Table::new(&["party", "wall ms", "CPU ms", "link", "bytes sent", "bytes received", "messages", "rounds"]);
    for p in reports {
        for (i, l) in p.links.iter().enumerate() {
            let first = i == 0;
            t.row(vec![
                if first { p.party.clone() } else { String::new() },
                if first { ms(p.wall_us) } else { String::new() },
                if first { ms(p.cpu_us) } else { String::new() },
                format!("→ {}", l.peer),
                l.traffic.bytes_sent.to_string(),
                l.traffic.bytes_received.to_string(),
                (l.traffic.messages_sent + l.traffic.messages_received).to_string(),
                l.traffic.rounds.to_string(),
            ]);
        }
    }
    t.print();
}
