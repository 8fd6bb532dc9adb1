//! The model owner: masks each linear layer's product under the user's key and evaluates the
//! user's garbled circuits in preprocessing; online, runs every linear layer on its shares in
//! the clear and evaluates each nonlinear layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tessera_field::kernels::conv2d_zt;
use tessera_field::{seed::os_rng, zt};
use tessera_gc::protocol::EvaluatorOffline;
use tessera_he::{Addend, ConvPacking, Form, HeParams, PublicKey};
use tessera_model::fixed::FixedModel;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_model::runner::{LayerTrace, Runner, Step};
use tessera_net::{Channel, NetError, Recorder, SessionId, StageKind};
use zeroize::Zeroizing;

use super::{ENCRYPTED, LOGITS, PREPARE, PREPARED, PRODUCT, QUERY, REPORT, Task, gather, gc_error, gc_layer, schedule};
use crate::error::{Result, SuiteError, Violation};
use crate::parties::stage_kind;
use crate::wire::{Reader, elements_to_bytes, parse_wiped, read_ciphertexts, seal_all, send_reports, send_wiped};

/// A clientserver model owner.
pub struct ClientServerServer {
    model: Arc<FixedModel>,
    he: Arc<HeParams>,
    max_batch: usize,
    pool: usize,
    budget: Arc<Budget>,
    trace: Option<LayerTrace>,
}

/// The bytes of preprocessed material all of a server's connections may hold together: the
/// garbled tables of one MiniONN-CIFAR image alone are 1.45 GB, so a count of queries per
/// connection does not bound memory.
#[derive(Debug)]
struct Budget {
    limit: usize,
    held: AtomicUsize,
}

/// Bytes taken from a [`Budget`] while a preprocessing is built or kept; given back on drop
/// (the query ran, or the connection ended).
struct Reservation {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    /// Takes `bytes` if they fit beside what is held; `None` otherwise.
    fn reserve(self: &Arc<Self>, bytes: usize) -> Option<Reservation> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .ok()
            .map(|_| Reservation { budget: self.clone(), bytes })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for ClientServerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientServerServer")
            .field("max_batch", &self.max_batch)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// What the server keeps of one preprocessed query: its product masks `s_i` per linear layer
/// and the garbled circuits (tables, OT labels, offline shares) per nonlinear layer.
pub(crate) struct ServerMaterial {
    batch: usize,
    masks: Vec<Zeroizing<Vec<u64>>>,
    layers: Vec<EvaluatorOffline>,
    _held: Reservation,
}

impl ClientServerServer {
    /// A server for `model` (merged, quantized) that takes queries of at most `max_batch`
    /// images, keeps at most `pool` preprocessed queries per user connection and at most
    /// `pool_bytes` bytes of preprocessed material over all connections.
    pub fn new(model: Arc<FixedModel>, he: Arc<HeParams>, max_batch: usize, pool: usize, pool_bytes: usize) -> Self {
        let budget = Arc::new(Budget { limit: pool_bytes, held: AtomicUsize::new(0) });
        Self { model, he, max_batch, pool: pool.max(1), budget, trace: None }
    }

    /// Bytes the server keeps for one preprocessed query of `batch` images: per nonlinear
    /// layer its garbled tables, OT labels and offline shares; per linear layer its masks.
    pub fn material_bytes(model: &FixedModel, batch: usize) -> Result<usize> {
        let mut bytes = 0;
        for task in schedule(model) {
            bytes += match task {
                Task::Linear(node) => {
                    let kernel = model.linear_kernel(node as usize).expect("a linear node");
                    8 * batch * kernel.geometry().output().expect("a valid layer").len()
                }
                Task::Nonlinear(layer) => gc_layer(&layer, batch)?.evaluator_stored_bytes(),
            };
        }
        Ok(bytes)
    }

    /// Records the server's share of every nonlinear layer's input and output (in-memory test
    /// runs).
    #[doc(hidden)]
    pub fn traced(mut self, trace: Option<LayerTrace>) -> Self {
        self.trace = trace;
        self
    }

    /// Serves one user connection until the user closes it: preprocessing requests, kept up to
    /// the pool size, and queries, each consuming its material.
    pub async fn serve(&self, name: &str, user: &mut Channel) -> Result<()> {
        let mut pool: HashMap<SessionId, ServerMaterial> = HashMap::new();
        loop {
            let (header, payload) = match user.recv_any().await {
                Ok(frame) => frame,
                Err(NetError::PeerClosed { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let session = header.session;
            match header.kind {
                PREPARE => {
                    let r = Reader::new(&payload, user.peer(), "prepare");
                    r.check_range("preprocessed queries", pool.len() + 1, 1..=self.pool)?;
                    if pool.contains_key(&session) {
                        return Err(r.error(Violation::Duplicate { what: "preprocessing", index: 0 }));
                    }
                    let material = self.prepare(name, user, session, &payload).await?;
                    pool.insert(session, material);
                }
                QUERY => {
                    let material = pool.remove(&session).ok_or_else(|| SuiteError::Protocol {
                        peer: user.peer().into(),
                        message: "query",
                        violation: Violation::Unprepared,
                    })?;
                    self.online(name, user, session, material, payload).await?;
                }
                got => return Err(NetError::UnexpectedKind { peer: user.peer().into(), expected: PREPARE, got }.into()),
            }
        }
    }

    /// Preprocesses query `session` for the user on `user`, from its `PREPARE` payload.
    pub(crate) async fn prepare(
        &self,
        name: &str,
        user: &mut Channel,
        session: SessionId,
        payload: &[u8],
    ) -> Result<ServerMaterial> {
        let mut rec = Recorder::new(name).counting_from(&[user]);
        let peer = user.peer().to_string();
        let mut r = Reader::new(payload, &peer, "prepare");
        let batch = r.u32()? as usize;
        r.check_range("batch", batch, 1..=self.max_batch)?;
        let bytes = Self::material_bytes(&self.model, batch)?;
        let held = self.budget.reserve(bytes).ok_or_else(|| {
            let held = self.budget.held.load(Ordering::Acquire);
            r.error(Violation::OutOfRange {
                field: "bytes of preprocessed material held by the server",
                value: (held + bytes) as u64,
                min: 0,
                max: self.budget.limit as u64,
            })
        })?;
        let key = PublicKey::read(&self.he, &payload[4..]).map_err(|e| SuiteError::Protocol {
            peer: peer.clone(),
            message: "prepare",
            violation: Violation::Key(e),
        })?;
        rec.stage(0, "keys", StageKind::Keys, &[user]);
        let mut rng = os_rng();
        let (mut masks, mut layers) = (Vec::new(), Vec::new());
        for task in schedule(&self.model) {
            let node = match task {
                Task::Linear(node) => {
                    let encrypted = user.recv(ENCRYPTED, session, node).await?;
                    let (he, model, key, peer) = (self.he.clone(), self.model.clone(), key.clone(), peer.clone());
                    let (reply, mask) = tokio::task::spawn_blocking(move || {
                        masked_product(&he, &peer, &model, &key, node, batch, &encrypted)
                    })
                    .await
                    .map_err(|e| SuiteError::stopped("the masked product", &e))??;
                    user.send(PRODUCT, session, node, &reply).await?;
                    masks.push(mask);
                    node
                }
                Task::Nonlinear(layer) => {
                    let gc = gc_layer(&layer, batch)?;
                    let state = tessera_gc::evaluator_offline(user, session, layer.node, gc, &mut rng)
                        .await
                        .map_err(|e| gc_error(&peer, layer.node, e))?;
                    layers.push(state);
                    layer.node
                }
            };
            rec.stage(node, self.model.node_name(node as usize), StageKind::Preprocess, &[user]);
        }
        send_reports(user, PREPARED, session, &[rec.finish()]).await?;
        Ok(ServerMaterial { batch, masks, layers, _held: held })
    }

    async fn online(
        &self,
        name: &str,
        user: &mut Channel,
        session: SessionId,
        material: ServerMaterial,
        payload: Vec<u8>,
    ) -> Result<()> {
        let (output, mut rec) = self.online_share(name, user, session, material, payload).await?;
        send_wiped(user, LOGITS, session, 0, elements_to_bytes(&output)).await?;
        rec.stage(0, "output", StageKind::Output, &[user]);
        send_reports(user, REPORT, session, &[rec.finish()]).await
    }

    /// Runs query `session` on the user's `QUERY` payload: the server's share of the model's
    /// output, and its online cost recorder, to stage the output's delivery in.
    pub(crate) async fn online_share(
        &self,
        name: &str,
        user: &mut Channel,
        session: SessionId,
        material: ServerMaterial,
        payload: Vec<u8>,
    ) -> Result<(Zeroizing<Vec<u64>>, Recorder)> {
        let mut rec = Recorder::new(name).counting_from(&[user]);
        let ServerMaterial { batch, masks, layers, _held } = material;
        let n = batch * self.model.input_shape().len();
        let input = parse_wiped(payload, |p| {
            let mut r = Reader::new(p, user.peer(), "query");
            let v = r.elements(n)?;
            r.end()?;
            Ok::<_, SuiteError>(v)
        })?;
        rec.stage(0, "input", StageKind::Input, &[user]);
        let mut runner =
            Runner::new(self.model.clone(), input, batch, true).offloading_linear().traced(self.trace.clone());
        let (mut masks, mut layers) = (masks.into_iter(), layers.into_iter());
        let mut first = 0;
        loop {
            let model = self.model.clone();
            let (back, rest, layer) = tokio::task::spawn_blocking(move || linear_run(&model, batch, runner, masks))
                .await
                .map_err(|e| SuiteError::stopped("the linear layers", &e))?;
            (runner, masks) = (back, rest);
            let end = layer.map_or(self.model.ops().len(), |l| l.node as usize);
            if end > first {
                rec.stage(end as u32 - 1, self.model.node_name(end - 1), StageKind::Linear, &[user]);
            }
            let Some(layer) = layer else { break };
            let state = layers.next().ok_or(SuiteError::LayerOrder { layer: layer.node })?;
            let shares = Zeroizing::new(gather(&layer, runner.pending_input(), batch));
            let output = tessera_gc::evaluator_online(user, session, layer.node, state, &shares)
                .await
                .map_err(|e| gc_error(user.peer(), layer.node, e))?;
            runner.complete(output);
            rec.stage(layer.node, self.model.node_name(layer.node as usize), stage_kind(&layer), &[user]);
            first = layer.node as usize + 1;
        }
        Ok((Zeroizing::new(runner.output().to_vec()), rec))
    }
}

/// Runs the server's linear layers up to the next nonlinear one (returned; `None` at the end):
/// each product `W_i a_i`, plus its preprocessed mask `s_i` (the runner adds the bias).
fn linear_run(
    model: &FixedModel,
    batch: usize,
    mut runner: Runner,
    mut masks: std::vec::IntoIter<Zeroizing<Vec<u64>>>,
) -> (Runner, std::vec::IntoIter<Zeroizing<Vec<u64>>>, Option<NonlinearLayer>) {
    loop {
        match runner.step() {
            Some(Step::Linear(node)) => {
                let kernel = model.linear_kernel(node as usize).expect("a linear step");
                let mut y = conv2d_zt(kernel, runner.pending_input(), batch, rayon::current_num_threads());
                zt::add_assign(&mut y, &masks.next().expect("one mask per linear layer, checked at preprocessing"));
                runner.complete(y);
            }
            Some(Step::Nonlinear(layer)) => return (runner, masks, Some(layer)),
            None => return (runner, masks, None),
        }
    }
}

/// Evaluates linear node `node` on the user's encrypted shares `u` of `batch` images: the
/// sealed `⟦W u − s⟧` per image, and the fresh masks `s`, uniform in `Z_t`, one per output.
fn masked_product(
    he: &HeParams,
    peer: &str,
    model: &FixedModel,
    key: &PublicKey,
    node: u32,
    batch: usize,
    payload: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u64>>)> {
    let kernel = model.linear_kernel(node as usize).expect("a linear node");
    let packing = ConvPacking::plan(he, *kernel.geometry())?;
    let per_image = packing.input_ciphertexts();
    let inputs = read_ciphertexts(he, peer, Form::Seeded, payload, batch * per_image, "encrypted")?;
    let outputs = kernel.geometry().output().expect("a valid layer").len();
    let mut rng = os_rng();
    let masks = Zeroizing::new(zt::random_vec(&mut rng, batch * outputs));
    let negated: Zeroizing<Vec<u64>> = Zeroizing::new(masks.iter().map(|&s| zt::neg(s)).collect());
    let weights = kernel.integer_weights();
    let mut results = Vec::with_capacity(batch * packing.output_ciphertexts());
    for (image, minus_s) in inputs.chunks(per_image).zip(negated.chunks(outputs)) {
        results.extend(packing.evaluate(he, image, &weights, Addend::PerOutput(minus_s), &mut rng)?);
    }
    Ok((seal_all(key, &results)?, masks))
}
