//! The extraction attack of Wong et al. (IJCAI 2020) on BAYHENN-style weight hiding, against
//! Tessera's own bayes server: a curious user who sees pre-activations averages its way to the
//! posterior means of the first layer.
//!
//! One query carries two chosen images: all zeros, and a grid of impulses of value `2^f`
//! (one unit) spaced one kernel apart, so that every window of the first convolution covers
//! exactly one impulse. Under one sample `W, b` the zero image yields `b` at every output and
//! the impulse image `W[o][i][j] + b[o]` at the output whose window holds the impulse at offset
//! `(i, j)`: the difference reveals every quantized weight of that sample exactly. Each of the
//! query's `S` samples is an independent draw, so `n` draws estimate each mean to within
//! `σ/√n` (plus half a quantization step). Nothing here breaks the protocol's rules: the user
//! only reads what it is given.

use tessera_field::kernels::ConvGeometry;
use tessera_field::{seed::os_rng, zt};
use tessera_he::{ConvPacking, Form, HeParams, SecretKey};
use tessera_net::{Channel, SessionId};

use super::{JOIN, LAYER, PRODUCT};
use crate::error::{Result, SuiteError};
use crate::wire::{read_ciphertexts, write_seeded};

/// The first layer's weights as `samples` draws from the server's posterior, each
/// `out × in × kh × kw` in units of `2^−f_w`, from one query of the two chosen images. The
/// first layer must be a convolution on one input channel whose kernel fits the image at
/// least once; the query is abandoned after the first layer.
pub async fn first_layer_draws(
    he: &HeParams,
    server: &mut Channel,
    geometry: ConvGeometry,
    node: u32,
    f: u32,
    samples: usize,
) -> Result<Vec<Vec<i64>>> {
    let [kh, kw] = geometry.window.kernel;
    let input = geometry.input;
    let padded = geometry.window.pads.iter().any(|&p| p > 0) || geometry.window.stride != [1, 1];
    if input.c != 1 || padded || input.h < 2 * kh || input.w < 2 * kw {
        return Err(SuiteError::UnsupportedModel {
            needs: "the extraction needs an unpadded, unstrided one-channel first convolution",
        });
    }
    let unit = 1u64 << f;
    let impulses: Vec<u64> = (0..input.h * input.w)
        .map(|p| if (p / input.w) % kh == kh - 1 && (p % input.w) % kw == kw - 1 { unit } else { 0 })
        .collect();
    let mut rng = os_rng();
    let key = SecretKey::generate(he, &mut rng)?;
    let session = SessionId::random();
    let mut join = Vec::new();
    join.extend_from_slice(&2u32.to_le_bytes());
    join.extend_from_slice(&(samples as u32).to_le_bytes());
    key.public_key(&mut rng)?.write(he, &mut join)?;
    server.send(JOIN, session, 0, &join).await?;
    let packing = ConvPacking::plan(he, geometry)?;
    let mut cts = Vec::new();
    for image in [vec![0u64; impulses.len()], impulses] {
        for pt in packing.encode_input(he, &image)? {
            cts.push(key.encrypt(&pt, &mut rng)?);
        }
    }
    let mut message = 1u32.to_le_bytes().to_vec();
    message.extend(write_seeded(he, &cts)?);
    server.send(LAYER, session, node, &message).await?;
    let reply = server.recv(PRODUCT, session, node).await?;
    let per_image = packing.output_ciphertexts();
    let results = read_ciphertexts(he, server.peer(), Form::Returned, &reply, samples * 2 * per_image, "product")?;
    let out = geometry.output().expect("checked by the packing");
    let mut draws = Vec::with_capacity(samples);
    for sample in results.chunks(2 * per_image) {
        let decode = |blocks: &[tessera_he::Ciphertext]| -> Result<Vec<u64>> {
            let plain = blocks.iter().map(|ct| key.decrypt_coefficients(ct)).collect::<tessera_he::Result<Vec<_>>>()?;
            Ok(packing.decode_output(&plain)?)
        };
        let (zero, pulse) = (decode(&sample[..per_image])?, decode(&sample[per_image..])?);
        let mut w = vec![0i64; geometry.out_channels * kh * kw];
        for o in 0..geometry.out_channels {
            // The window at output (y, x) holds its impulse at offset (kh − 1 − y mod kh, …).
            for (y, x) in (0..kh).flat_map(|y| (0..kw).map(move |x| (y, x))) {
                let at = o * out.plane() + y * out.w + x;
                let (i, j) = (kh - 1 - y % kh, kw - 1 - x % kw);
                w[(o * kh + i) * kw + j] = zt::to_i64(zt::sub(pulse[at], zero[at])) >> f;
            }
        }
        draws.push(w);
    }
    Ok(draws)
}

/// The estimate of the means from `draws` (units of `2^−f_w`), as real numbers.
pub fn mean_of(draws: &[Vec<i64>], f_w: u32) -> Vec<f64> {
    let scale = (f_w as f64).exp2() * draws.len() as f64;
    (0..draws[0].len()).map(|i| draws.iter().map(|d| d[i] as f64).sum::<f64>() / scale).collect()
}
