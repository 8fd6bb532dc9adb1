//! One linear layer under the user's BFV key, as the HE suites exchange it: the key owner
//! encrypts each image's input, the server returns sealed results, the key owner decrypts
//! and decodes them. Packing is [`tessera_he::ConvPacking`]'s coefficient encoding.

use rayon::prelude::*;
use tessera_field::seed::os_rng;
use tessera_he::{Ciphertext, ConvPacking, Form, HeParams, SecretKey};

use crate::error::Result;
use crate::wire::{read_ciphertexts, write_seeded};

/// Encrypts each of `images` (one image's input of the layer each) under `key`: the seeded
/// ciphertexts, image by image, as a message.
pub(crate) fn encrypt_images<'a>(
    he: &HeParams,
    key: &SecretKey,
    packing: &ConvPacking,
    images: impl IntoIterator<Item = &'a [u64]>,
) -> Result<Vec<u8>> {
    let mut plaintexts = Vec::new();
    for image in images {
        plaintexts.extend(packing.encode_input(he, image)?);
    }
    let cts =
        plaintexts.par_iter().map(|pt| Ok(key.encrypt(pt, &mut os_rng())?)).collect::<Result<Vec<Ciphertext>>>()?;
    write_seeded(he, &cts)
}

/// Decrypts the sealed results of `images` images in `reply` from `peer` (image by image, as
/// the server evaluated them): each image's output of the layer.
pub(crate) fn decrypt_images(
    he: &HeParams,
    key: &SecretKey,
    packing: &ConvPacking,
    peer: &str,
    reply: &[u8],
    images: usize,
) -> Result<Vec<Vec<u64>>> {
    let per_image = packing.output_ciphertexts();
    let results = read_ciphertexts(he, peer, Form::Returned, reply, images * per_image, "product")?;
    let decrypted =
        results.par_iter().map(|ct| key.decrypt_coefficients(ct)).collect::<tessera_he::Result<Vec<_>>>()?;
    decrypted.chunks(per_image).map(|blocks| Ok(packing.decode_output(blocks)?)).collect()
}
