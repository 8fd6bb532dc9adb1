//! Suite bayes: the user's image is BFV-encrypted; the server evaluates the linear layers on the
//! ciphertexts with weights sampled from a Bayesian posterior, fresh per query; the user runs
//! the nonlinear layers and averages the samples.
//!
//! `cargo run --release -p tessera --example bayes`

use std::path::Path;

use tessera::input::load_input;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = LoadedModel::load(&repo.join("models/bayes-minionn-mnist.onnx"))?;
    let image =
        load_input(&repo.join("examples/images/mnist-test00100-6.png"), model.merged.input_shape(), model.meta())?;
    let cluster = InProcessCluster::start(Suite::Bayes, model, 0, ServeOptions::default())?;
    let options = QueryOptions { samples: 4, ..QueryOptions::default() };
    let result = tokio::runtime::Runtime::new()?.block_on(cluster.query(&image, 1, &options))?;
    let samples: Vec<usize> = result.sample_logits().iter().map(|l| tessera::eval::argmax(l)).collect();
    println!("label {} (the image shows a 6); the samples' labels {samples:?}", tessera::eval::argmax(&result.logits));
    Ok(())
}
