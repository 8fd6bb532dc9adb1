//! Ciphertexts on the wire, in two exact-size forms, read back with every length and residue
//! checked (fhe's protobuf reader does not check residues against their primes):
//!
//! * [`Form::Seeded`]: a fresh level-0 encryption: `c0` in NTT form (one 62-bit residue per
//!   prime and slot) and the 32-byte seed of `c1`. Half a full ciphertext.
//! * [`Form::Returned`]: a ciphertext at the return level (two primes, `Q ≈ 2^124`): `c0` and
//!   `c1` CRT-combined to integers mod `Q` and rounded to multiples of `2^d0` and `2^d1`
//!   ([`NoiseLayout`](crate::params::NoiseLayout)). Dropping low bits adds bounded noise, like
//!   modulus switching; it is applied after flooding, so it cannot reveal anything the
//!   flooded ciphertext does not.

use fhe::bfv;
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};

use crate::ciphertext::Ciphertext;
use crate::error::{HeError, Result};
use crate::keys::PublicKey;
use crate::params::HeParams;

/// The two wire forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Fresh, level 0, `c1` from a seed.
    Seeded,
    /// At the return level, `c0` and `c1` rounded.
    Returned,
}

const RESIDUE_BITS: u32 = 62;

impl Form {
    /// The exact encoded size of one ciphertext in this form.
    pub fn size(self, params: &HeParams) -> usize {
        match self {
            Form::Seeded => 32 + packed_len(params.degree() * params.bfv().moduli().len(), RESIDUE_BITS),
            Form::Returned => {
                let (w0, w1) = returned_widths(params);
                packed_len(params.degree(), w0) + packed_len(params.degree(), w1)
            }
        }
    }
}

fn packed_len(values: usize, bits: u32) -> usize {
    (values * bits as usize).div_ceil(8)
}

fn malformed(reason: impl Into<String>) -> HeError {
    HeError::Malformed { what: "ciphertext", reason: reason.into() }
}

/// `Q = q0·q1` at the return level, and `q0^−1 mod q1`.
fn return_moduli(params: &HeParams) -> (u64, u64, u128, u64) {
    let m = params.bfv().moduli();
    let (q0, q1) = (m[0], m[1]);
    let inv = fhe_util::inverse(q0 % q1, q1).expect("distinct primes");
    (q0, q1, q0 as u128 * q1 as u128, inv)
}

/// Bit widths of the rounded `c0` and `c1`.
fn returned_widths(params: &HeParams) -> (u32, u32) {
    let (_, _, q, _) = return_moduli(params);
    let noise = params.noise();
    let width = |d: u32| 128 - ((q - 1 + (1u128 << (d - 1))) >> d).leading_zeros();
    (width(noise.c0_drop_bits), width(noise.c1_drop_bits))
}

/// Appends `values` of `bits` bits each, little-endian bit order.
fn pack(out: &mut Vec<u8>, values: impl Iterator<Item = u128>, bits: u32) {
    let (mut acc, mut n) = (0u128, 0u32);
    for v in values {
        // At most 7 pending bits plus 78 new ones fit in 128.
        acc |= v << n;
        n += bits;
        while n >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            n -= 8;
        }
    }
    if n > 0 {
        out.push(acc as u8);
    }
}

/// Reads `count` values of `bits` bits each from exactly `packed_len(count, bits)` bytes.
fn unpack(bytes: &[u8], count: usize, bits: u32) -> Vec<u128> {
    let mask = (1u128 << bits) - 1;
    let mut out = Vec::with_capacity(count);
    let (mut acc, mut n) = (0u128, 0u32);
    let mut it = bytes.iter();
    while out.len() < count {
        while n < bits {
            acc |= (*it.next().unwrap_or(&0) as u128) << n;
            n += 8;
        }
        out.push(acc & mask);
        acc >>= bits;
        n -= bits;
    }
    out
}

impl Ciphertext {
    /// Appends this ciphertext in `form`.
    pub fn write(&self, params: &HeParams, form: Form, out: &mut Vec<u8>) -> Result<()> {
        match form {
            Form::Seeded => {
                let seed = self
                    .seed
                    .filter(|_| self.level() == 0)
                    .ok_or_else(|| HeError::Level("only fresh level-0 ciphertexts travel seeded".into()))?;
                out.extend_from_slice(&seed);
                let c0 = self.inner[0].coefficients();
                pack(out, c0.iter().map(|&v| v as u128), RESIDUE_BITS);
            }
            Form::Returned => {
                if self.level() != params.return_level() {
                    return Err(HeError::Level(format!(
                        "returned ciphertexts travel at level {}",
                        params.return_level()
                    )));
                }
                let (q0, q1, q, inv) = return_moduli(params);
                let (w0, w1) = returned_widths(params);
                let noise = params.noise();
                for (poly, d, w) in [(0, noise.c0_drop_bits, w0), (1, noise.c1_drop_bits, w1)] {
                    let mut p = self.inner[poly].clone();
                    p.change_representation(Representation::PowerBasis);
                    let c = p.coefficients();
                    let (r0, r1) = (c.row(0), c.row(1));
                    let rounded = r0.iter().zip(r1.iter()).map(|(&a0, &a1)| {
                        let k = ((a1 + q1 - a0 % q1) % q1) as u128 * inv as u128 % q1 as u128;
                        let v = a0 as u128 + q0 as u128 * k;
                        debug_assert!(v < q);
                        (v + (1u128 << (d - 1))) >> d
                    });
                    pack(out, rounded, w);
                }
            }
        }
        Ok(())
    }

    /// Reads one ciphertext in `form` from exactly `form.size(params)` bytes.
    pub fn read(params: &HeParams, form: Form, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != form.size(params) {
            return Err(malformed(format!("{} bytes where {} were expected", bytes.len(), form.size(params))));
        }
        let n = params.degree();
        match form {
            Form::Seeded => {
                let ctx = params.context(0)?;
                let seed: [u8; 32] = bytes[..32].try_into().expect("32 bytes");
                let moduli = params.bfv().moduli();
                let residues = unpack(&bytes[32..], n * moduli.len(), RESIDUE_BITS);
                let mut c0 = Vec::with_capacity(residues.len());
                for (i, &v) in residues.iter().enumerate() {
                    if v >= moduli[i / n] as u128 {
                        return Err(malformed("a residue above its prime"));
                    }
                    c0.push(v as u64);
                }
                let c0 = Poly::try_convert_from(c0, ctx, false, Representation::Ntt)?;
                let c1 = Poly::random_from_seed(ctx, Representation::Ntt, seed);
                Ok(Self { inner: bfv::Ciphertext::new(vec![c0, c1], params.bfv())?, seed: Some(seed), level: 0 })
            }
            Form::Returned => {
                let ctx = params.context(params.return_level())?;
                let (q0, q1, q, _) = return_moduli(params);
                let (w0, w1) = returned_widths(params);
                let noise = params.noise();
                let split = packed_len(n, w0);
                let mut polys = Vec::with_capacity(2);
                for (part, d, w) in
                    [(&bytes[..split], noise.c0_drop_bits, w0), (&bytes[split..], noise.c1_drop_bits, w1)]
                {
                    let max = (q - 1 + (1u128 << (d - 1))) >> d;
                    let mut rns = vec![0u64; 2 * n];
                    for (i, u) in unpack(part, n, w).into_iter().enumerate() {
                        if u > max {
                            return Err(malformed("a coefficient above the modulus"));
                        }
                        let v = (u << d) % q;
                        rns[i] = (v % q0 as u128) as u64;
                        rns[n + i] = (v % q1 as u128) as u64;
                    }
                    let mut p = Poly::try_convert_from(rns, ctx, false, Representation::PowerBasis)?;
                    p.change_representation(Representation::Ntt);
                    polys.push(p);
                }
                Ok(Self { inner: bfv::Ciphertext::new(polys, params.bfv())?, seed: None, level: params.return_level() })
            }
        }
    }
}

impl PublicKey {
    /// The key's encoded size.
    pub fn size(params: &HeParams) -> usize {
        Form::Seeded.size(params)
    }

    /// Appends the key (a seeded level-0 encryption of zero).
    pub fn write(&self, params: &HeParams, out: &mut Vec<u8>) -> Result<()> {
        self.as_ciphertext().write(params, Form::Seeded, out)
    }

    /// Reads a key from exactly [`PublicKey::size`] bytes.
    pub fn read(params: &HeParams, bytes: &[u8]) -> Result<Self> {
        let ct = Ciphertext::read(params, Form::Seeded, bytes)
            .map_err(|e| HeError::Malformed { what: "public key", reason: e.to_string() })?;
        PublicKey::from_zero(params, ct)
    }
}
