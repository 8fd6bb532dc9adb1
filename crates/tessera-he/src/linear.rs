//! Convolutions and FC layers on BFV ciphertexts (the "fast convolution" of PROTOCOLS.md
//! section 5), in coefficient encoding: a convolution is one negacyclic polynomial product.
//!
//! The input image, zero-padded to `Hp × Wp` (plane `P = Hp·Wp`), is cut into groups of `Cg`
//! channels; group `g` is one plaintext whose coefficient `c·P + y·Wp + x` holds channel
//! `g·Cg + c` at padded position `(y, x)`. The server encodes, per block of `Mg` output channels
//! and input group, one kernel polynomial: output channel `o` of the block contributes
//! `w[o][c][i][j]` at coefficient `o·L + O − (c·P + i·Wp + j)`, with `L = Cg·P` and
//! `O = (Cg − 1)·P + (kh − 1)·Wp + (kw − 1)`. In the product, coefficient `o·L + O + y·Wp + x` is
//! then exactly `Σ_{c,i,j} x[c][y+i][x+j]·w[o][c][i][j]` for every stride-1 position: with
//! `Mg·L ≤ N`, no other term lands there (terms of neighbouring blocks stay in their own span
//! of `L` coefficients, and wrapped-around terms land below `O`). Summing the products over
//! input groups gives one ciphertext per output block; strided outputs are read at every
//! `s`-th position. An FC layer is the same on a `K × 1 × 1` image with a `1 × 1` window.
//!
//! Why coefficient encoding rather than SIMD slots with rotations (GAZELLE's hybrid packing):
//! it needs no rotation at all, hence no Galois keys (tens of MB per user and the largest
//! noise term of the slot method), and its `⌈C/Cg⌉ · ⌈M/Mg⌉ ≈ C·M·P/N` products are the
//! minimum any packing reaches with one product per plaintext of `N` coefficients. Its cost is
//! that only `Mg·(Ho·Wo)` of the `N` coefficients of a result carry outputs. The rest carry
//! partial sums that depend on the weights, so [`ConvPacking::evaluate`] overwrites them with
//! uniform masks before anything is returned; callers then seal each result
//! ([`PublicKey::seal`](crate::PublicKey::seal)) to flood the computation's noise.
//!
//! Kernel polynomials are lifted to the ciphertext modulus centered (the weights are small
//! signed integers), so a product adds noise `‖e‖∞·‖w‖₁` instead of `‖e‖∞·t`.

use std::sync::Arc;

use fhe::bfv;
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;
use tessera_field::kernels::ConvGeometry;
use tessera_field::zt;
use zeroize::Zeroize;

use crate::ciphertext::{Ciphertext, Plaintext};
use crate::error::{HeError, Result};
use crate::params::HeParams;
use crate::wire::Form;

/// Largest weight magnitude a kernel polynomial accepts (the fixed-point weights of a model are
/// far smaller); it bounds the noise a product adds.
pub const MAX_WEIGHT: u64 = 1 << 40;

/// A weight *share* (uniform in `Z_t`, as the remote servers of suite seco hold them) enters a
/// product as its balanced base-`2^31` digits ([`zt::share_digits`]) against encryptions of `u`
/// and `2^31·u`: the noise grows by `2^30` per weight rather than by `t ≈ 2^61`
/// ([`ConvPacking::evaluate_share`]).
pub use tessera_field::zt::SHARE_DIGIT_BITS;

/// What a layer's outputs carry besides the product.
#[derive(Clone, Copy)]
pub enum Addend<'a> {
    /// Nothing: the bare product.
    Zero,
    /// One value of `Z_t` per output channel (a bias).
    PerChannel(&'a [u64]),
    /// One value of `Z_t` per output, `M × Ho × Wo` row-major (a mask).
    PerOutput(&'a [u64]),
}

impl std::fmt::Debug for Addend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addend::Zero => f.write_str("Zero"),
            Addend::PerChannel(b) => write!(f, "PerChannel({} values)", b.len()),
            Addend::PerOutput(v) => write!(f, "PerOutput({} values, redacted)", v.len()),
        }
    }
}

/// How one convolution (or FC layer) is packed into ciphertexts and kernel polynomials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvPacking {
    geometry: ConvGeometry,
    /// Padded input height and width.
    hp: usize,
    wp: usize,
    /// Input channels per ciphertext (`Cg`).
    channels: usize,
    /// Output channels per product (`Mg`).
    outputs: usize,
}

impl ConvPacking {
    /// The packing that costs the two parties the least time, fewest bytes on ties. Time is
    /// counted in ciphertexts: a sent one costs an encryption and a read (about 1.8 ms at
    /// `N = 8192` here), a returned one a seal, a read and a decryption (about 3.8 ms), so a
    /// returned ciphertext weighs two sent ones. Products (a fraction of a millisecond each)
    /// are nearly the same for every packing (`≈ C·M·P/N`).
    pub fn plan(params: &HeParams, geometry: ConvGeometry) -> Result<Self> {
        let naive = Self::with_groups(params, geometry, 1, 1)?;
        let room = params.degree() / naive.plane();
        let (seeded, returned) = (Form::Seeded.size(params), Form::Returned.size(params));
        let cost = |p: &Self| {
            let bytes = p.input_ciphertexts() * seeded + p.output_ciphertexts() * returned;
            (p.input_ciphertexts() + 2 * p.output_ciphertexts(), bytes, p.products())
        };
        let mut best = naive;
        for channels in 1..=geometry.input.c.min(room) {
            let outputs = geometry.out_channels.min(room / channels);
            let candidate = Self::with_groups(params, geometry, channels, outputs)?;
            if cost(&candidate) < cost(&best) {
                best = candidate;
            }
        }
        Ok(best)
    }

    /// A packing with `channels` input channels per ciphertext and `outputs` output channels
    /// per product; `(1, 1)` is the naive baseline (one product per input and output channel).
    pub fn with_groups(params: &HeParams, geometry: ConvGeometry, channels: usize, outputs: usize) -> Result<Self> {
        if geometry.output().is_none() {
            return Err(HeError::Packing(format!("the window does not fit the input {:?}", geometry.input)));
        }
        let pads = geometry.window.pads;
        let (hp, wp) = (geometry.input.h + pads[0] + pads[2], geometry.input.w + pads[1] + pads[3]);
        let packing = Self {
            geometry,
            hp,
            wp,
            channels: channels.min(geometry.input.c),
            outputs: outputs.min(geometry.out_channels),
        };
        let needed = packing.channels.checked_mul(packing.outputs).and_then(|n| n.checked_mul(packing.plane()));
        if channels == 0 || outputs == 0 || needed.is_none_or(|n| n > params.degree()) {
            return Err(HeError::Packing(format!(
                "{channels} channels × {outputs} outputs of a {hp} × {wp} plane do not fit {} coefficients",
                params.degree()
            )));
        }
        Ok(packing)
    }

    /// The layer's shape.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// Input channels per ciphertext.
    pub fn channels_per_ciphertext(&self) -> usize {
        self.channels
    }

    /// Output channels per product (and per result ciphertext).
    pub fn outputs_per_product(&self) -> usize {
        self.outputs
    }

    /// Ciphertexts the key owner sends per image.
    pub fn input_ciphertexts(&self) -> usize {
        self.geometry.input.c.div_ceil(self.channels)
    }

    /// Ciphertexts the evaluator returns per image.
    pub fn output_ciphertexts(&self) -> usize {
        self.geometry.out_channels.div_ceil(self.outputs)
    }

    /// Ciphertext × plaintext products per image.
    pub fn products(&self) -> usize {
        self.input_ciphertexts() * self.output_ciphertexts()
    }

    /// Rotations per image: none, by construction.
    pub fn rotations(&self) -> usize {
        0
    }

    fn plane(&self) -> usize {
        self.hp * self.wp
    }

    /// `L`: the coefficients one output block spans.
    fn span(&self) -> usize {
        self.channels * self.plane()
    }

    /// `O`: where output position `(0, 0)` of block-local channel 0 lands.
    fn origin(&self) -> usize {
        let [kh, kw] = self.geometry.window.kernel;
        (self.channels - 1) * self.plane() + (kh - 1) * self.wp + (kw - 1)
    }

    /// The coefficient vectors of one image (`C × H × W`, in `Z_t`), one per input group.
    pub fn input_coefficients(&self, image: &[u64]) -> Result<Vec<Vec<u64>>> {
        let shape = self.geometry.input;
        if image.len() != shape.len() {
            return Err(HeError::Encoding(format!("an image of {} values for a {shape:?} layer", image.len())));
        }
        let [top, left, ..] = self.geometry.window.pads;
        let mut groups = vec![vec![0u64; self.span()]; self.input_ciphertexts()];
        for (c, channel) in image.chunks(shape.plane()).enumerate() {
            let group = &mut groups[c / self.channels];
            let base = (c % self.channels) * self.plane();
            for (y, row) in channel.chunks(shape.w).enumerate() {
                let at = base + (y + top) * self.wp + left;
                group[at..at + shape.w].copy_from_slice(row);
            }
        }
        Ok(groups)
    }

    /// The input plaintexts of one image, at level 0, ready for the key owner to encrypt.
    pub fn encode_input(&self, params: &HeParams, image: &[u64]) -> Result<Vec<Plaintext>> {
        let mut groups = self.input_coefficients(image)?;
        let encoded = groups.iter().map(|g| Plaintext::encode_coefficients(params, g, 0)).collect();
        groups.iter_mut().for_each(Zeroize::zeroize);
        encoded
    }

    /// Evaluates the layer on one image's input ciphertexts (level 0, from
    /// [`encode_input`](Self::encode_input)): `weights` are `M × C × kh × kw` small signed
    /// integers, `addend` what the outputs carry besides the product (a bias, a mask). Returns
    /// one level-0 ciphertext per output block, whose coefficients outside the outputs are
    /// uniform masks from `rng`; seal each before returning it.
    pub fn evaluate<R: RngCore + CryptoRng>(
        &self,
        params: &HeParams,
        inputs: &[Ciphertext],
        weights: &[i64],
        addend: Addend<'_>,
        rng: &mut R,
    ) -> Result<Vec<Ciphertext>> {
        let g = &self.geometry;
        if inputs.len() != self.input_ciphertexts() {
            return Err(HeError::Packing(format!(
                "{} input ciphertexts, expected {}",
                inputs.len(),
                self.input_ciphertexts()
            )));
        }
        if let Some(ct) = inputs.iter().find(|ct| !Arc::ptr_eq(&ct.params, params.bfv()) || ct.level() != 0) {
            return Err(HeError::Level(format!(
                "an input ciphertext at level {} (expected 0, same parameters)",
                ct.level()
            )));
        }
        if weights.len() != g.out_channels * g.terms() {
            return Err(HeError::Packing(format!(
                "{} weights, expected {}",
                weights.len(),
                g.out_channels * g.terms()
            )));
        }
        if weights.iter().any(|w| w.unsigned_abs() >= MAX_WEIGHT) {
            return Err(HeError::Packing("a weight of 2^40 or more".into()));
        }
        let out = g.output().expect("checked at construction");
        let (values, expected, what) = match addend {
            Addend::Zero => (&[][..], 0, "no"),
            Addend::PerChannel(b) => (b, g.out_channels, "per-channel"),
            Addend::PerOutput(v) => (v, out.len(), "per-output"),
        };
        if values.len() != expected || values.iter().any(|&v| v >= params.t()) {
            return Err(HeError::Packing(format!(
                "{} {what} addend values for {} outputs in {} channels",
                values.len(),
                out.len(),
                g.out_channels
            )));
        }
        let seeds: Vec<[u8; 32]> = (0..self.output_ciphertexts())
            .map(|_| {
                let mut s = [0u8; 32];
                rng.fill_bytes(&mut s);
                s
            })
            .collect();
        seeds
            .into_par_iter()
            .enumerate()
            .map(|(block, seed)| self.evaluate_block(params, inputs, weights, addend, block, seed))
            .collect()
    }

    /// [`evaluate`](Self::evaluate) with `shares`, weights uniform in `Z_t` (`M × C × kh × kw`),
    /// on encryptions of the input `u` (`inputs`) and of `2^31·u` (`scaled`): the products with
    /// the balanced digits of the shares, summed ([`SHARE_DIGIT_BITS`]). Worst-case noise:
    /// [`share_product_noise_bound`](Self::share_product_noise_bound).
    pub fn evaluate_share<R: RngCore + CryptoRng>(
        &self,
        params: &HeParams,
        inputs: &[Ciphertext],
        scaled: &[Ciphertext],
        shares: &[u64],
        addend: Addend<'_>,
        rng: &mut R,
    ) -> Result<Vec<Ciphertext>> {
        if shares.iter().any(|&w| w >= params.t()) {
            return Err(HeError::Packing("a weight share outside Z_t".into()));
        }
        let (mut lo, mut hi): (Vec<i64>, Vec<i64>) = shares.iter().map(|&w| zt::share_digits(w)).unzip();
        let mut low = self.evaluate(params, inputs, &lo, addend, rng);
        let high = self.evaluate(params, scaled, &hi, Addend::Zero, rng);
        lo.zeroize();
        hi.zeroize();
        let high = high?;
        for (l, h) in low.iter_mut().flatten().zip(&high) {
            l.add(h)?;
        }
        low
    }

    /// Worst-case noise of an [`evaluate_share`](Self::evaluate_share) result on inputs of
    /// noise at most `input_noise` each: every output coefficient sums at most `Mg·C·kh·kw`
    /// terms per digit, each digit at most `2^30`, plus `½` for each of the two covers.
    pub fn share_product_noise_bound(&self, input_noise: f64) -> f64 {
        let [kh, kw] = self.geometry.window.kernel;
        let terms = (self.outputs * self.geometry.input.c * kh * kw) as f64;
        input_noise * terms * 2.0 * ((SHARE_DIGIT_BITS - 1) as f64).exp2() + 1.0
    }

    /// One output block: `Σ_g ct_g · K(block, g)`, then the addend on the outputs and masks
    /// elsewhere.
    fn evaluate_block(
        &self,
        params: &HeParams,
        inputs: &[Ciphertext],
        weights: &[i64],
        addend: Addend<'_>,
        block: usize,
        seed: [u8; 32],
    ) -> Result<Ciphertext> {
        let ctx = params.context(0)?;
        let mut acc = [Poly::zero(ctx, Representation::Ntt), Poly::zero(ctx, Representation::Ntt)];
        for (group, ct) in inputs.iter().enumerate() {
            let mut kernel = self.kernel_coefficients(weights, block, group, params.degree());
            let mut k = Poly::try_convert_from(kernel.as_slice(), ctx, false, Representation::PowerBasis)?;
            kernel.zeroize();
            k.change_representation(Representation::Ntt);
            for (a, c) in acc.iter_mut().zip(ct.inner.iter()) {
                let mut c = c.clone();
                c.change_representation(Representation::Ntt);
                c *= &k;
                *a += &c;
            }
            k.zeroize();
        }
        let inner = bfv::Ciphertext::new(acc.to_vec(), params.bfv())?;
        let mut out = Ciphertext { inner, seed: None, level: 0, params: params.bfv().clone() };
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut cover: Vec<u64> = (0..params.degree()).map(|_| zt::random(&mut rng)).collect();
        let plane = self.geometry.output().expect("checked at construction").plane();
        let first = block * self.outputs * plane;
        for (k, (o, at)) in self.block_outputs(block).enumerate() {
            cover[at] = match addend {
                Addend::Zero => 0,
                Addend::PerChannel(b) => b[o],
                Addend::PerOutput(v) => v[first + k],
            };
        }
        out.add_plain(&Plaintext::encode_coefficients(params, &cover, 0)?)?;
        cover.zeroize();
        Ok(out)
    }

    /// The signed kernel polynomial of output block `block` and input group `group`.
    fn kernel_coefficients(&self, weights: &[i64], block: usize, group: usize, degree: usize) -> Vec<i64> {
        let g = &self.geometry;
        let [kh, kw] = g.window.kernel;
        let (span, origin, plane) = (self.span(), self.origin(), self.plane());
        let mut k = vec![0i64; degree];
        for local_o in 0..self.outputs {
            let o = block * self.outputs + local_o;
            if o >= g.out_channels {
                break;
            }
            for local_c in 0..self.channels {
                let c = group * self.channels + local_c;
                if c >= g.input.c {
                    break;
                }
                let filter = &weights[(o * g.input.c + c) * kh * kw..][..kh * kw];
                for i in 0..kh {
                    for j in 0..kw {
                        k[local_o * span + origin - (local_c * plane + i * self.wp + j)] = filter[i * kw + j];
                    }
                }
            }
        }
        k
    }

    /// `(output channel, coefficient)` for every output value of `block`, output positions in
    /// row-major order.
    fn block_outputs(&self, block: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let g = &self.geometry;
        let out = g.output().expect("checked at construction");
        let [sh, sw] = g.window.stride;
        let first = block * self.outputs;
        (first..(first + self.outputs).min(g.out_channels)).flat_map(move |o| {
            let base = (o - first) * self.span() + self.origin();
            (0..out.h).flat_map(move |y| (0..out.w).map(move |x| (o, base + y * sh * self.wp + x * sw)))
        })
    }

    /// The layer's output (`M × Ho × Wo`) from the decrypted coefficients of one image's result
    /// ciphertexts, in order.
    pub fn decode_output(&self, results: &[impl AsRef<[u64]>]) -> Result<Vec<u64>> {
        if results.len() != self.output_ciphertexts() {
            return Err(HeError::Packing(format!("{} results, expected {}", results.len(), self.output_ciphertexts())));
        }
        let out = self.geometry.output().expect("checked at construction");
        let mut y = Vec::with_capacity(out.len());
        for (block, coeffs) in results.iter().enumerate() {
            let coeffs = coeffs.as_ref();
            for (_, at) in self.block_outputs(block) {
                y.push(*coeffs.get(at).ok_or_else(|| HeError::Packing("a result with too few coefficients".into()))?);
            }
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;
    use tessera_field::kernels::{ConvKernel, ImageShape, Window2d, conv2d_zt};
    use tessera_field::seed::os_rng;

    use super::*;
    use crate::keys::SecretKey;

    /// Runs a layer through the whole path (encode, encrypt, evaluate, seal, wire, decrypt,
    /// decode) and compares with the exact `Z_t` kernel; returns the measured noise bits
    /// (after the switch to the return level, and sealed).
    fn check(params: &HeParams, sk: &SecretKey, packing: ConvPacking, weight_bits: u32) -> (u64, u64) {
        let mut rng = os_rng();
        let g = *packing.geometry();
        let bound = 1i64 << weight_bits;
        let weights: Vec<i64> = (0..g.out_channels * g.terms()).map(|_| rng.random_range(-bound..bound)).collect();
        // A mask per output: what the clientserver suite adds (the per-channel bias of bayes is
        // checked end to end in tests/he_linear.rs).
        let mask: Vec<u64> = (0..g.output().unwrap().len()).map(|_| zt::random(&mut rng)).collect();
        let image: Vec<u64> = (0..g.input.len()).map(|_| zt::random(&mut rng)).collect();
        let pk = sk.public_key(&mut rng).unwrap();
        let inputs: Vec<Ciphertext> =
            packing.encode_input(params, &image).unwrap().iter().map(|pt| sk.encrypt(pt, &mut rng).unwrap()).collect();
        let results = packing.evaluate(params, &inputs, &weights, Addend::PerOutput(&mask), &mut rng).unwrap();
        assert_eq!(results.len(), packing.output_ciphertexts());
        let mut switched = results[0].clone();
        switched.switch_to(params.return_level()).unwrap();
        let mask_noise = sk.noise_bits(&switched).unwrap();
        let mut sealed_noise = 0;
        let decrypted: Vec<_> = results
            .iter()
            .map(|ct| {
                let mut wire = Vec::new();
                pk.seal(ct, &mut rng, &mut wire).unwrap();
                let back = Ciphertext::read(params, Form::Returned, &wire).unwrap();
                sealed_noise = sealed_noise.max(sk.noise_bits(&back).unwrap());
                sk.decrypt_coefficients(&back).unwrap()
            })
            .collect();
        let got = packing.decode_output(&decrypted).unwrap();
        let kernel = ConvKernel::new(g, &weights).unwrap();
        let mut expected = conv2d_zt(&kernel, &image, 1, 1);
        expected.iter_mut().zip(&mask).for_each(|(v, &r)| *v = zt::add(*v, r));
        assert_eq!(got, expected, "{packing:?}");
        (mask_noise, sealed_noise)
    }

    fn conv(c: usize, h: usize, w: usize, m: usize, k: [usize; 2], stride: usize, pads: [usize; 4]) -> ConvGeometry {
        ConvGeometry {
            input: ImageShape::new(c, h, w),
            out_channels: m,
            window: Window2d { kernel: k, stride: [stride, stride], pads },
        }
    }

    #[test]
    fn packed_layers_equal_the_exact_kernel() {
        let params = HeParams::standard().unwrap();
        let sk = SecretKey::generate(&params, &mut os_rng()).unwrap();
        let shapes = [
            conv(1, 28, 28, 16, [5, 5], 1, [0; 4]),
            conv(3, 10, 9, 5, [3, 2], 2, [1, 0, 1, 1]),
            conv(7, 6, 6, 9, [3, 3], 1, [1; 4]),
            ConvGeometry::dense(60, 12),
            ConvGeometry::dense(1000, 100),
        ];
        for g in shapes {
            let planned = ConvPacking::plan(&params, g).unwrap();
            let (mask, sealed) = check(&params, &sk, planned, 14);
            eprintln!("{planned:?}: noise bits after the switch {mask}, sealed {sealed}");
            assert!(mask <= params.noise().mask_noise_bits as u64, "mask-dependent noise 2^{mask}");
            assert!(sealed >= mask + 40, "sealed 2^{sealed} over 2^{mask}");
            if g.input.c * g.out_channels <= 1000 {
                check(&params, &sk, ConvPacking::with_groups(&params, g, 1, 1).unwrap(), 14);
            }
            check(&params, &sk, ConvPacking::with_groups(&params, g, 2, 3).unwrap(), 14);
        }
    }

    #[test]
    fn the_plan_packs_and_counts() {
        let params = HeParams::standard().unwrap();
        // MiniONN-MNIST's second convolution: 16 channels of 12 × 12, 56 planes per ciphertext.
        let p = ConvPacking::plan(&params, conv(16, 12, 12, 16, [5, 5], 1, [0; 4])).unwrap();
        assert!(p.channels_per_ciphertext() * p.outputs_per_product() * 144 <= 8192);
        assert!(p.input_ciphertexts() + p.output_ciphertexts() <= 6, "{p:?}");
        assert_eq!(p.products(), p.input_ciphertexts() * p.output_ciphertexts());
        assert_eq!(p.rotations(), 0);
        let naive = ConvPacking::with_groups(&params, *p.geometry(), 1, 1).unwrap();
        assert_eq!((naive.input_ciphertexts(), naive.output_ciphertexts(), naive.products()), (16, 16, 256));
    }

    #[test]
    fn layouts_that_do_not_fit_and_bad_operands_are_typed_errors() {
        let params = HeParams::standard().unwrap();
        let mut rng = os_rng();
        let big = conv(1, 100, 100, 1, [3, 3], 1, [0; 4]);
        assert!(matches!(ConvPacking::plan(&params, big), Err(HeError::Packing(_))));
        let g = conv(2, 8, 8, 2, [3, 3], 1, [0; 4]);
        assert!(matches!(ConvPacking::with_groups(&params, g, 2, 0), Err(HeError::Packing(_))));
        let no_fit = conv(1, 4, 4, 1, [5, 5], 1, [0; 4]);
        assert!(matches!(ConvPacking::with_groups(&params, no_fit, 1, 1), Err(HeError::Packing(_))));
        let p = ConvPacking::plan(&params, g).unwrap();
        assert!(matches!(p.encode_input(&params, &[0; 5]), Err(HeError::Encoding(_))));
        let sk = SecretKey::generate(&params, &mut rng).unwrap();
        let cts: Vec<_> =
            p.encode_input(&params, &[1; 128]).unwrap().iter().map(|pt| sk.encrypt(pt, &mut rng).unwrap()).collect();
        let w = vec![1i64; 36];
        assert!(matches!(p.evaluate(&params, &cts, &w[1..], Addend::Zero, &mut rng), Err(HeError::Packing(_))));
        assert!(matches!(p.evaluate(&params, &cts[..0], &w, Addend::Zero, &mut rng), Err(HeError::Packing(_))));
        let huge = vec![1i64 << 41; 36];
        assert!(matches!(p.evaluate(&params, &cts, &huge, Addend::Zero, &mut rng), Err(HeError::Packing(_))));
        assert!(matches!(p.evaluate(&params, &cts, &w, Addend::PerChannel(&[1]), &mut rng), Err(HeError::Packing(_))));
        assert!(matches!(p.evaluate(&params, &cts, &w, Addend::PerOutput(&[1]), &mut rng), Err(HeError::Packing(_))));
        let mut low = cts.clone();
        low[0].switch_to(1).unwrap();
        assert!(matches!(p.evaluate(&params, &low, &w, Addend::Zero, &mut rng), Err(HeError::Level(_))));
        assert!(matches!(p.decode_output(&[vec![0u64; 3]]), Err(HeError::Packing(_))));
    }
}
