//! A server `S1` or `S2`: the linear layers on its share, both roles of every nonlinear layer.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tessera_field::seed::os_rng;
use tessera_he::{HeParams, PublicKey, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::{LayerTrace, Runner};
use tessera_net::{Channel, FrameHeader, Recorder, SessionId, StageKind};
use tracing::Instrument;

use super::msgs::{Correlations, Join, Key, ServerInput};
use super::nonlinear::{Keys, Masker, Owner, Query, Step, prepare};
use super::{INPUT, JOIN, KEY, MASKED, OUTPUT, OWNED, REPORT, RESULT, SELECTED, UNPERMUTE};
use crate::error::{Mismatch, Result, SuiteError, Violation};
use crate::parties::{advance_linear, stage_kind};
use crate::wire::{elements_to_bytes, parse_wiped, send_reports};

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

/// Reads `S1`'s `JOIN` from a received frame.
pub fn join_from_frame(
    he: &HeParams,
    peer: &str,
    header: FrameHeader,
    payload: &[u8],
    max_batch: usize,
) -> Result<Join> {
    Join::parse(he, peer, header, payload, max_batch)
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

/// What an in-memory run keeps of one server's query; deployed servers keep nothing.
#[derive(Default)]
pub(crate) struct Inspection {
    /// Where to keep the query's secret key.
    pub key: Option<KeySlot>,
    /// Where to record every nonlinear layer's input and output share.
    pub layers: Option<LayerTrace>,
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

/// Serves one query as server `from_user.input.index`: runs the model on its share with the peer
/// reached through `peer` (awaited while the first linear layers run), and returns the logit
/// share and its cost report to `user`; keeps what `inspect` asks for (in-memory runs only;
/// deployed servers keep nothing). Gives back the link to the peer.
pub(crate) async fn server(
    party: Party<'_>,
    user: &mut Channel,
    session: SessionId,
    from_user: FromUser,
    peer: impl Future<Output = Result<PeerLink>>,
    inspect: Inspection,
) -> Result<Channel> {
    let result = serve(party, user, session, from_user, peer, inspect).await;
    // A failure is told to the user at once instead of leaving it to its timeout.
    if let Err(e) = &result {
        user.abort(session, &e.to_string()).await;
    }
    result
}

/// Every step of the query: preprocessing, the keys, the layers, the output.
async fn serve(
    party: Party<'_>,
    user: &mut Channel,
    session: SessionId,
    from_user: FromUser,
    peer: impl Future<Output = Result<PeerLink>>,
    inspect: Inspection,
) -> Result<Channel> {
    let Party { name, model, he } = party;
    let mut rec = Recorder::new(name);
    rec.stage(0, "input", StageKind::Input, &[user]);
    let FromUser { input: ServerInput { index, batch, share }, correlations } = from_user;
    let runner = Runner::new(model.clone(), share.as_slice().to_vec(), batch, index == 1).traced(inspect.layers);
    drop(share);
    let me = index - 1;
    let prepared = preprocess(&he, &model, correlations, batch, me).await?;
    if let Some(slot) = &inspect.key {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(prepared.secret.clone());
    }
    rec.stage(0, "preprocess", StageKind::Preprocess, &[]);
    let Prepared { secret, public, layers, correlations } = prepared;
    let (mut link, peer_key) = exchange_keys(&he, user.peer(), peer.await?, index, session, batch, public).await?;
    rec.stage(0, "keys", StageKind::Keys, &[&link]);
    let params = model.params();
    let query = Arc::new(Query {
        session,
        batch,
        me,
        he: (*he).clone(),
        keys: Keys { mine: secret, peer: peer_key },
        kappa: params.mask_bits(),
        bound_bits: params.bound_bits(),
        correlations,
    });
    let runner = run_layers(&mut link, &query, &model, runner, layers, &mut rec).await?;
    user.send(OUTPUT, session, 0, &elements_to_bytes(runner.output())).await?;
    drop(runner);
    rec.stage(0, "output", StageKind::Output, &[user]);
    send_reports(user, REPORT, session, &[rec.finish()]).await?;
    Ok(link)
}

/// What a server prepares before it meets its peer.
struct Prepared {
    /// The query's secret key.
    secret: Arc<SecretKey>,
    /// Its public key, for the peer.
    public: PublicKey,
    /// Per nonlinear layer, the server's `⟦β⟧` (hidden layout; none otherwise).
    layers: Vec<Vec<u8>>,
    /// The user's correlations, handed back.
    correlations: Correlations,
}

/// The input-independent work, on the blocking pool: fresh keys per query (the peer's view of
/// one query says nothing about the next) and, in the hidden layout, `⟦β⟧` of every layer.
async fn preprocess(
    he: &Arc<HeParams>,
    model: &FixedModel,
    correlations: Correlations,
    batch: usize,
    me: usize,
) -> Result<Prepared> {
    let (he, layers) = (he.clone(), model.nonlinear_layers());
    let prepared = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut rng = os_rng();
        let secret = SecretKey::generate(&he, &mut rng)?;
        let public = secret.public_key(&mut rng)?;
        let layers = prepare(&he, &secret, &correlations, &layers, batch, me)?;
        Ok(Prepared { secret: Arc::new(secret), public, layers, correlations })
    });
    prepared.await.map_err(|e| SuiteError::stopped("preprocessing", &e))?
}

/// Opens the query with the peer: `S1` sends its `JOIN` and reads `S2`'s `KEY`; `S2`, handed
/// `S1`'s `JOIN`, checks it and answers with its `KEY`. Returns the link and the peer's key.
async fn exchange_keys(
    he: &HeParams,
    user: &str,
    link: PeerLink,
    index: usize,
    session: SessionId,
    batch: usize,
    public: PublicKey,
) -> Result<(Channel, PublicKey)> {
    // The link says which server this is; the user's index must agree.
    let dialed = matches!(link, PeerLink::Dialed(_));
    if dialed != (index == 1) {
        return Err(SuiteError::Incompatible {
            peer: user.into(),
            message: "input",
            mismatch: Mismatch::ServerIndex { got: index, this: if dialed { 1 } else { 2 } },
        });
    }
    match link {
        PeerLink::Dialed(mut c) => {
            c.send(JOIN, session, 0, &Join { session, batch, key: public }.to_bytes(he)?).await?;
            let key = c.recv(KEY, session, 0).await?;
            let Key(key) = Key::parse(he, c.peer(), &key)?;
            Ok((c, key))
        }
        PeerLink::Accepted(mut c, join) => {
            if join.session != session || join.batch != batch {
                return Err(SuiteError::Protocol {
                    peer: c.peer().into(),
                    message: "join",
                    violation: Violation::Disagreement { on: "session or batch" },
                });
            }
            c.send(KEY, session, 0, &Key(public).to_bytes(he)?).await?;
            Ok((c, join.key))
        }
    }
}

/// The model's layers: the linear ones on the runner, each nonlinear one with the peer inside
/// its `layer` span. Returns the runner at the model's output.
async fn run_layers(
    link: &mut Channel,
    query: &Arc<Query>,
    model: &Arc<FixedModel>,
    mut runner: Runner,
    prepared: Vec<Vec<u8>>,
    rec: &mut Recorder,
) -> Result<Runner> {
    let layers = model.nonlinear_layers();
    let mut prepared = prepared.into_iter();
    let mut first = 0usize;
    for index in 0.. {
        let (back, layer) = advance_linear(runner, model, rec, &mut first, &[]).await?;
        runner = back;
        let Some(layer) = layer else { break };
        if layers.get(index) != Some(&layer) {
            return Err(SuiteError::LayerOrder { layer: layer.node });
        }
        let x = runner.pending_input().to_vec();
        let span = tracing::debug_span!("layer", node = layer.node, kind = ?layer.kind);
        let out = evaluate(link, query, index, &layer, x, prepared.next().unwrap_or_default()).instrument(span).await?;
        runner.complete(out);
        rec.stage(layer.node, model.node_name(layer.node as usize), stage_kind(&layer), &[&*link]);
    }
    Ok(runner)
}

/// Runs the `index`-th nonlinear layer as one server of `query` with its peer over `link`, both
/// roles at once ([`Owner`] of this server's half, [`Masker`] of the peer's): every exchange
/// sends one role's message and receives the other role's. Returns this server's share of the
/// layer output (at activation scale), for the whole batch. `prepared` is this server's `⟦β⟧`
/// for the layer (hidden layout; empty otherwise).
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
    let s = step.clone();
    let (owner, owned) = blocking(move || Owner::start(s, prepared)).await?;
    let owned = link.exchange(OWNED, session, node, &owned.to_bytes()).await?;
    let s = step.clone();
    let (masker, masked) = blocking(move || Masker::start(s, owned)).await?;
    let masked = link.exchange(MASKED, session, node, masked.as_bytes()).await?;
    let (owner, selected) = blocking(move || owner.select(masked)).await?;
    let selected = link.exchange(SELECTED, session, node, selected.as_bytes()).await?;
    let (masker, result) = blocking(move || masker.unmask(selected)).await?;
    let result = link.exchange(RESULT, session, node, result.as_bytes()).await?;
    let (own, unpermute) = blocking(move || owner.finish(result)).await?;
    let unpermuted = match unpermute {
        Some(message) => Some(link.exchange(UNPERMUTE, session, node, &message.to_bytes()).await?),
        None => None,
    };
    let peer = masker.finish(unpermuted)?;
    Ok(step.assemble(&own, &peer))
}

/// Runs `f` on the blocking pool (HE work would stall the runtime's threads).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| SuiteError::stopped("the HE step", &e))?
}
