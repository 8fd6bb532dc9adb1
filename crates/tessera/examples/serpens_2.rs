//! Suite serpens-2: two servers hold additive shares of the image and evaluate every ReLU and
//! max pool between themselves with BFV and random masks; neither sees the image.
//!
//! `cargo run --release -p tessera --example serpens_2`

use std::path::Path;

use tessera::input::load_input;
use tessera::suites::serpens_2::Layout;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = LoadedModel::load(&repo.join("models/lenet-mnist.onnx"))?;
    let image =
        load_input(&repo.join("examples/images/mnist-test00050-6.png"), model.merged.input_shape(), model.meta())?;
    let cluster = InProcessCluster::start(Suite::Serpens2, model, 0, ServeOptions::default())?;
    // Each nonlinear item reaches its key owner at a position it does not know.
    let options = QueryOptions { layout: Layout::Hidden, ..QueryOptions::default() };
    let result = tokio::runtime::Runtime::new()?.block_on(cluster.query(&image, 1, &options))?;
    println!("label {} (the image shows a 6)", tessera::eval::argmax(&result.logits));
    let rounds: u64 = result.reports[0].links.iter().map(|l| l.traffic.rounds).sum();
    println!("{:.1} ms, the user's rounds: {rounds}", result.elapsed.as_secs_f64() * 1e3);
    Ok(())
}
