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
//! * [`Form::Full`]: any ciphertext at a given level, `c0` and `c1` in NTT form, one 62-bit
//!   residue per prime and coefficient: what an operated-on ciphertext that is not returned to
//!   its key owner travels as (multiparty keys, [`crate::collective`]).

use fhe::bfv;
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_math::zq::Modulus;

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
    /// At `level`, `c0` and `c1` whole.
    Full {
        /// Primes dropped.
        level: usize,
    },
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
            Form::Full { level } => 2 * residues_size(params, level),
        }
    }
}

/// Primes of the ciphertext modulus at `level` (none past the last prime).
fn primes_at(params: &HeParams, level: usize) -> usize {
    params.bfv().moduli().len().saturating_sub(level)
}

/// The encoded size of one polynomial at `level`: 62 bits per prime and coefficient.
pub(crate) fn residues_size(params: &HeParams, level: usize) -> usize {
    packed_len(params.degree() * primes_at(params, level), RESIDUE_BITS)
}

/// Appends the residues of `p` (in its current representation) packed at 62 bits each.
pub(crate) fn write_residues(p: &Poly, out: &mut Vec<u8>) {
    pack(out, p.coefficients().iter().map(|&v| v as u128), RESIDUE_BITS);
}

/// Reads a polynomial at `level` in `representation` from exactly
/// [`residues_size`]`(params, level)` bytes, every residue checked below its prime.
pub(crate) fn read_residues(
    params: &HeParams,
    level: usize,
    representation: Representation,
    what: &'static str,
    bytes: &[u8],
) -> Result<Poly> {
    let ctx = params.context(level)?;
    if bytes.len() != residues_size(params, level) {
        let expected = residues_size(params, level);
        return Err(HeError::Malformed {
            what,
            reason: format!("{} bytes where {expected} were expected", bytes.len()),
        });
    }
    let n = params.degree();
    let moduli = ctx.moduli();
    let residues = unpack(bytes, n * moduli.len(), RESIDUE_BITS);
    let mut values = Vec::with_capacity(residues.len());
    for (i, &v) in residues.iter().enumerate() {
        if v >= moduli[i / n] as u128 {
            return Err(HeError::Malformed { what, reason: "a residue above its prime".into() });
        }
        values.push(v as u64);
    }
    Ok(Poly::try_convert_from(values, ctx, false, representation)?)
}

fn packed_len(values: usize, bits: u32) -> usize {
    (values * bits as usize).div_ceil(8)
}

fn malformed(reason: impl Into<String>) -> HeError {
    HeError::Malformed { what: "ciphertext", reason: reason.into() }
}

/// The two primes of the return level and what CRT and rounding need of them.
struct ReturnModuli {
    q0: Modulus,
    q1: Modulus,
    /// `Q = q0·q1`.
    q: u128,
    /// `q0^−1 mod q1`.
    q0_inv: u64,
}

impl ReturnModuli {
    fn new(params: &HeParams) -> Self {
        let m = params.bfv().moduli();
        let q0_inv = fhe_util::inverse(m[0] % m[1], m[1]).expect("distinct primes");
        let modulus = |q| Modulus::new(q).expect("checked primes");
        Self { q0: modulus(m[0]), q1: modulus(m[1]), q: m[0] as u128 * m[1] as u128, q0_inv }
    }

    /// The integer in `[0, Q)` with residues `a0`, `a1`.
    fn combine(&self, a0: u64, a1: u64) -> u128 {
        let k = self.q1.mul(self.q1.sub(a1, self.q1.reduce(a0)), self.q0_inv);
        a0 as u128 + *self.q0 as u128 * k as u128
    }

    /// The largest value a rounding by `2^d` produces.
    fn max_rounded(&self, d: u32) -> u128 {
        (self.q - 1 + (1u128 << (d - 1))) >> d
    }

    /// Bits of a value rounded by `2^d`.
    fn width(&self, d: u32) -> u32 {
        128 - self.max_rounded(d).leading_zeros()
    }
}

/// Bit widths of the rounded `c0` and `c1`.
fn returned_widths(params: &HeParams) -> (u32, u32) {
    let m = ReturnModuli::new(params);
    let noise = params.noise();
    (m.width(noise.c0_drop_bits), m.width(noise.c1_drop_bits))
}

/// Writes `c0` and `c1` (power basis, return level) rounded to multiples of `2^d0`, `2^d1`.
pub(crate) fn write_returned(params: &HeParams, c: [&Poly; 2], out: &mut Vec<u8>) {
    let m = ReturnModuli::new(params);
    let noise = params.noise();
    for (p, d) in c.into_iter().zip([noise.c0_drop_bits, noise.c1_drop_bits]) {
        debug_assert_eq!(p.representation(), &Representation::PowerBasis);
        let coeffs = p.coefficients();
        let (r0, r1) = (coeffs.row(0), coeffs.row(1));
        let rounded = r0.iter().zip(r1.iter()).map(|(&a0, &a1)| (m.combine(a0, a1) + (1u128 << (d - 1))) >> d);
        pack(out, rounded, m.width(d));
    }
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
                let mut c = [self.inner[0].clone(), self.inner[1].clone()];
                c.iter_mut().for_each(|p| p.change_representation(Representation::PowerBasis));
                write_returned(params, [&c[0], &c[1]], out);
            }
            Form::Full { level } => {
                if self.level() != level {
                    return Err(HeError::Level(format!(
                        "a level-{} ciphertext written at level {level}",
                        self.level()
                    )));
                }
                for p in self.inner.iter() {
                    let mut p = p.clone();
                    p.change_representation(Representation::Ntt);
                    write_residues(&p, out);
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
                let c0 = read_residues(params, 0, Representation::Ntt, "ciphertext", &bytes[32..])?;
                let c1 = Poly::random_from_seed(ctx, Representation::Ntt, seed);
                Ok(Self {
                    inner: bfv::Ciphertext::new(vec![c0, c1], params.bfv())?,
                    seed: Some(seed),
                    level: 0,
                    params: params.bfv().clone(),
                })
            }
            Form::Returned => {
                let ctx = params.context(params.return_level())?;
                let m = ReturnModuli::new(params);
                let (w0, w1) = returned_widths(params);
                let noise = params.noise();
                let split = packed_len(n, w0);
                let mut polys = Vec::with_capacity(2);
                for (part, d, w) in
                    [(&bytes[..split], noise.c0_drop_bits, w0), (&bytes[split..], noise.c1_drop_bits, w1)]
                {
                    let max = m.max_rounded(d);
                    // `u · 2^d mod q_i`, straight from `u mod q_i` (each q_i divides Q).
                    let shifts = [m.q0.pow(2, d as u64), m.q1.pow(2, d as u64)];
                    let mut rns = vec![0u64; 2 * n];
                    for (i, u) in unpack(part, n, w).into_iter().enumerate() {
                        if u > max {
                            return Err(malformed("a coefficient above the modulus"));
                        }
                        rns[i] = m.q0.mul(m.q0.reduce_u128(u), shifts[0]);
                        rns[n + i] = m.q1.mul(m.q1.reduce_u128(u), shifts[1]);
                    }
                    let mut p = Poly::try_convert_from(rns, ctx, false, Representation::PowerBasis)?;
                    p.change_representation(Representation::Ntt);
                    polys.push(p);
                }
                Ok(Self {
                    inner: bfv::Ciphertext::new(polys, params.bfv())?,
                    seed: None,
                    level: params.return_level(),
                    params: params.bfv().clone(),
                })
            }
            Form::Full { level } => {
                let half = bytes.len() / 2;
                let c0 = read_residues(params, level, Representation::Ntt, "ciphertext", &bytes[..half])?;
                let c1 = read_residues(params, level, Representation::Ntt, "ciphertext", &bytes[half..])?;
                Ok(Self {
                    inner: bfv::Ciphertext::new(vec![c0, c1], params.bfv())?,
                    seed: None,
                    level,
                    params: params.bfv().clone(),
                })
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
