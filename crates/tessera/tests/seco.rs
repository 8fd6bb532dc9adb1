//! Suite seco with the user, the gateway and both remote servers in this process (in-memory
//! channels): secure logits **equal** to the fixed-point reference on real test images, at
//! several split points of every shipped model.

mod common;

use common::{SHIPPED, encoded, runtime};
use std::sync::Arc;

use tessera_he::HeParams;
use tessera_model::fixed::FixedModel;
use tessera_suites::seco::{InMemoryOutcome, InMemoryRun, run_in_memory};

fn run(fixed: &Arc<FixedModel>, split: usize, input: &[u64], batch: usize, settings: &InMemoryRun) -> InMemoryOutcome {
    let he = Arc::new(HeParams::standard().unwrap());
    runtime(4).block_on(run_in_memory(fixed, split, &he, input, batch, settings)).unwrap()
}

/// Runs `model` on `n` real test images in batches of `batch` at each of `splits`: every logit
/// exactly the reference's.
fn exact_on(model: &str, evalset: &str, n: usize, batch: usize, splits: &[usize]) {
    let (fixed, input) = encoded(model, evalset, n);
    let reference = fixed.run_encoded(input.clone(), n).unwrap();
    let per_batch = batch * fixed.input_shape().len();
    for &split in splits {
        for (k, images) in input.chunks(per_batch).enumerate() {
            let run = run(&fixed, split, images, batch, &InMemoryRun::default());
            let what = format!("{model}, seco split {split}, batch {k}");
            let expected = &reference[k * batch * fixed.output_len()..][..batch * fixed.output_len()];
            assert_eq!(run.outcome.logits, expected, "{what}: logits");
        }
        println!("{model}, split {split}: {n} images, logits identical to the fixed-point reference");
    }
}

#[test]
fn minionn_mnist_logits_equal_the_fixed_point_reference() {
    let &(model, evalset, _) = SHIPPED.iter().find(|(m, ..)| *m == "minionn-mnist").unwrap();
    let (fixed, _) = encoded(model, evalset, 1);
    let points = fixed.split_points();
    println!("{model}: split points {points:?}");
    exact_on(model, evalset, 8, 4, &points);
}
