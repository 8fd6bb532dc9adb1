//! The packed HE convolution per linear layer of a model against the naive packing (one input
//! channel per ciphertext, one output channel per product): time, ciphertexts, products,
//! rotations and bytes, for one image.
//!
//!     cargo run --release -p tessera --example he_linear [MODEL]
//!
//! Time is the key owner's encryption, the evaluator's products and sealing, and the key
//! owner's reading and decryption, all on this machine's threads.

use std::time::Instant;

use tessera::LoadedModel;
use tessera_field::{seed::os_rng, zt};
use tessera_he::{Addend, Ciphertext, ConvPacking, Form, HeParams, SecretKey};
use tessera_model::fixed::FixedOp;

fn run(he: &HeParams, sk: &SecretKey, pk: &tessera_he::PublicKey, p: &ConvPacking, w: &[i64]) -> anyhow::Result<f64> {
    let mut rng = os_rng();
    let image = zt::random_vec(&mut rng, p.geometry().input.len());
    let start = Instant::now();
    let cts: Vec<Ciphertext> =
        p.encode_input(he, &image)?.iter().map(|pt| sk.encrypt(pt, &mut rng)).collect::<Result<_, _>>()?;
    let results = p.evaluate(he, &cts, w, Addend::Zero, &mut rng)?;
    let mut plain = Vec::new();
    for ct in &results {
        let mut wire = Vec::new();
        pk.seal(ct, &mut rng, &mut wire)?;
        plain.push(sk.decrypt_coefficients(&Ciphertext::read(he, Form::Returned, &wire)?)?);
    }
    p.decode_output(&plain)?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/minionn-cifar.onnx".into());
    let m = LoadedModel::load(std::path::Path::new(&path))?;
    let fixed = m.fixed()?;
    let he = HeParams::standard()?;
    let mut rng = os_rng();
    let sk = SecretKey::generate(&he, &mut rng)?;
    let pk = sk.public_key(&mut rng)?;
    let (seeded, returned) = (Form::Seeded.size(&he), Form::Returned.size(&he));
    println!("{path}: one image, N = {}, sent ciphertexts {seeded} B, returned {returned} B", he.degree());
    println!(
        "{:<14} {:<8} {:>8} {:>6} {:>6} {:>9} {:>5} {:>10} {:>10}",
        "layer", "packing", "Cg × Mg", "in", "out", "products", "rot", "MB", "ms"
    );
    let (mut packed_ms, mut naive_ms) = (0.0, 0.0);
    for (node, op) in fixed.ops().iter().enumerate() {
        let FixedOp::Linear { kernel, .. } = op else { continue };
        let w = kernel.integer_weights();
        for (label, p) in [
            ("packed", ConvPacking::plan(&he, *kernel.geometry())?),
            ("naive", ConvPacking::with_groups(&he, *kernel.geometry(), 1, 1)?),
        ] {
            let ms = run(&he, &sk, &pk, &p, &w)?;
            *(if label == "packed" { &mut packed_ms } else { &mut naive_ms }) += ms;
            let mb = (p.input_ciphertexts() * seeded + p.output_ciphertexts() * returned) as f64 / 1e6;
            println!(
                "{:<14} {label:<8} {:>8} {:>6} {:>6} {:>9} {:>5} {mb:>10.2} {ms:>10.1}",
                fixed.node_name(node),
                format!("{} × {}", p.channels_per_ciphertext(), p.outputs_per_product()),
                p.input_ciphertexts(),
                p.output_ciphertexts(),
                p.products(),
                p.rotations(),
            );
        }
    }
    println!("total: packed {packed_ms:.0} ms, naive {naive_ms:.0} ms ({:.1}× faster)", naive_ms / packed_ms);
    Ok(())
}
