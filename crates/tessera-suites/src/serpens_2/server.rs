//! A server `S1` or `S2`: the linear layers on its share, both roles of every nonlinear layer.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tessera_field::seed::os_rng;
use tessera_field::share::Share;
use tessera_he::{HeParams, PublicKey, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::Runner;
use tessera_net::{Channel, FrameHeader, Recorder, SessionId, StageKind};
use tracing::Instrument;

use super::correlation::Correlations;
use super::nonlinear::{Keys, Query, Step, prepare};
use super::{INPUT, JOIN, KEY, Layout, MASKED, OUTPUT, OWNED, REPORT, RESULT, SELECTED, UNPERMUTE};
use crate::error::{Mismatch, Result, SuiteError, Violation};
use crate::parties::{advance_linear, stage_kind};
use crate::wire::{Reader, elements_to_bytes, parse_wiped, put_elements, send_reports};

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

/// Everything the user sends a server for one query: its correlations (first) and its input.
#[derive(Debug)]
pub struct FromUser {
    /// The input share.
    pub input: ServerInput,
    /// The permutation correlations (or the seed layout).
    pub correlations: Correlations,
}

/// Reads a query from the user: `header` and `payload` are its first frame
/// ([`CORRELATIONS`](super::CORRELATIONS)), then the [`INPUT`] frame is received; batches above
/// `max_batch` are refused.
pub async fn receive(
    user: &mut Channel,
    header: FrameHeader,
    payload: Vec<u8>,
    model: &FixedModel,
    he: &HeParams,
    max_batch: usize,
) -> Result<FromUser> {
    if header.kind != super::CORRELATIONS {
        return Err(tessera_net::NetError::UnexpectedKind {
            peer: user.peer().into(),
            expected: super::CORRELATIONS,
            got: header.kind,
        }
        .into());
    }
    let bytes = user.recv(INPUT, header.session, 0).await?;
    let input = parse_wiped(bytes, |b| ServerInput::parse(user.peer(), b, model.input_shape().len(), max_batch))?;
    let layers = model.nonlinear_layers();
    let correlations =
        parse_wiped(payload, |p| Correlations::parse(user.peer(), p, input.index, &layers, input.batch, he.degree()))?;
    Ok(FromUser { input, correlations })
}

/// `S1`'s `JOIN`, as `S2` reads it.
#[derive(Debug)]
pub struct Join {
    /// The query.
    pub session: SessionId,
    /// Images in the batch.
    pub batch: usize,
    /// `S1`'s public key.
    key: PublicKey,
}

/// Reads `S1`'s `JOIN` from a received frame.
pub fn join_from_frame(
    he: &HeParams,
    peer: &str,
    header: FrameHeader,
    payload: &[u8],
    max_batch: usize,
) -> Result<Join> {
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

fn read_key(he: &HeParams, peer: &str, message: &'static str, bytes: &[u8]) -> Result<PublicKey> {
    PublicKey::read(he, bytes).map_err(|e| SuiteError::Protocol {
        peer: peer.into(),
        message,
        violation: Violation::Key(e),
    })
}

/// How a server reaches its peer for a query: `S1` dials `S2`; `S2` is handed the connection on
/// which `S1`'s `JOIN` for this query arrived.
#[derive(Debug)]
pub enum PeerLink {
    /// `S1`'s connection to `S2`.
    Dialed(Channel),
    /// `S2`'s connection from `S1`, with the `JOIN` read from it.
    Accepted(Channel, Box<Join>),
}

/// Where an in-memory run keeps a server's secret key of the query (attack tests decrypt what
/// the server received as key owner with it). Deployed servers have none.
pub(crate) type KeySlot = Arc<Mutex<Option<Arc<SecretKey>>>>;

/// Serves one query as server `from_user.input.index`: runs the model on its share with the peer
/// reached through `peer` (awaited while the first linear layers run), and returns the logit
/// share and its cost report to `user`. Gives back the link to the peer.
pub async fn server(
    name: &str,
    model: Arc<FixedModel>,
    he: Arc<HeParams>,
    user: &mut Channel,
    session: SessionId,
    from_user: FromUser,
    peer: impl Future<Output = Result<PeerLink>>,
) -> Result<Channel> {
    serve_query(Party { name, model, he }, user, session, from_user, peer, None).await
}

/// Who serves a query: the server's name, its model and the HE parameters.
pub(crate) struct Party<'a> {
    /// The server's name in reports.
    pub name: &'a str,
    /// The model.
    pub model: Arc<FixedModel>,
    /// The HE parameters.
    pub he: Arc<HeParams>,
}

/// [`server`], keeping its secret key in `key_slot` when one is given (in-memory runs only).
pub(crate) async fn serve_query(
    party: Party<'_>,
    user: &mut Channel,
    session: SessionId,
    from_user: FromUser,
    peer: impl Future<Output = Result<PeerLink>>,
    key_slot: Option<KeySlot>,
) -> Result<Channel> {
    let Party { name, model, he } = party;
    let result: Result<Channel> = async {
        let mut rec = Recorder::new(name);
        rec.stage(0, "input", StageKind::Input, &[user]);
        let FromUser { input: ServerInput { index, batch, share }, correlations } = from_user;
        let me = index - 1;
        let params = model.params();
        let layers = model.nonlinear_layers();
        let mut runner = Runner::new(model.clone(), share.as_slice().to_vec(), batch, index == 1);
        drop(share);
        // Input-independent: fresh keys per query (the peer's view of one query says nothing
        // about the next) and, in the hidden layout, `⟦β⟧` of every layer.
        let prepared = {
            let (he, layers) = (he.clone(), layers.clone());
            tokio::task::spawn_blocking(move || -> Result<_> {
                let mut rng = os_rng();
                let sk = SecretKey::generate(&he, &mut rng)?;
                let pk = sk.public_key(&mut rng)?;
                let mut bytes = Vec::with_capacity(super::key_size(&he));
                pk.write(&he, &mut bytes)?;
                let prepared = prepare(&he, &sk, &correlations, &layers, batch, me)?;
                Ok((sk, bytes, prepared, correlations))
            })
        };
        let (sk, my_key, prepared, correlations) =
            prepared.await.map_err(|e| SuiteError::stopped("preprocessing", &e))??;
        let sk = Arc::new(sk);
        if let Some(slot) = &key_slot {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(sk.clone());
        }
        rec.stage(0, "preprocess", StageKind::Preprocess, &[]);
        let link = peer.await?;
        // The link says which server this is; the user's index must agree.
        let dialed = matches!(link, PeerLink::Dialed(_));
        if dialed != (index == 1) {
            return Err(SuiteError::Incompatible {
                peer: user.peer().into(),
                message: "input",
                mismatch: Mismatch::ServerIndex { got: index, this: if dialed { 1 } else { 2 } },
            });
        }
        let (mut link, peer_key) = match link {
            PeerLink::Dialed(mut c) => {
                let mut join = (batch as u32).to_le_bytes().to_vec();
                join.extend_from_slice(&my_key);
                c.send(JOIN, session, 0, &join).await?;
                let key = c.recv(KEY, session, 0).await?;
                let key = read_key(&he, c.peer(), "key", &key)?;
                (c, key)
            }
            PeerLink::Accepted(mut c, join) => {
                if join.session != session || join.batch != batch {
                    return Err(SuiteError::Protocol {
                        peer: c.peer().into(),
                        message: "join",
                        violation: Violation::Disagreement { on: "session or batch" },
                    });
                }
                c.send(KEY, session, 0, &my_key).await?;
                (c, join.key)
            }
        };
        rec.stage(0, "keys", StageKind::Keys, &[&link]);
        let query = Arc::new(Query {
            session,
            batch,
            me,
            he: (*he).clone(),
            keys: Keys { mine: sk, peer: peer_key },
            kappa: params.mask_bits(),
            bound_bits: params.bound_bits(),
            correlations,
        });
        let mut prepared = prepared.into_iter();
        let mut first = 0usize;
        for index in 0.. {
            let (back, layer) = advance_linear(runner, &model, &mut rec, &mut first, &[]).await?;
            runner = back;
            let Some(layer) = layer else { break };
            if layers.get(index) != Some(&layer) {
                return Err(SuiteError::LayerOrder { layer: layer.node });
            }
            let x = runner.pending_input().to_vec();
            let span = tracing::debug_span!("layer", node = layer.node, kind = ?layer.kind);
            let out = evaluate(&mut link, &query, index, &layer, x, prepared.next().unwrap_or_default())
                .instrument(span)
                .await?;
            runner.complete(out);
            rec.stage(layer.node, model.node_name(layer.node as usize), stage_kind(&layer), &[&link]);
        }
        user.send(OUTPUT, session, 0, &elements_to_bytes(runner.output())).await?;
        drop(runner);
        rec.stage(0, "output", StageKind::Output, &[user]);
        send_reports(user, REPORT, session, &[rec.finish()]).await?;
        Ok(link)
    }
    .await;
    if let Err(e) = &result {
        user.abort(session, &e.to_string()).await;
    }
    result
}

/// Runs the `index`-th nonlinear layer as one server of `query` with its peer over `link`:
/// returns this server's share of the layer output (at activation scale), for the whole batch.
/// `prepared` is this server's `⟦β⟧` for the layer (hidden layout; empty otherwise).
pub(crate) async fn evaluate(
    link: &mut Channel,
    query: &Arc<Query>,
    index: usize,
    layer: &NonlinearLayer,
    x: Vec<u64>,
    prepared: Vec<u8>,
) -> Result<Vec<u64>> {
    let step = Arc::new(Step::new(query, index, layer, x, link.peer()));
    let (session, node) = (query.session, layer.node);
    let owned = blocking(&step, move |s| s.owned(prepared)).await?;
    let mut owned = link.exchange(OWNED, session, node, &owned).await?;
    let (masked, masker) = blocking(&step, move |s| s.mask_peer(&mut owned)).await?;
    let masker = Arc::new(masker);
    let masked = link.exchange(MASKED, session, node, &masked).await?;
    let (selected, kept) = blocking(&step, move |s| s.select_own(&masked)).await?;
    let selected = link.exchange(SELECTED, session, node, &selected).await?;
    let m = masker.clone();
    let result = blocking(&step, move |s| s.unmask_peer(&selected, &m)).await?;
    let result = link.exchange(RESULT, session, node, &result).await?;
    let own = blocking(&step, move |s| s.own_share(&result, kept)).await?;
    match step.layout() {
        Layout::Seed => Ok(step.assemble_seeded(&own, &masker)),
        Layout::Hidden => {
            let (message, own) = step.unpermute_own(own)?;
            let mut received = link.exchange(UNPERMUTE, session, node, &message).await?;
            let peer = step.unpermute_peer(&mut received, &masker)?;
            Ok(step.assemble(&own, &peer))
        }
    }
}

/// Runs `f` on the blocking pool (HE work would stall the runtime's threads).
async fn blocking<T: Send + 'static>(
    step: &Arc<Step>,
    f: impl FnOnce(&Step) -> Result<T> + Send + 'static,
) -> Result<T> {
    let step = step.clone();
    tokio::task::spawn_blocking(move || f(&step)).await.map_err(|e| SuiteError::stopped("the HE step", &e))?
}
