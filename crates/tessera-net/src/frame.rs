//! Frames: a fixed header (magic, version, message kind, layer, session id, payload length) and
//! a payload. Decoding checks everything in the header before the payload is read, so a hostile
//! length never allocates.

/// Protocol version carried in every frame.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 30;
const MAGIC: [u8; 2] = *b"TS";

/// A message kind; each protocol defines its own constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKind(pub u16);

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A query's session id: 128 random bits, fresh per query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    /// A fresh random session id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        rand_bytes(&mut b);
        Self(b)
    }
}

fn rand_bytes(out: &mut [u8]) {
    use rustls::crypto::ring::default_provider;
    default_provider().secure_random.fill(out).expect("the OS random source works");
}

/// A frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the payload is.
    pub kind: MessageKind,
    /// The layer the message belongs to (0 outside layers).
    pub layer: u32,
    /// The query it belongs to.
    pub session: SessionId,
    /// Payload length in bytes.
    pub len: u32,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The first bytes are not Tessera's magic.
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 2]),
    /// A version this build does not speak.
    #[error("protocol version {got}, this build speaks {VERSION}")]
    WrongVersion {
        /// The peer's version.
        got: u8,
    },
    /// A payload longer than the configured maximum.
    #[error("payload of {len} bytes, above the maximum of {max}")]
    Oversized {
        /// Declared length.
        len: u32,
        /// Maximum.
        max: u32,
    },
    /// A payload longer than its message kind can be at this server.
    #[error("payload of {len} bytes for message kind {kind}, above its maximum of {max}")]
    OversizedKind {
        /// The kind.
        kind: MessageKind,
        /// Declared length.
        len: u32,
        /// The kind's maximum.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: {missing} bytes missing")]
    Truncated {
        /// Bytes still expected.
        missing: usize,
    },
}

impl FrameHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[4..6].copy_from_slice(&self.kind.0.to_le_bytes());
        b[6..10].copy_from_slice(&self.layer.to_le_bytes());
        b[10..26].copy_from_slice(&self.session.0);
        b[26..30].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Parses and checks a header; `max_len` bounds the payload.
    pub fn decode(b: &[u8; HEADER_LEN], max_len: u32) -> Result<Self, FrameError> {
        if b[..2] != MAGIC {
            return Err(FrameError::BadMagic([b[0], b[1]]));
        }
        if b[2] != VERSION {
            return Err(FrameError::WrongVersion { got: b[2] });
        }
        let len = u32::from_le_bytes(b[26..30].try_into().expect("4 bytes"));
        if len > max_len {
            return Err(FrameError::Oversized { len, max: max_len });
        }
        Ok(Self {
            kind: MessageKind(u16::from_le_bytes([b[4], b[5]])),
            layer: u32::from_le_bytes(b[6..10].try_into().expect("4 bytes")),
            session: SessionId(b[10..26].try_into().expect("16 bytes")),
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_refusals() {
        let h = FrameHeader { kind: MessageKind(7), layer: 3, session: SessionId::random(), len: 100 };
        let b = h.encode();
        assert_eq!(FrameHeader::decode(&b, 100), Ok(h));
        assert_eq!(FrameHeader::decode(&b, 99), Err(FrameError::Oversized { len: 100, max: 99 }));
        let mut bad = b;
        bad[2] = 9;
        assert_eq!(FrameHeader::decode(&bad, 100), Err(FrameError::WrongVersion { got: 9 }));
        bad[0] = b'X';
        assert!(matches!(FrameHeader::decode(&bad, 100), Err(FrameError::BadMagic(_))));
        assert_ne!(SessionId::random(), SessionId::random());
    }
}
