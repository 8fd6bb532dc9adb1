//! The channel: typed frames over any byte stream, with deadlines and metering.

use std::io::IoSlice;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::admission::{Admission, Admitted};
use crate::error::{NetError, Result};
use crate::frame::{FrameError, FrameHeader, HEADER_LEN, MessageKind, SessionId};
use crate::tap::Wiretap;

/// Any byte stream a channel can run over (in-memory pipe, TCP, TLS).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// Traffic on one channel, from this end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meter {
    /// Bytes written, headers included.
    pub bytes_sent: u64,
    /// Bytes read, headers included.
    pub bytes_received: u64,
    /// Frames written.
    pub messages_sent: u64,
    /// Frames read.
    pub messages_received: u64,
    /// Round trips: receives that follow a send.
    pub rounds: u64,
}

impl Meter {
    /// The traffic since `earlier` (for per-layer accounting).
    pub fn since(&self, earlier: &Meter) -> Meter {
        Meter {
            bytes_sent: self.bytes_sent - earlier.bytes_sent,
            bytes_received: self.bytes_received - earlier.bytes_received,
            messages_sent: self.messages_sent - earlier.messages_sent,
            messages_received: self.messages_received - earlier.messages_received,
            rounds: self.rounds - earlier.rounds,
        }
    }

    /// This traffic and `other` together.
    pub fn plus(&self, other: &Meter) -> Meter {
        Meter {
            bytes_sent: self.bytes_sent + other.bytes_sent,
            bytes_received: self.bytes_received + other.bytes_received,
            messages_sent: self.messages_sent + other.messages_sent,
            messages_received: self.messages_received + other.messages_received,
            rounds: self.rounds + other.rounds,
        }
    }

    /// Whether nothing was sent or received.
    pub fn is_empty(&self) -> bool {
        *self == Meter::default()
    }
}

/// A message channel to one peer.
pub struct Channel {
    peer: String,
    stream: Box<dyn Stream>,
    timeout: Duration,
    max_payload: u32,
    meter: Meter,
    sent_since_recv: bool,
    tap: Option<Wiretap>,
    /// A server's rules for this accepted connection's frames.
    admitted: Option<Admitted>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").field("peer", &self.peer).field("meter", &self.meter).finish_non_exhaustive()
    }
}

/// The kind reported while waiting for a frame of any kind.
pub const ANY_KIND: MessageKind = MessageKind(u16::MAX);

/// A party that gives up on a query says why with this frame; the receiver gets
/// [`NetError::Aborted`] instead of waiting for its timeout.
pub const ABORT: MessageKind = MessageKind(1);

/// The longest reason an abort frame carries.
pub(crate) const MAX_ABORT_REASON: usize = 512;

impl Channel {
    /// A channel to `peer` over `stream`; every receive (and send) waits at most `timeout`, and
    /// payloads above `max_payload` bytes are refused.
    pub fn new(peer: impl Into<String>, stream: impl Stream + 'static, timeout: Duration, max_payload: u32) -> Self {
        Self {
            peer: peer.into(),
            stream: Box::new(stream),
            timeout,
            max_payload,
            meter: Meter::default(),
            sent_since_recv: false,
            tap: None,
            admitted: None,
        }
    }

    /// Checks every frame received from now on against a server's `rules`, at its header: a
    /// refused frame is not read, and its sender gets the reason in an abort frame.
    pub fn admit(&mut self, rules: std::sync::Arc<Admission>) {
        self.admitted = Some(Admitted::new(rules));
    }

    /// Records every frame this end receives from now on into `tap` (attack tests' views).
    pub fn tap(&mut self, tap: Wiretap) {
        self.tap = Some(tap);
    }

    /// Two connected in-memory channels: the first talks to `b`, the second to `a`.
    pub fn pair(a: &str, b: &str, timeout: Duration, max_payload: u32) -> (Channel, Channel) {
        let (x, y) = tokio::io::duplex(1 << 20);
        (Channel::new(b, x, timeout, max_payload), Channel::new(a, y, timeout, max_payload))
    }

    /// The peer's party name.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Traffic so far.
    pub fn meter(&self) -> Meter {
        self.meter
    }

    /// Whether the peer has closed this (idle) connection or sent something unasked: probed
    /// without waiting, before a kept connection is used again.
    pub async fn peer_gone(&mut self) -> bool {
        let mut byte = [0u8; 1];
        // Nothing to read yet (the timeout fired first) means the connection is idle and alive.
        tokio::time::timeout(Duration::ZERO, self.stream.read(&mut byte)).await.is_ok()
    }

    /// Starts counting afresh (a kept connection that serves a new query).
    pub fn reset_meter(&mut self) {
        self.meter = Meter::default();
        self.sent_since_recv = false;
    }

    /// Waits up to `idle` (not the channel's timeout) for the first frame of the next query on
    /// a kept connection; `None` when none came or the peer closed.
    pub async fn recv_next(&mut self, idle: Duration) -> Option<Result<(FrameHeader, Vec<u8>)>> {
        let timeout = std::mem::replace(&mut self.timeout, idle);
        let frame = self.recv_frame(ANY_KIND).await;
        self.timeout = timeout;
        match frame {
            Err(NetError::Timeout { .. } | NetError::PeerClosed { .. }) => None,
            other => Some(other),
        }
    }

    /// The header of a frame carrying `payload`, refused when the payload is over the maximum.
    fn header(&self, kind: MessageKind, session: SessionId, layer: u32, payload: &[u8]) -> Result<[u8; HEADER_LEN]> {
        let len = u32::try_from(payload.len()).ok().filter(|&l| l <= self.max_payload).ok_or_else(|| {
            NetError::Malformed {
                peer: self.peer.clone(),
                error: FrameError::Oversized {
                    len: payload.len().min(u32::MAX as usize) as u32,
                    max: self.max_payload,
                },
            }
        })?;
        Ok(FrameHeader { kind, layer, session, len }.encode())
    }

    fn count_sent(&mut self, payload: &[u8]) {
        self.meter.bytes_sent += (HEADER_LEN + payload.len()) as u64;
        self.meter.messages_sent += 1;
        self.sent_since_recv = true;
    }

    /// Counts a received frame, and records it where the channel is tapped.
    fn count_received(&mut self, header: FrameHeader, payload: &[u8]) {
        self.meter.bytes_received += (HEADER_LEN + payload.len()) as u64;
        self.meter.messages_received += 1;
        if std::mem::take(&mut self.sent_since_recv) {
            self.meter.rounds += 1;
        }
        if let Some(tap) = &self.tap {
            tap.record(&self.peer, header, payload);
        }
    }

    /// Sends one frame.
    pub async fn send(&mut self, kind: MessageKind, session: SessionId, layer: u32, payload: &[u8]) -> Result<()> {
        let header = self.header(kind, session, layer, payload)?;
        write_frame(&mut self.stream, &self.peer, self.timeout, kind, &header, payload).await?;
        self.count_sent(payload);
        Ok(())
    }

    /// Sends one frame and receives the next, which must be of `kind`, for `session` and
    /// `layer`, at the same time: for two peers that both send before they read, whose large
    /// frames would otherwise fill both directions' buffers and stall each other.
    pub async fn exchange(
        &mut self,
        kind: MessageKind,
        session: SessionId,
        layer: u32,
        payload: &[u8],
    ) -> Result<Vec<u8>> {
        let header = self.header(kind, session, layer, payload)?;
        let (peer, timeout, max) = (&self.peer, self.timeout, self.max_payload);
        let (mut reader, mut writer) = tokio::io::split(&mut self.stream);
        let (sent, received) = tokio::join!(
            write_frame(&mut writer, peer, timeout, kind, &header, payload),
            read_frame(&mut reader, peer, timeout, max, kind, self.admitted.as_mut())
        );
        sent?;
        self.count_sent(payload);
        let (h, received) = self.told(received).await?;
        self.count_received(h, &received);
        self.check(h, received, kind, session, layer)
    }

    /// Tells the peer that this party gave up on `session`, and why (no values: the reason is
    /// an error message). Best effort: a peer that is gone is not an error here.
    pub async fn abort(&mut self, session: SessionId, reason: &str) {
        let mut end = reason.len().min(MAX_ABORT_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let _ = self.send(ABORT, session, 0, &reason.as_bytes()[..end]).await;
    }

    /// Receives the next frame, which must be of `kind`, for `session` and `layer`.
    pub async fn recv(&mut self, kind: MessageKind, session: SessionId, layer: u32) -> Result<Vec<u8>> {
        let (h, payload) = self.recv_frame(kind).await?;
        self.check(h, payload, kind, session, layer)
    }

    /// Receives the next frame for `session` of `kind` (any layer) or of `other`, with its
    /// header so the caller tells which: a peer's progress notes ahead of a reply that takes
    /// long. An abort frame becomes the peer's reason.
    pub async fn recv_either(
        &mut self,
        kind: MessageKind,
        other: MessageKind,
        session: SessionId,
    ) -> Result<(FrameHeader, Vec<u8>)> {
        let (h, payload) = self.recv_frame(kind).await?;
        if h.kind == other && h.session == session {
            return Ok((h, payload));
        }
        self.check(h, payload, kind, session, h.layer).map(|p| (h, p))
    }

    /// Accepts a received frame only if it is of `kind`, for `session` and `layer`; an abort
    /// frame becomes the peer's reason.
    fn check(
        &self,
        h: FrameHeader,
        payload: Vec<u8>,
        kind: MessageKind,
        session: SessionId,
        layer: u32,
    ) -> Result<Vec<u8>> {
        if h.kind == ABORT && h.session == session {
            let reason = String::from_utf8_lossy(&payload[..payload.len().min(MAX_ABORT_REASON)]).into_owned();
            return Err(NetError::Aborted { peer: self.peer.clone(), step: kind, reason });
        }
        if h.session != session {
            return Err(NetError::WrongSession { peer: self.peer.clone(), step: kind });
        }
        if h.kind != kind {
            return Err(NetError::UnexpectedKind { peer: self.peer.clone(), expected: kind, got: h.kind });
        }
        if h.layer != layer {
            return Err(NetError::WrongLayer { peer: self.peer.clone(), expected: layer, got: h.layer });
        }
        Ok(payload)
    }

    /// Receives the next frame of any kind and session (a server's first message of a query).
    pub async fn recv_any(&mut self) -> Result<(FrameHeader, Vec<u8>)> {
        self.recv_frame(ANY_KIND).await
    }

    async fn recv_frame(&mut self, step: MessageKind) -> Result<(FrameHeader, Vec<u8>)> {
        let (stream, admitted) = (&mut self.stream, self.admitted.as_mut());
        let read = read_frame(stream, &self.peer, self.timeout, self.max_payload, step, admitted).await;
        let (h, payload) = self.told(read).await?;
        self.count_received(h, &payload);
        Ok((h, payload))
    }

    /// A received frame, or the error; a frame the admission rules refused is answered with
    /// the reason first.
    async fn told(&mut self, read: Result<(FrameHeader, Vec<u8>)>) -> Result<(FrameHeader, Vec<u8>)> {
        if let Err(e) = &read
            && let Some(session) = self.admitted.as_mut().and_then(Admitted::take_refused)
        {
            self.abort(session, &e.to_string()).await;
        }
        read
    }

    /// Writes raw bytes, bypassing framing: only for tests that play a misbehaving peer.
    #[doc(hidden)]
    pub async fn send_raw_for_tests(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream
            .write_all(bytes)
            .await
            .map_err(|e| NetError::Io { peer: self.peer.clone(), reason: e.to_string() })?;
        self.stream.flush().await.map_err(|e| NetError::Io { peer: self.peer.clone(), reason: e.to_string() })
    }

    /// Closes the channel (TLS close_notify where applicable).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.stream.shutdown()).await;
    }
}

/// Writes one frame within `timeout`.
async fn write_frame<W: AsyncWrite + Unpin>(
    stream: &mut W,
    peer: &str,
    timeout: Duration,
    kind: MessageKind,
    header: &[u8; HEADER_LEN],
    payload: &[u8],
) -> Result<()> {
    let write = async {
        // Header and payload in one vectored write: over TLS they share records and system
        // calls instead of the header going out as a record of its own.
        let mut parts = [IoSlice::new(header), IoSlice::new(payload)];
        let mut left: &mut [IoSlice<'_>] = &mut parts;
        while !left.is_empty() {
            match stream.write_vectored(left).await? {
                0 => return Err(std::io::ErrorKind::WriteZero.into()),
                n => IoSlice::advance_slices(&mut left, n),
            }
        }
        stream.flush().await
    };
    match tokio::time::timeout(timeout, write).await {
        Err(_) => Err(NetError::Timeout { peer: peer.into(), step: kind, waited: timeout }),
        Ok(Err(e)) => Err(stream_error(peer, kind, e)),
        Ok(Ok(())) => Ok(()),
    }
}

/// Reads one frame within `timeout`: the header, checked (length against `max_payload`, and
/// against a server's `admitted` rules, whose budget it holds while the payload arrives) before
/// the payload is allocated, then the payload.
async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: &str,
    timeout: Duration,
    max_payload: u32,
    step: MessageKind,
    admitted: Option<&mut Admitted>,
) -> Result<(FrameHeader, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let header = read_exact(stream, peer, timeout, HEADER_LEN, step, deadline, true).await?;
    let header: &[u8; HEADER_LEN] = header.as_slice().try_into().expect("a whole header");
    let h =
        FrameHeader::decode(header, max_payload).map_err(|error| NetError::Malformed { peer: peer.into(), error })?;
    let _held = match admitted {
        Some(a) => {
            a.check(peer, &h)?;
            Some(a.reserve(peer, &h, deadline, timeout).await?)
        }
        None => None,
    };
    // The length was checked against the maximum before this allocation.
    let payload = read_exact(stream, peer, timeout, h.len as usize, step, deadline, false).await?;
    Ok((h, payload))
}

/// Reads exactly `len` bytes before `deadline` into fresh (not zero-filled) memory. A stream
/// that ends before the first byte of a frame (`frame_start`) is a closed peer; one that ends
/// inside a frame sent a truncated frame.
async fn read_exact<R: AsyncRead + Unpin>(
    stream: &mut R,
    peer: &str,
    timeout: Duration,
    len: usize,
    step: MessageKind,
    deadline: tokio::time::Instant,
    frame_start: bool,
) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let mut limited = (&mut *stream).take((len - buf.len()) as u64);
        let read = tokio::time::timeout_at(deadline, limited.read_buf(&mut buf)).await;
        match read {
            Err(_) => return Err(NetError::Timeout { peer: peer.into(), step, waited: timeout }),
            Ok(Ok(0)) if frame_start && buf.is_empty() => return Err(NetError::PeerClosed { peer: peer.into(), step }),
            Ok(Ok(0)) => {
                return Err(NetError::Malformed {
                    peer: peer.into(),
                    error: FrameError::Truncated { missing: len - buf.len() },
                });
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(stream_error(peer, step, e)),
        }
    }
    Ok(buf)
}

/// A failed read or write (or TLS handshake) while waiting for `step`: a stream that ended is
/// [`NetError::PeerClosed`], a TLS failure (an alert from the peer, a record that does not
/// decrypt) [`NetError::Tls`], anything else [`NetError::Io`].
pub(crate) fn stream_error(peer: &str, step: MessageKind, e: std::io::Error) -> NetError {
    if is_closed(&e) {
        return NetError::PeerClosed { peer: peer.into(), step };
    }
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => NetError::Tls { peer: peer.into(), reason: tls.to_string() },
        None => NetError::Io { peer: peer.into(), reason: e.to_string() },
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected)
}
