//! Suite plain: the image goes to one server in the clear. No privacy; the transport baseline
//! the secure suites are measured against.
//!
//! `cargo run -p tessera --example plain`

use std::path::Path;

use tessera::input::load_input;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = LoadedModel::load(&repo.join("models/minionn-cifar.onnx"))?;
    let path = repo.join("examples/images/cifar10-test00000-airplane.png");
    let image = load_input(&path, model.merged.input_shape(), model.meta())?;
    let classes = model.meta().classes.clone();
    let cluster = InProcessCluster::start(Suite::Plain, model, 0, ServeOptions::default())?;
    let result = tokio::runtime::Runtime::new()?.block_on(cluster.query(&image, 1, &QueryOptions::default()))?;
    let label = tessera::eval::argmax(&result.logits);
    println!("{}: {} in {:.2} ms", path.display(), classes[label], result.elapsed.as_secs_f64() * 1e3);
    Ok(())
}
