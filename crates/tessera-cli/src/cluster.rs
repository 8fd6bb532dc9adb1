//! `tessera serve`, `tessera certs` and `tessera infer --suite`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tessera::LoadedModel;
use tessera::cluster::{ClusterConfig, Role};
use tessera::eval::argmax;
use tessera::input::load_input;
use tessera::local::LocalCluster;
use tessera::serve::{query, serve as serve_role};

use crate::output::{Table, print_json};

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn parse_role(role: &str) -> Result<Role> {
    match role {
        "server" => Ok(Role::Server),
        "user" => Ok(Role::User),
        other => bail!("unknown role `{other}` (roles: server, user)"),
    }
}

/// Runs one party until SIGINT or SIGTERM.
pub fn serve(role: &str, config: &Path) -> Result<()> {
    let role = parse_role(role)?;
    let config = ClusterConfig::load(config)?;
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
        serve_role(&config, role, ready, shutdown).await
    })?;
    Ok(())
}

/// Writes a development cluster.
pub fn certs(out: &Path, model: &Path, suite: &str, server_address: &str) -> Result<()> {
    let parties = [("server", Role::Server, Some(server_address.to_string())), ("user", Role::User, None)];
    let path = ClusterConfig::write_dev(out, suite, model, &parties)?;
    crate::outln!("wrote a development CA, certificates for {} parties and {}", parties.len(), path.display());
    Ok(())
}

/// One query across parties.
pub fn infer(suite: &str, config: Option<&Path>, model_path: &Path, image: &Path, json: bool) -> Result<()> {
    let local;
    let config = match config {
        Some(c) => ClusterConfig::load(c)?,
        None => {
            let exe = std::env::current_exe().context("locating the tessera executable")?;
            local = LocalCluster::start(&exe, suite, model_path)?;
            local.config.clone()
        }
    };
    if config.suite != suite {
        bail!("the cluster runs suite `{}`, not `{suite}`", config.suite);
    }
    let model = config.load_model()?;
    let expected = LoadedModel::load(model_path)?;
    if expected.hash != model.hash {
        bail!("{} is not the model the cluster serves", model_path.display());
    }
    let x = load_input(image, model.merged.input_shape(), model.meta())?;
    let r = runtime()?.block_on(query(&config, &model, &x, 1))?;
    let label = argmax(&r.logits);
    let class = model.meta().classes.get(label).cloned().unwrap_or_else(|| label.to_string());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let m = r.meter;
    if json {
        print_json(&json!({
            "suite": suite, "label": label, "class": class, "logits": r.logits,
            "metrics": { "total_ms": ms(r.elapsed), "connect_ms": ms(r.connect),
                "user": { "bytes_sent": m.bytes_sent, "bytes_received": m.bytes_received, "messages": m.messages_sent + m.messages_received, "rounds": m.rounds } },
        }));
        return Ok(());
    }
    crate::outln!("suite {suite}: label {label} ({class})");
    let mut t = Table::new(&[
        "link",
        "bytes sent",
        "bytes received",
        "messages",
        "rounds",
        "total ms",
        "of which TLS connect ms",
    ]);
    t.row(vec![
        "user ↔ server".into(),
        m.bytes_sent.to_string(),
        m.bytes_received.to_string(),
        (m.messages_sent + m.messages_received).to_string(),
        m.rounds.to_string(),
        format!("{:.3}", ms(r.elapsed)),
        format!("{:.3}", ms(r.connect)),
    ]);
    t.print();
    Ok(())
}
