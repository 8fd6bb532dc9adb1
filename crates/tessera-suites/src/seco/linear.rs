//! A secret linear layer's HE preprocessing under the servers' collective key, as both sides
//! compute it: the mask encryptions (`⟦u_X⟧` and `⟦2^31·u_X⟧` per image, in coefficient
//! encoding), their sums, the weight holders' products at level 1, and the wire form of all
//! three (full ciphertexts).

use rayon::prelude::*;
use tessera_field::seed::os_rng;
use tessera_field::zt;
use tessera_he::{Addend, Ciphertext, ConvPacking, Form, HeParams, Plaintext, PublicKey, SHARE_DIGIT_BITS};

use crate::error::{Result, SuiteError, Violation};

/// The level products travel and are decrypted at.
pub(crate) const PRODUCT_LEVEL: usize = 1;

/// Per image, the encryptions of its mask `u` and of `2^31·u` under `key`: `2 ×` the layer's
/// input ciphertexts, the plain ones first.
pub(crate) fn encrypt_masks(
    he: &HeParams,
    key: &PublicKey,
    packing: &ConvPacking,
    masks: &[u64],
    batch: usize,
) -> Result<Vec<Ciphertext>> {
    let scale = 1u64 << SHARE_DIGIT_BITS;
    let mut plaintexts = Vec::new();
    for image in masks.chunks(packing.geometry().input.len()).take(batch) {
        plaintexts.extend(packing.encode_input(he, image)?);
        let scaled: Vec<u64> = image.iter().map(|&u| zt::mul(u, scale)).collect();
        plaintexts.extend(packing.encode_input(he, &scaled)?);
    }
    plaintexts.par_iter().map(|pt| Ok(key.encrypt(pt, &mut os_rng())?)).collect()
}

/// Ciphertexts per image of a mask message: the plain and the scaled encryptions.
pub(crate) fn mask_ciphertexts(packing: &ConvPacking) -> usize {
    2 * packing.input_ciphertexts()
}

/// Adds `other` to `sum`, ciphertext by ciphertext.
pub(crate) fn add_all(sum: &mut [Ciphertext], other: &[Ciphertext]) -> Result<()> {
    for (s, o) in sum.iter_mut().zip(other) {
        s.add(o)?;
    }
    Ok(())
}

/// One weight holder's products per image: `⟦W_X u − s_X⟧` from the summed mask encryptions
/// (as [`encrypt_masks`] orders them), its dense weight shares and its masks `s_X`, each
/// re-randomized by a fresh encryption of zero under the collective `key` and switched to
/// [`PRODUCT_LEVEL`]. Without the re-randomization `c1` of a product would be a known linear
/// function of the weight share's digits (the summed `c1`s are the gateway's own), and a few
/// products would give the share to the gateway by linear algebra; with it `c1` is uniform, and
/// the noise that still depends on the weights only shows, smudged, in the joint decryption.
pub(crate) fn products(
    he: &HeParams,
    key: &PublicKey,
    packing: &ConvPacking,
    sums: &[Ciphertext],
    weights: &[u64],
    masks: &[u64],
    batch: usize,
) -> Result<Vec<Ciphertext>> {
    let per_image = packing.input_ciphertexts();
    let outputs = packing.geometry().output().expect("a valid layer").len();
    let zero = Plaintext::encode_coefficients(he, &[], 0)?;
    let mut results = Vec::with_capacity(batch * packing.output_ciphertexts());
    for (image, s) in sums.chunks(2 * per_image).zip(masks.chunks(outputs)).take(batch) {
        let minus_s: Vec<u64> = s.iter().map(|&v| zt::neg(v)).collect();
        let (plain, scaled) = image.split_at(per_image);
        let mut out = packing.evaluate_share(he, plain, scaled, weights, Addend::PerOutput(&minus_s), &mut os_rng())?;
        for ct in &mut out {
            ct.add(&key.encrypt(&zero, &mut os_rng())?)?;
            ct.switch_to(PRODUCT_LEVEL)?;
        }
        results.extend(out);
    }
    Ok(results)
}

/// Ciphertexts at `level`, in order, in full form.
pub(crate) fn write_full(he: &HeParams, cts: &[Ciphertext], level: usize) -> Result<Vec<u8>> {
    let form = Form::Full { level };
    let mut out = Vec::with_capacity(cts.len() * form.size(he));
    for ct in cts {
        ct.write(he, form, &mut out)?;
    }
    Ok(out)
}

/// Exactly `count` full-form ciphertexts at `level` from `peer`'s `message`.
pub(crate) fn read_full(
    he: &HeParams,
    peer: &str,
    bytes: &[u8],
    count: usize,
    level: usize,
    message: &'static str,
) -> Result<Vec<Ciphertext>> {
    crate::wire::read_ciphertexts(he, peer, Form::Full { level }, bytes, count, message)
}

/// `count` fixed-size items of `size` bytes each from `peer`'s `message`, parsed by `read`.
pub(crate) fn read_items<T>(
    peer: &str,
    bytes: &[u8],
    count: usize,
    size: usize,
    message: &'static str,
    read: impl Fn(&[u8]) -> tessera_he::Result<T> + Sync,
) -> Result<Vec<T>>
where
    T: Send,
{
    if bytes.len() != count * size {
        let violation = Violation::Length { actual: bytes.len(), expected: count * size };
        return Err(SuiteError::Protocol { peer: peer.into(), message, violation });
    }
    bytes
        .par_chunks_exact(size.max(1))
        .map(|c| {
            read(c).map_err(|e| SuiteError::Protocol {
                peer: peer.into(),
                message,
                violation: Violation::Ciphertext(e),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};
    use tessera_he::collective::DecryptionRequest;
    use tessera_he::{HeParams, SecretKey};

    use super::*;

    /// The gateway's attack on a weight share, through the products it receives: it knows the
    /// summed mask encryptions (it made them), so without re-randomization a guess of the share
    /// reproduces a product's `c1` byte for byte and confirms the weights; with it, `c1` is
    /// fresh, and even the true share reproduces nothing.
    #[test]
    fn attack_a_product_c1_does_not_confirm_a_guessed_weight_share() {
        let he = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let mut common = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut common);
        let keys: Vec<SecretKey> = (0..3).map(|_| SecretKey::generate(&he, &mut rng).unwrap()).collect();
        let shares: Vec<PublicKey> = keys.iter().map(|k| k.public_key_share(common, &mut rng).unwrap()).collect();
        let key = PublicKey::collective(&he, &shares).unwrap();
        let geometry = ConvGeometry {
            input: ImageShape::new(1, 12, 12),
            out_channels: 4,
            window: Window2d { kernel: [5, 5], stride: [1, 1], pads: [0; 4] },
        };
        let packing = ConvPacking::plan(&he, geometry).unwrap();
        let masks = zt::random_vec(&mut rng, geometry.input.len());
        let sums = encrypt_masks(&he, &key, &packing, &masks, 1).unwrap();
        let weights = zt::random_vec(&mut rng, geometry.out_channels * geometry.terms());
        let s = zt::random_vec(&mut rng, geometry.output().unwrap().len());
        let c1 = |cts: &[Ciphertext]| -> Vec<u8> {
            let mut out = Vec::new();
            cts.iter().for_each(|ct| DecryptionRequest::of(ct).write(&mut out));
            out
        };
        // What the attack needs: without the fresh encryption of zero, the share alone fixes c1.
        let bare = |w: &[u64]| {
            let (plain, scaled) = sums.split_at(packing.input_ciphertexts());
            let mut cts = packing.evaluate_share(&he, plain, scaled, w, Addend::Zero, &mut os_rng()).unwrap();
            cts.iter_mut().for_each(|ct| ct.switch_to(PRODUCT_LEVEL).unwrap());
            c1(&cts)
        };
        assert_eq!(bare(&weights), bare(&weights), "without re-randomization a guess is confirmed");
        let seen = c1(&products(&he, &key, &packing, &sums, &weights, &s, 1).unwrap());
        assert_ne!(bare(&weights), seen, "the true share reproduces the product's c1");
        assert_ne!(c1(&products(&he, &key, &packing, &sums, &weights, &s, 1).unwrap()), seen);
        let same = seen.iter().zip(&bare(&weights)).filter(|(a, b)| a == b).count();
        assert!(same < seen.len() / 100, "{same} of {} bytes of c1 agree with the guess", seen.len());
    }
}
