//! Suite `plain`: the user sends normalized images in the clear; the server runs the `f32`
//! engine and returns the logits. It is the transport baseline the secure suites are compared
//! with (Serpens' "plaintext inference over the network").
//!
//! Messages (one round trip per query): `QUERY` = batch size (u32 LE) followed by the images as
//! f32 LE; `LOGITS` = the logits as f32 LE.

use std::sync::Arc;

use futures::future::BoxFuture;
use tessera_model::Model;
use tessera_model::plain::PlainEngine;
use tessera_net::admission::FrameLimits;
use tessera_net::{Channel, MessageKind, SessionId};

use crate::error::{Result, SuiteError, Violation};
use crate::service::{Service, next_query};

/// User → server: the images.
pub const QUERY: MessageKind = MessageKind(0x0101);
/// Server → user: the logits.
pub const LOGITS: MessageKind = MessageKind(0x0102);

/// The largest batch whose every value (the images, each node's output, the logits; 4 bytes
/// each) fits in a frame of `max_frame` bytes, so that a query holds a few frames' worth of
/// memory at most.
pub fn max_batch(model: &Model, max_frame: u32) -> usize {
    let largest = model.nodes().iter().map(|n| n.shape.len()).fold(model.input_shape().len(), usize::max);
    let per_image = 4 * largest;
    ((max_frame as usize).saturating_sub(4) / per_image.max(1)).max(1)
}

/// The largest frame of each kind the server receives from users under frames of at most
/// `max_frame` bytes: `QUERY` for the largest batch ([`max_batch`]); any other kind (but an
/// abort) is refused.
pub fn frame_limits(model: &Model, max_frame: u32) -> FrameLimits {
    FrameLimits::new(0).with(QUERY, 4 + 4 * model.input_shape().len() * max_batch(model, max_frame))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The user's side of one query: sends `batch` images, returns `batch × classes` logits.
pub async fn user(
    server: &mut Channel,
    session: SessionId,
    input: &[f32],
    batch: u32,
    classes: usize,
) -> Result<Vec<f32>> {
    let mut msg = batch.to_le_bytes().to_vec();
    msg.extend(bytes(input));
    server.send(QUERY, session, 0, &msg).await?;
    let reply = server.recv(LOGITS, session, 0).await?;
    if reply.len() != 4 * classes * batch as usize {
        return Err(SuiteError::Protocol {
            peer: server.peer().into(),
            message: "logits",
            violation: Violation::Length { actual: reply.len(), expected: 4 * classes * batch as usize },
        });
    }
    Ok(f32s(&reply))
}

/// The server: answers every query of a connection with the `f32` engine.
#[derive(Debug)]
pub struct PlainServer {
    model: Arc<Model>,
}

impl PlainServer {
    /// A server of `model` (the merged graph).
    pub fn new(model: Arc<Model>) -> Self {
        Self { model }
    }
}

impl Service for PlainServer {
    fn handle(&self, mut user: Channel) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let mut engine = PlainEngine::new(&self.model);
            let input_len = self.model.input_shape().len();
            while let Some((header, payload)) = next_query(&mut user, QUERY).await? {
                serve_query(&mut user, &mut engine, header.session, &payload, input_len).await?;
            }
            Ok(())
        })
    }
}

/// The server's side of one query whose `QUERY` frame (`session`, `payload`) was received.
pub async fn serve_query(
    user: &mut Channel,
    engine: &mut PlainEngine<'_>,
    session: SessionId,
    payload: &[u8],
    input_len: usize,
) -> Result<()> {
    let bad = |violation| SuiteError::Protocol { peer: user.peer().into(), message: "query", violation };
    let (head, images) =
        payload.split_at_checked(4).ok_or_else(|| bad(Violation::Truncated { left: payload.len(), expected: 4 }))?;
    let batch = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
    if batch == 0 {
        return Err(bad(Violation::OutOfRange { field: "batch", value: 0, min: 1, max: u32::MAX as u64 }));
    }
    if images.len() != 4 * input_len * batch {
        return Err(bad(Violation::Length { actual: images.len(), expected: 4 * input_len * batch }));
    }
    let x = f32s(images);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(bad(Violation::NonFinite));
    }
    let logits = engine.run(&x, batch)?;
    user.send(LOGITS, session, 0, &bytes(&logits)).await?;
    Ok(())
}
