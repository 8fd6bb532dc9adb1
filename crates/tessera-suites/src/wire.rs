//! Payload encoding shared by the suites: little-endian integers, seeds and vectors of field
//! elements, read back with every length and range checked so a hostile peer gets a typed error.

use rayon::prelude::*;
use tessera_field::vector::vectorized;
use tessera_field::{Seed, seed::os_rng, zt};
use tessera_he::{Ciphertext, Form, HeParams, PublicKey};
use tessera_net::{Channel, MessageKind, PartyReport, SessionId};
use zeroize::Zeroizing;

use crate::error::{Result, SuiteError, Violation};

/// Sends cost reports (never values) as one frame of `kind`.
pub async fn send_reports(
    channel: &mut Channel,
    kind: MessageKind,
    session: SessionId,
    reports: &[PartyReport],
) -> Result<()> {
    let bytes = serde_json::to_vec(reports).expect("reports serialize");
    Ok(channel.send(kind, session, 0, &bytes).await?)
}

/// Sends `bytes` (secret: shares, seeds, re-shares) as one frame of `kind` for `layer`; they
/// are wiped when dropped, sent, failed or cancelled.
pub async fn send_wiped(
    channel: &mut Channel,
    kind: MessageKind,
    session: SessionId,
    layer: u32,
    bytes: Vec<u8>,
) -> Result<()> {
    let bytes = Zeroizing::new(bytes);
    Ok(channel.send(kind, session, layer, &bytes).await?)
}

/// Reads a received secret `payload` with `parse`; it is wiped when dropped, parsed or not.
pub fn parse_wiped<T>(payload: Vec<u8>, parse: impl FnOnce(&[u8]) -> T) -> T {
    parse(&Zeroizing::new(payload))
}

/// Receives a frame of cost reports of `kind`.
pub async fn recv_reports(channel: &mut Channel, kind: MessageKind, session: SessionId) -> Result<Vec<PartyReport>> {
    let bytes = channel.recv(kind, session, 0).await?;
    parse_reports(channel.peer(), &bytes)
}

/// Cost reports from a report frame's payload sent by `peer`.
pub fn parse_reports(peer: &str, bytes: &[u8]) -> Result<Vec<PartyReport>> {
    PartyReport::list_from_bytes(bytes).map_err(|reason| SuiteError::Protocol {
        peer: peer.into(),
        message: "report",
        violation: Violation::Report { reason },
    })
}

/// Appends field elements as u64 LE.
pub fn put_elements(out: &mut Vec<u8>, values: &[u64]) {
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Field elements as bytes.
pub fn elements_to_bytes(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    put_elements(&mut out, values);
    out
}

/// Reads a payload front to back, naming the peer and message in every error.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    peer: &'a str,
    message: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `message` received from `peer`.
    pub fn new(bytes: &'a [u8], peer: &'a str, message: &'static str) -> Self {
        Self { bytes, peer, message }
    }

    /// A protocol error about this message.
    pub fn error(&self, violation: Violation) -> SuiteError {
        SuiteError::Protocol { peer: self.peer.to_string(), message: self.message, violation }
    }

    /// Fails unless the message's `field` holds a `value` in `allowed`.
    pub fn check_range(
        &self,
        field: &'static str,
        value: usize,
        allowed: std::ops::RangeInclusive<usize>,
    ) -> Result<()> {
        if allowed.contains(&value) {
            return Ok(());
        }
        let (min, max) = (*allowed.start() as u64, *allowed.end() as u64);
        Err(self.error(Violation::OutOfRange { field, value: value as u64, min, max }))
    }

    /// Bytes of `n` values of `width` bytes, refused where they could not be addressed.
    fn value_bytes(&self, n: usize, width: usize) -> Result<usize> {
        n.checked_mul(width).ok_or_else(|| {
            self.error(Violation::OutOfRange {
                field: "element count",
                value: n as u64,
                min: 0,
                max: (usize::MAX / width) as u64,
            })
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(self.error(Violation::Truncated { left: self.bytes.len(), expected: n }));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    /// A u32 LE.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    /// A 32-byte seed.
    pub fn seed(&mut self) -> Result<Seed> {
        Ok(Seed::from_bytes(self.take(32)?.try_into().expect("32 bytes")))
    }

    /// Exactly `n` field elements (each below `t`).
    pub fn elements(&mut self, n: usize) -> Result<Vec<u64>> {
        self.residues::<8>(n, zt::T)
    }

    /// Reads exactly `dst.len()` field elements (each below `t`) and folds each into `dst` as
    /// `d = op(d, v)`, without an intermediate vector.
    pub fn elements_into(&mut self, dst: &mut [u64], op: impl Fn(u64, u64) -> u64) -> Result<()> {
        self.residues_into::<8>(dst, zt::T, op)
    }

    /// Exactly `n` residues modulo `modulus`, `WIDTH` bytes each (little-endian).
    pub fn residues<const WIDTH: usize>(&mut self, n: usize, modulus: u64) -> Result<Vec<u64>> {
        // The length is checked before anything is allocated for it.
        let len = self.value_bytes(n, WIDTH)?;
        if self.bytes.len() < len {
            return Err(self.error(Violation::Truncated { left: self.bytes.len(), expected: len }));
        }
        let mut values = vec![0; n];
        self.residues_into::<WIDTH>(&mut values, modulus, |_, v| v)?;
        Ok(values)
    }

    /// Reads exactly `dst.len()` residues modulo `modulus`, `WIDTH` bytes each, and folds each
    /// into `dst` as `d = op(d, v)`; a value not below `modulus` is [`Violation::OutsideField`].
    pub fn residues_into<const WIDTH: usize>(
        &mut self,
        dst: &mut [u64],
        modulus: u64,
        op: impl Fn(u64, u64) -> u64,
    ) -> Result<()> {
        let len = self.value_bytes(dst.len(), WIDTH)?;
        let bytes = self.take(len)?;
        let outside = vectorized(
            #[inline(always)]
            || {
                let mut outside = false;
                for (d, c) in dst.iter_mut().zip(bytes.chunks_exact(WIDTH)) {
                    let v = match WIDTH {
                        4 => u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))),
                        _ => {
                            let mut word = [0u8; 8];
                            word[..WIDTH].copy_from_slice(c);
                            u64::from_le_bytes(word)
                        }
                    };
                    // Branch-free, so that the loop vectorizes: a value outside the field leaves
                    // `d` as it was and fails the whole read below.
                    let inside = v < modulus;
                    *d = if inside { op(*d, v) } else { *d };
                    outside |= !inside;
                }
                outside
            },
        );
        if outside {
            return Err(self.error(Violation::OutsideField));
        }
        Ok(())
    }

    /// Checks that nothing is left.
    pub fn end(self) -> Result<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(self.error(Violation::TrailingBytes { count: self.bytes.len() }))
        }
    }
}

/// Reads exactly `count` ciphertexts in `form` from a peer's `message`; any other length or a
/// malformed ciphertext is a protocol error naming the peer.
pub fn read_ciphertexts(
    he: &HeParams,
    peer: &str,
    form: Form,
    bytes: &[u8],
    count: usize,
    message: &'static str,
) -> Result<Vec<Ciphertext>> {
    let size = form.size(he);
    if bytes.len() != count * size {
        return Err(SuiteError::Protocol {
            peer: peer.into(),
            message,
            violation: Violation::Length { actual: bytes.len(), expected: count * size },
        });
    }
    bytes
        .par_chunks_exact(size.max(1))
        .map(|c| {
            Ciphertext::read(he, form, c).map_err(|e| SuiteError::Protocol {
                peer: peer.into(),
                message,
                violation: Violation::Ciphertext(e),
            })
        })
        .collect()
}

/// Writes fresh ciphertexts, in order, seeded.
pub fn write_seeded(he: &HeParams, cts: &[Ciphertext]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(cts.len() * Form::Seeded.size(he));
    for ct in cts {
        ct.write(he, Form::Seeded, &mut out)?;
    }
    Ok(out)
}

/// Seals ciphertexts for the owner of `key`, in order: the returned form.
pub fn seal_all(key: &PublicKey, cts: &[Ciphertext]) -> Result<Vec<u8>> {
    let parts: Vec<Vec<u8>> = cts
        .par_iter()
        .map(|ct| {
            let mut out = Vec::new();
            key.seal(ct, &mut os_rng(), &mut out)?;
            Ok(out)
        })
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let mut b = 7u32.to_le_bytes().to_vec();
        put_elements(&mut b, &[1, zt::T - 1]);
        let mut r = Reader::new(&b, "p", "m");
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.elements(2).unwrap(), vec![1, zt::T - 1]);
        r.end().unwrap();
        let bad = elements_to_bytes(&[zt::T]);
        assert!(matches!(Reader::new(&bad, "p", "m").elements(1), Err(SuiteError::Protocol { .. })));
        assert!(Reader::new(&bad, "p", "m").elements(2).is_err());
        assert!(Reader::new(&bad, "p", "m").end().is_err());
        assert!(Reader::new(&bad, "p", "m").elements(usize::MAX).is_err());
        let mut acc = vec![5u64, 6];
        Reader::new(&elements_to_bytes(&[zt::T - 1, 1]), "p", "m").elements_into(&mut acc, zt::add).unwrap();
        assert_eq!(acc, vec![4, 7]);
        assert!(Reader::new(&bad, "p", "m").elements_into(&mut [0], zt::add).is_err());
    }
}
