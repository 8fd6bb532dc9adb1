//! Wire formats: fixed layouts of little-endian integers and blocks, each checked against the
//! length agreed for the layer before anything is read.

use crate::block::Block;
use crate::error::{GcError, Message, Result};
use crate::modulus::Modulus;

/// Fails unless `bytes` has exactly `expected` bytes.
pub(crate) fn expect_len(message: Message, bytes: &[u8], expected: usize) -> Result<()> {
    if bytes.len() == expected { Ok(()) } else { Err(GcError::WrongLength { message, expected, actual: bytes.len() }) }
}

/// Appends `values` as little-endian `u64`s.
pub(crate) fn put_u64s(values: &[u64], out: &mut Vec<u8>) {
    out.reserve(8 * values.len());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads little-endian `u64`s (the length is checked by the caller), each below `t`.
pub(crate) fn get_zt(message: Message, bytes: &[u8], m: &Modulus) -> Result<Vec<u64>> {
    bytes
        .chunks_exact(8)
        .enumerate()
        .map(|(index, c)| {
            let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            if v < m.t() { Ok(v) } else { Err(GcError::OutOfRange { message, index }) }
        })
        .collect()
}

/// Reads little-endian `u64`s (ciphertexts: any value).
pub(crate) fn get_u64s(bytes: &[u8]) -> Vec<u64> {
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

/// Appends the little-endian bytes of `blocks`.
pub(crate) fn put_blocks(blocks: &[Block], out: &mut Vec<u8>) {
    out.reserve(16 * blocks.len());
    for b in blocks {
        out.extend_from_slice(&b.to_bytes());
    }
}

/// Reads little-endian blocks (the length is checked by the caller).
pub(crate) fn get_blocks(bytes: &[u8], out: &mut Vec<Block>) {
    out.extend(bytes.chunks_exact(16).map(|c| Block::from_bytes(c.try_into().expect("16 bytes"))));
}
