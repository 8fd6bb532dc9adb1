//! Suite verify: a client that owns the model offloads every convolution to an untrusted cloud
//! under a one-time pad and checks every product. Here the cloud cheats on one value per
//! layer; the client catches it and recomputes those layers itself.
//!
//! `cargo run -p tessera --example verify`

use std::path::Path;

use tessera::input::load_input;
use tessera::suites::verify::Cheat;
use tessera::{InProcessCluster, LoadedModel, QueryOptions, ServeOptions, Suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = LoadedModel::load(&repo.join("models/minionn-fashion.onnx"))?;
    let path = repo.join("examples/images/fashion-mnist-test00000-ankle-boot.png");
    let image = load_input(&path, model.merged.input_shape(), model.meta())?;
    let classes = model.meta().classes.clone();
    let cluster =
        InProcessCluster::start(Suite::Verify, model, 0, ServeOptions { cheat: Cheat::FlipOne, ..Default::default() })?;
    let mut options = QueryOptions::default();
    options.verify.recompute_on_failure = true;
    let result = tokio::runtime::Runtime::new()?.block_on(cluster.query(&image, 1, &options))?;
    println!("{}: {}", path.display(), classes[tessera::eval::argmax(&result.logits)]);
    println!("products that failed their check and were recomputed: layers {:?}", result.recomputed());
    Ok(())
}
