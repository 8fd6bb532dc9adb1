//! The packed HE convolution and FC layers against the exact `Z_t` kernels, on every linear
//! layer of every shipped model, with the model's own quantized weights and biases: encode,
//! encrypt, evaluate, seal, wire, decrypt, decode.

mod common;

use tessera::LoadedModel;
use tessera_field::kernels::conv2d_zt;
use tessera_field::{seed::os_rng, zt};
use tessera_he::{Addend, Ciphertext, ConvPacking, Form, HeParams, SecretKey};
use tessera_model::fixed::FixedOp;

#[test]
fn he_layers_equal_the_exact_kernels_on_every_shipped_layer() {
    let params = HeParams::standard().unwrap();
    let mut rng = os_rng();
    let sk = SecretKey::generate(&params, &mut rng).unwrap();
    let pk = sk.public_key(&mut rng).unwrap();
    let mut layers = 0;
    for (name, _, _) in common::SHIPPED {
        let model = LoadedModel::load(&common::repo().join("models").join(format!("{name}.onnx"))).unwrap();
        let fixed = model.fixed().unwrap();
        for (node, op) in fixed.ops().iter().enumerate() {
            let FixedOp::Linear { kernel, bias } = op else { continue };
            let g = *kernel.geometry();
            let packing = ConvPacking::plan(&params, g).unwrap();
            // Uniform inputs over all of Z_t: exactness must not depend on small activations.
            let image = zt::random_vec(&mut rng, g.input.len());
            let inputs: Vec<Ciphertext> = packing
                .encode_input(&params, &image)
                .unwrap()
                .iter()
                .map(|pt| sk.encrypt(pt, &mut rng).unwrap())
                .collect();
            let weights = kernel.integer_weights();
            let results = packing
                .evaluate(
                    &params,
                    &inputs,
                    &weights,
                    bias.as_deref().map_or(Addend::Zero, Addend::PerChannel),
                    &mut rng,
                )
                .unwrap();
            let decrypted: Vec<_> = results
                .iter()
                .map(|ct| {
                    let mut wire = Vec::new();
                    pk.seal(ct, &mut rng, &mut wire).unwrap();
                    sk.decrypt_coefficients(&Ciphertext::read(&params, Form::Returned, &wire).unwrap()).unwrap()
                })
                .collect();
            let got = packing.decode_output(&decrypted).unwrap();
            let mut expected = conv2d_zt(kernel, &image, 1, 1);
            if let Some(b) = bias {
                let plane = g.output().unwrap().plane();
                for (chunk, &bv) in expected.chunks_mut(plane).zip(b.iter().cycle()) {
                    chunk.iter_mut().for_each(|v| *v = zt::add(*v, bv));
                }
            }
            assert_eq!(got, expected, "{name}, node {node} ({})", fixed.node_name(node));
            assert_eq!(packing.rotations(), 0);
            layers += 1;
        }
    }
    assert!(layers >= 40, "{layers} layers checked");
}
