//! Suite serpens-n: three share-holders run the linear layers on additive shares of the image,
//! a central server evaluates ReLU and max pool on masked, permuted values.
//!
//! `cargo run -p tessera --example serpens_n`

use std::path::Path;

use tessera::input::load_input;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = LoadedModel::load(&repo.join("models/minionn-mnist.onnx"))?;
    let image =
        load_input(&repo.join("examples/images/mnist-test00000-7.png"), model.merged.input_shape(), model.meta())?;
    let cluster = InProcessCluster::start(Suite::SerpensN, model, 3, ServeOptions::default())?;
    let result = tokio::runtime::Runtime::new()?.block_on(cluster.query(&image, 1, &QueryOptions::default()))?;
    println!("label {} (the image shows a 7)", tessera::eval::argmax(&result.logits));
    for report in &result.reports {
        let bytes: u64 = report.links.iter().map(|l| l.traffic.bytes_sent).sum();
        println!("{:>9}: {:>7.2} ms, {bytes:>9} bytes sent", report.party, report.wall_us as f64 / 1e3);
    }
    Ok(())
}
