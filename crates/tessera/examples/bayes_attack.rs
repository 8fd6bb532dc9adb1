//! Wong et al.'s extraction against Tessera's bayes server: how many sampled forward passes a
//! curious user needs to recover the first layer's posterior means.
//!
//!     cargo run --release -p tessera --example bayes_attack [MODEL] [QUERIES] [SAMPLES]
//!
//! Runs QUERIES queries of SAMPLES samples each (every sample an independent draw) against an
//! in-process server over an in-memory channel, and prints, for growing numbers of draws, the
//! largest and the RMS error of the estimated means against the model's true means.

use std::sync::Arc;
use std::time::Duration;

use tessera::LoadedModel;
use tessera_he::HeParams;
use tessera_model::Op;
use tessera_net::Channel;
use tessera_suites::bayes::extract::{first_layer_draws, mean_of};
use tessera_suites::bayes::{BayesServer, Sampling};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).map_or("models/bayes-minionn-mnist.onnx", String::as_str);
    let queries: usize = args.get(2).map_or(Ok(16), |s| s.parse())?;
    let samples: usize = args.get(3).map_or(Ok(16), |s| s.parse())?;
    let m = LoadedModel::load(std::path::Path::new(path))?;
    let params = m.params()?;
    let (node, linear) = m
        .merged
        .nodes()
        .iter()
        .enumerate()
        .find_map(|(i, n)| match &n.op {
            Op::Linear(l) => Some((i, l.clone())),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("no linear layer"))?;
    let posterior = m.posterior.clone().ok_or_else(|| anyhow::anyhow!("{path} is not a Bayesian model"))?;
    let sigma = posterior.layers()[0].weight_sigma.clone();
    let he = Arc::new(HeParams::standard()?);
    let server = Arc::new(BayesServer::new(m.original.clone(), posterior, params, he.clone(), Sampling::Fresh, 16));
    let rt = tokio::runtime::Runtime::new()?;
    let mut draws = Vec::new();
    for _ in 0..queries {
        let (mut ours, mut theirs) = Channel::pair("user", "server", Duration::from_secs(60), 1 << 30);
        let s = server.clone();
        let task = rt.spawn(async move { s.serve("server", &mut theirs).await });
        draws.extend(rt.block_on(first_layer_draws(
            &he,
            &mut ours,
            linear.geometry,
            node as u32,
            params.f(),
            samples,
        ))?);
        drop(ours);
        let _ = rt.block_on(task);
    }
    let rms = |v: &[f64]| (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
    let mu: Vec<f64> = linear.weight.iter().map(|&w| w as f64).collect();
    let sig: Vec<f64> = sigma.iter().map(|&s| s as f64).collect();
    println!("{path}: first layer, {} weights, RMS mean {:.4}, RMS sigma {:.4}", mu.len(), rms(&mu), rms(&sig));
    println!("{:>6} {:>12} {:>12} {:>14} {:>12}", "draws", "max |err|", "RMS err", "RMS sigma/√n", "RMS err/RMS mean");
    let mut n = 1;
    while n <= draws.len() {
        let est = mean_of(&draws[..n], params.f_w());
        let err: Vec<f64> = est.iter().zip(&mu).map(|(e, m)| e - m).collect();
        let max = err.iter().fold(0f64, |a, e| a.max(e.abs()));
        println!(
            "{n:>6} {max:>12.5} {:>12.5} {:>14.5} {:>12.4}",
            rms(&err),
            rms(&sig) / (n as f64).sqrt(),
            rms(&err) / rms(&mu)
        );
        n *= 4;
    }
    Ok(())
}
