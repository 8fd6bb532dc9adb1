//! Serpens-n's messages, each with one encoding and one reading: [`HolderInput`] (`INPUT`),
//! [`Join`] (`JOIN`), [`Masked`] (`MASKED`) and [`Reshare`] (`RESHARE`). Every length is fixed by
//! the model and the batch, so nothing is sized by the peer.

use tessera_field::share::Share;
use tessera_field::{Seed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{FrameHeader, SessionId};
use zeroize::{Zeroize, Zeroizing};

use super::{HOLDERS, JOIN};
use crate::error::Result;
use crate::masks::Comparison;
use crate::wire::{Reader, put_elements};

/// What the user sends a holder.
#[derive(Debug)]
pub struct HolderInput {
    /// This holder's index, 1-based.
    pub index: usize,
    /// Number of holders.
    pub holders: usize,
    /// Images in the batch.
    pub batch: usize,
    /// The query seed shared by the holders (never by `S0`).
    pub seed: Seed,
    /// This holder's share of the encoded images.
    pub share: Share,
}

impl HolderInput {
    /// The `INPUT` payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44 + 8 * self.share.len());
        put_header(&mut out, self.index, self.holders, self.batch);
        out.extend_from_slice(self.seed.expose_bytes());
        put_elements(&mut out, self.share.as_slice());
        out
    }

    /// Reads an `INPUT` payload from `peer` for a model whose images have `input_len` values;
    /// batches above `max_batch` are refused.
    pub fn parse(peer: &str, payload: &[u8], input_len: usize, max_batch: usize) -> Result<Self> {
        let mut r = Reader::new(payload, peer, "input");
        let (index, holders, batch) = read_header(&mut r, max_batch)?;
        r.check_range("batch", batch, 1..=usize::MAX / input_len.max(1))?;
        let seed = r.seed()?;
        let share = Share::from_vec(r.elements(batch * input_len)?);
        r.end()?;
        Ok(Self { index, holders, batch, seed, share })
    }
}

/// A holder's `JOIN` message, the first frame on its connection to `S0`.
#[derive(Debug)]
pub struct Join {
    /// The query.
    pub session: SessionId,
    /// The holder's index, 1-based.
    pub index: usize,
    /// Number of holders.
    pub holders: usize,
    /// Images in the batch.
    pub batch: usize,
    /// Seed of this holder's re-shares (unused for holder 1).
    pub(crate) pair_seed: Seed,
}

impl Join {
    /// The `JOIN` payload (the session travels in the frame header).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(44);
        put_header(&mut out, self.index, self.holders, self.batch);
        out.extend_from_slice(self.pair_seed.expose_bytes());
        out
    }

    /// Reads a `JOIN` frame from `peer`; batches above `max_batch` are refused.
    pub(crate) fn parse(peer: &str, header: FrameHeader, payload: &[u8], max_batch: usize) -> Result<Self> {
        if header.kind != JOIN {
            return Err(
                tessera_net::NetError::UnexpectedKind { peer: peer.into(), expected: JOIN, got: header.kind }.into()
            );
        }
        let mut r = Reader::new(payload, peer, "join");
        let (index, holders, batch) = read_header(&mut r, max_batch)?;
        let pair_seed = r.seed()?;
        r.end()?;
        Ok(Join { session: header.session, index, holders, batch, pair_seed })
    }
}

/// The header `INPUT` and `JOIN` share: index, holder count and batch, u32 LE each.
fn put_header(out: &mut Vec<u8>, index: usize, holders: usize, batch: usize) {
    for v in [index, holders, batch] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
}

/// Reads and checks the header `INPUT` and `JOIN` share.
fn read_header(r: &mut Reader<'_>, max_batch: usize) -> Result<(usize, usize, usize)> {
    let (index, holders, batch) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
    r.check_range("holders", holders, HOLDERS)?;
    r.check_range("holder index", index, 1..=holders)?;
    r.check_range("batch", batch, 1..=max_batch)?;
    Ok((index, holders, batch))
}

/// A holder's `MASKED` message for one layer: per item (in the permuted order) its masked
/// comparisons, then per position its masked element; uniform on its own. Wiped on drop.
pub(crate) struct Masked(Zeroizing<Vec<u8>>);

impl Masked {
    /// Values in one holder's message for `layer` on a batch of `batch`.
    pub fn values(layer: &NonlinearLayer, batch: usize) -> usize {
        let (s, clamps) = (layer.arity(), layer.compares_with_zero());
        batch * layer.items() * (Comparison::of_item(s, clamps).len() + s)
    }

    /// The message of `values` (`len` of them), in order.
    pub fn from_values(len: usize, values: impl Iterator<Item = u64>) -> Self {
        let mut out = Zeroizing::new(Vec::with_capacity(8 * len));
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Masked(out)
    }

    /// The payload, to be sent wiped.
    pub fn into_payload(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.0)
    }

    /// Reads a holder's `MASKED` payload from `peer`, adding its values into `sum` (whose
    /// length is the message's); the payload is wiped.
    pub fn add_into(peer: &str, mut payload: Vec<u8>, sum: &mut [u64]) -> Result<()> {
        let mut r = Reader::new(&payload, peer, "masked");
        let read = r.elements_into(sum, zt::add).and_then(|()| r.end());
        payload.zeroize();
        read
    }
}

/// `RESHARE` (`S0` → holder 1), or the re-shares a holder `j ≥ 2` derives from its pair seed:
/// per item, its share of the selected truncated value and of every selection bit
/// (`v, b_0, …, b_(s−1)`). Wiped on drop.
pub(crate) struct Reshare(Zeroizing<Vec<u64>>);

impl Reshare {
    /// Values in the re-shares of `layer` on a batch of `batch`.
    pub fn values(layer: &NonlinearLayer, batch: usize) -> usize {
        batch * layer.items() * (layer.arity() + 1)
    }

    /// Re-shares of the given values.
    pub fn new(values: Zeroizing<Vec<u64>>) -> Self {
        Reshare(values)
    }

    /// The values.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    /// The `RESHARE` payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * self.0.len());
        put_elements(&mut out, &self.0);
        out
    }

    /// Reads `S0`'s `RESHARE` payload for `layer` on a batch of `batch`.
    pub fn parse(peer: &str, payload: &[u8], layer: &NonlinearLayer, batch: usize) -> Result<Self> {
        let mut r = Reader::new(payload, peer, "reshare");
        let values = Zeroizing::new(r.elements(Self::values(layer, batch))?);
        r.end()?;
        Ok(Reshare(values))
    }
}
