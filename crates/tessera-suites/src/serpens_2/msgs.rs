//! Serpens-2's messages, each with one encoding and one reading: [`ServerInput`] (`INPUT`),
//! [`Correlations`] (`CORRELATIONS`, read and written in [`super::correlation`]), [`Join`]
//! (`JOIN`) and [`Key`] (`KEY`) per query; per nonlinear layer [`Owned`] (`OWNED`), [`Masked`]
//! (`MASKED`), [`Selected`] (`SELECTED`), [`LayerResult`] (`RESULT`) and [`Unpermute`]
//! (`UNPERMUTE`). Every length is fixed by the model, the batch and the HE parameters, so
//! nothing is sized by the peer.

use tessera_field::share::Share;
use tessera_he::{Ciphertext, Form, HeParams, PublicKey};
use tessera_net::{FrameHeader, SessionId};
use zeroize::Zeroizing;

use super::JOIN;
pub use super::correlation::Correlations;
use crate::error::{Result, SuiteError, Violation};
use crate::wire::{Reader, put_elements, read_ciphertexts, seal_all, write_seeded};

/// What the user sends a server.
#[derive(Debug)]
pub struct ServerInput {
    /// 1 for `S1`, 2 for `S2`.
    pub index: usize,
    /// Images in the batch.
    pub batch: usize,
    /// This server's share of the encoded images.
    pub share: Share,
}

impl ServerInput {
    /// The `INPUT` payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 8 * self.share.len());
        out.extend_from_slice(&(self.index as u32).to_le_bytes());
        out.extend_from_slice(&(self.batch as u32).to_le_bytes());
        put_elements(&mut out, self.share.as_slice());
        out
    }

    /// Reads an `INPUT` payload from `peer` for a model whose images have `input_len` values;
    /// batches above `max_batch` are refused.
    pub fn parse(peer: &str, payload: &[u8], input_len: usize, max_batch: usize) -> Result<Self> {
        let mut r = Reader::new(payload, peer, "input");
        let (index, batch) = (r.u32()? as usize, r.u32()? as usize);
        r.check_range("server index", index, 1..=2)?;
        r.check_range("batch", batch, 1..=max_batch)?;
        r.check_range("batch", batch, 1..=usize::MAX / input_len.max(1))?;
        let len = batch * input_len;
        let share = Share::from_vec(r.elements(len)?);
        r.end()?;
        Ok(Self { index, batch, share })
    }
}

/// `S1`'s `JOIN`, the first frame on its connection to `S2` for a query.
#[derive(Debug)]
pub struct Join {
    /// The query.
    pub session: SessionId,
    /// Images in the batch.
    pub batch: usize,
    /// `S1`'s public key.
    pub(crate) key: PublicKey,
}

impl Join {
    /// The `JOIN` payload (the session travels in the frame header): the batch (u32 LE), then
    /// `S1`'s public key.
    pub(crate) fn to_bytes(&self, he: &HeParams) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(4 + PublicKey::size(he));
        out.extend_from_slice(&(self.batch as u32).to_le_bytes());
        self.key.write(he, &mut out)?;
        Ok(out)
    }

    /// Reads a `JOIN` frame from `peer`; batches above `max_batch` are refused.
    pub(crate) fn parse(
        he: &HeParams,
        peer: &str,
        header: FrameHeader,
        payload: &[u8],
        max_batch: usize,
    ) -> Result<Self> {
        if header.kind != JOIN {
            return Err(
                tessera_net::NetError::UnexpectedKind { peer: peer.into(), expected: JOIN, got: header.kind }.into()
            );
        }
        let mut r = Reader::new(payload, peer, "join");
        let batch = r.u32()? as usize;
        r.check_range("batch", batch, 1..=max_batch)?;
        let key = read_key(he, peer, "join", &payload[4..])?;
        Ok(Join { session: header.session, batch, key })
    }
}

/// `S2`'s `KEY`: its public key, in answer to `S1`'s [`Join`].
#[derive(Debug)]
pub(crate) struct Key(pub PublicKey);

impl Key {
    /// The `KEY` payload.
    pub fn to_bytes(&self, he: &HeParams) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(PublicKey::size(he));
        self.0.write(he, &mut out)?;
        Ok(out)
    }

    /// Reads a `KEY` payload from `peer`.
    pub fn parse(he: &HeParams, peer: &str, payload: &[u8]) -> Result<Self> {
        read_key(he, peer, "key", payload).map(Key)
    }
}

fn read_key(he: &HeParams, peer: &str, message: &'static str, bytes: &[u8]) -> Result<PublicKey> {
    PublicKey::read(he, bytes).map_err(|e| SuiteError::Protocol {
        peer: peer.into(),
        message,
        violation: Violation::Key(e),
    })
}

/// `OWNED`, the key owner's opening of its half. Hidden layout: its padded share `x_A + α`
/// (field elements, natural element order), then its `⟦β⟧` (seeded ciphertexts, written ahead
/// of the input); seed layout: its `⟦x_A⟧` alone. The padded share is wiped on drop.
pub(crate) struct Owned {
    padded: Option<Zeroizing<Vec<u64>>>,
    encrypted: Vec<u8>,
}

/// A received [`Owned`]: the padded share (hidden layout) and the ciphertexts.
pub(crate) struct OwnedIn {
    pub padded: Option<Zeroizing<Vec<u64>>>,
    pub cts: Vec<Ciphertext>,
}

impl Owned {
    /// The hidden layout's message: the padded share and the written `⟦β⟧`.
    pub fn hidden(padded: Zeroizing<Vec<u64>>, encrypted: Vec<u8>) -> Self {
        Self { padded: Some(padded), encrypted }
    }

    /// The seed layout's message: fresh ciphertexts of the share, written seeded.
    pub fn seeded(he: &HeParams, cts: &[Ciphertext]) -> Result<Self> {
        Ok(Self { padded: None, encrypted: write_seeded(he, cts)? })
    }

    /// The `OWNED` payload, wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let padded = self.padded.as_ref().map_or(0, |p| p.len());
        let mut out = Zeroizing::new(Vec::with_capacity(8 * padded + self.encrypted.len()));
        if let Some(p) = &self.padded {
            put_elements(&mut out, p);
        }
        out.extend_from_slice(&self.encrypted);
        out
    }

    /// Reads `peer`'s `OWNED` payload (wiped): `padded` field elements first where the layout
    /// has them, then `cts` seeded ciphertexts.
    pub fn parse(he: &HeParams, peer: &str, payload: Vec<u8>, padded: Option<usize>, cts: usize) -> Result<OwnedIn> {
        let payload = Zeroizing::new(payload);
        let split = padded.map_or(0, |n| (8 * n).min(payload.len()));
        let padded = match padded {
            Some(n) => {
                let mut r = Reader::new(&payload[..split], peer, "owned");
                let values = Zeroizing::new(r.elements(n)?);
                r.end()?;
                Some(values)
            }
            None => None,
        };
        let cts = read_ciphertexts(he, peer, Form::Seeded, &payload[split..], cts, "owned")?;
        Ok(OwnedIn { padded, cts })
    }
}

/// `MASKED`, the masker's answer to [`Owned`]: per group of the owner's half, in the order sent,
/// its comparisons `⟦k ⊙ v + e⟧` then its elements `⟦x + R⟧`, sealed for the owner.
pub(crate) struct Masked(Vec<u8>);

impl Masked {
    /// The message of `cts`, sealed for the owner of `key`.
    pub fn seal(key: &PublicKey, cts: &[Ciphertext]) -> Result<Self> {
        seal_all(key, cts).map(Masked)
    }

    /// The `MASKED` payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads `peer`'s `MASKED` payload of `count` ciphertexts.
    pub fn parse(he: &HeParams, peer: &str, payload: &[u8], count: usize) -> Result<Vec<Ciphertext>> {
        read_ciphertexts(he, peer, Form::Returned, payload, count, "masked")
    }
}

/// `SELECTED`, the owner's answer to [`Masked`]: per group and element its `⟦sel⟧`, seeded.
pub(crate) struct Selected(Vec<u8>);

impl Selected {
    /// The message of fresh ciphertexts `cts`.
    pub fn new(he: &HeParams, cts: &[Ciphertext]) -> Result<Self> {
        write_seeded(he, cts).map(Selected)
    }

    /// The `SELECTED` payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads `peer`'s `SELECTED` payload of `count` ciphertexts.
    pub fn parse(he: &HeParams, peer: &str, payload: &[u8], count: usize) -> Result<Vec<Ciphertext>> {
        read_ciphertexts(he, peer, Form::Seeded, payload, count, "selected")
    }
}

/// `RESULT`, the masker's answer to [`Selected`]: per group `⟦−Σ sel ⊙ ⌊R / 2^shift⌋ − r⟧`,
/// sealed for the owner.
pub(crate) struct LayerResult(Vec<u8>);

impl LayerResult {
    /// The message of `cts`, sealed for the owner of `key`.
    pub fn seal(key: &PublicKey, cts: &[Ciphertext]) -> Result<Self> {
        seal_all(key, cts).map(LayerResult)
    }

    /// The `RESULT` payload.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads `peer`'s `RESULT` payload of `count` ciphertexts.
    pub fn parse(he: &HeParams, peer: &str, payload: &[u8], count: usize) -> Result<Vec<Ciphertext>> {
        read_ciphertexts(he, peer, Form::Returned, payload, count, "result")
    }
}

/// `UNPERMUTE` (hidden layout), the owner's last message: its share in `π`'s item order plus the
/// pad `α'`, one field element per item. Wiped on drop.
pub(crate) struct Unpermute(pub Zeroizing<Vec<u64>>);

impl Unpermute {
    /// The `UNPERMUTE` payload, wiped on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(8 * self.0.len()));
        put_elements(&mut out, &self.0);
        out
    }

    /// Reads `peer`'s `UNPERMUTE` payload (wiped) of `items` values.
    pub fn parse(peer: &str, payload: Vec<u8>, items: usize) -> Result<Self> {
        let payload = Zeroizing::new(payload);
        let mut r = Reader::new(&payload, peer, "unpermute");
        let values = Zeroizing::new(r.elements(items)?);
        r.end()?;
        Ok(Unpermute(values))
    }
}
