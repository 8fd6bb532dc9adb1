//! A remote server, B or C: holds a share of every weight after the cut, takes part in the
//! collective key and the HE preprocessing, and runs the layers after the cut online: the
//! linear ones with the other remote server, the nonlinear ones with both other servers
//! (three-party GMW, [`tessera_gc::gmw`]).

use std::sync::Arc;

use tessera_field::seed::{Purpose, os_rng};
use tessera_field::{Seed, zt};
use tessera_gc::gmw::{self, Mesh, Prepared};
use tessera_he::collective::{DecryptionRequest, DecryptionShare};
use tessera_he::{ConvPacking, HeParams, PublicKey, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::{LayerTrace, Runner, Step, fold_bias};
use tessera_model::shares::WeightShares;
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageKind};
use zeroize::Zeroizing;

use super::keys::{Ephemeral, PUBLIC_BYTES};
use super::linear::{PRODUCT_LEVEL, encrypt_masks, mask_ciphertexts, products, read_full, read_items, write_full};
use super::{
    COLLECTIVE, CUT, DECRYPT, DECRYPTION, KEY_SHARE, MASK_SUM, MASKS, MAX_BATCH, OPEN, OPENING, OUTPUT, PRODUCT,
    REMOTE_PREPARED, REMOTE_REPORT, SETUP, circuit_error, shared_layer, smudging,
};
use crate::clientserver::{Task, gather, schedule};
use crate::error::{Result, SuiteError, Violation};
use crate::parties::stage_kind;
use crate::service::next_query;
use crate::wire::{Reader, elements_to_bytes, send_reports, send_wiped};

/// Which remote server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteRole {
    /// B: receives the gateway's share of the cut value and speaks first to C; party 1 of the
    /// three-party circuits.
    B,
    /// C: dialed by B; party 2 of the three-party circuits.
    C,
}

impl RemoteRole {
    /// The party index in the three-party circuits (the gateway is 0).
    fn party(self) -> usize {
        match self {
            Self::B => 1,
            Self::C => 2,
        }
    }
}

/// A remote server of one split model.
pub struct Remote {
    role: RemoteRole,
    model: Arc<FixedModel>,
    shares: Arc<WeightShares>,
    he: Arc<HeParams>,
    trace: Option<LayerTrace>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("role", &self.role).finish_non_exhaustive()
    }
}

/// What a remote server keeps of one secret linear layer between preprocessing and the online
/// phase: its mask share `u_X` and its product mask `s_X`.
struct LinearMaterial {
    mask: Zeroizing<Vec<u64>>,
    product_mask: Zeroizing<Vec<u64>>,
}

/// One query's material from preprocessing: the OT links with the other servers, and per layer
/// its masks or its three-party circuit's triples, in layer order.
struct Material {
    mesh: Mesh,
    linear: Vec<LinearMaterial>,
    shared: Vec<Prepared>,
}

/// One query's setup: the key share and the seed shared with the user.
struct Setup {
    batch: usize,
    key: SecretKey,
    collective: PublicKey,
    seed: Seed,
}

impl Remote {
    /// Remote server `role` of the model after the cut (`model`, its architecture; `shares`,
    /// this server's weight shares).
    pub fn new(role: RemoteRole, model: Arc<FixedModel>, shares: Arc<WeightShares>, he: Arc<HeParams>) -> Self {
        Self { role, model, shares, he, trace: None }
    }

    /// Records this server's share of every nonlinear layer's input and output (in-memory
    /// test runs).
    #[doc(hidden)]
    pub fn traced(mut self, trace: Option<LayerTrace>) -> Self {
        self.trace = trace;
        self
    }

    /// Serves the gateway's queries on `gateway`, with the other remote server on `peer`, until
    /// the gateway closes the connection.
    pub async fn serve(&self, name: &str, gateway: &mut Channel, peer: &mut Channel) -> Result<()> {
        while let Some((header, payload)) = next_query(gateway, SETUP).await? {
            if let Err(e) = self.query(name, gateway, peer, header.session, &payload).await {
                gateway.abort(header.session, &e.to_string()).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn query(
        &self,
        name: &str,
        gateway: &mut Channel,
        peer: &mut Channel,
        session: SessionId,
        payload: &[u8],
    ) -> Result<()> {
        let mut rec = Recorder::new(name).counting_from(&[gateway, peer]);
        let setup = self.setup(gateway, session, payload).await?;
        let mut rng = os_rng();
        let party = self.role.party();
        // The other servers in party order: the gateway (party 0) first.
        let mut mesh = {
            let mut peers: gmw::Peers = [&mut *gateway, &mut *peer];
            Mesh::connect(party, &mut peers, session, &mut rng).await.map_err(|e| circuit_error(0, e))?
        };
        rec.stage(0, "keys", StageKind::Keys, &[gateway, peer]);
        let mut linear = Vec::new();
        let mut shared = Vec::new();
        for task in schedule(&self.model) {
            let node = match task {
                Task::Linear(node) => {
                    linear.push(self.linear_offline(gateway, session, &setup, node).await?);
                    node
                }
                Task::Nonlinear(layer) => {
                    let circuit = shared_layer(&layer, setup.batch)?;
                    let node = layer.node;
                    let mut peers: gmw::Peers = [&mut *gateway, &mut *peer];
                    shared.push(
                        gmw::prepare(&mut mesh, &mut peers, session, node, circuit, &mut rng)
                            .await
                            .map_err(|e| circuit_error(node, e))?,
                    );
                    node
                }
            };
            rec.stage(node, self.model.node_name(node as usize), StageKind::Preprocess, &[gateway, peer]);
        }
        send_reports(gateway, REMOTE_PREPARED, session, &[rec.finish()]).await?;
        let material = Material { mesh, linear, shared };
        let report = self.online(name, gateway, peer, session, setup, material).await?;
        send_reports(gateway, REMOTE_REPORT, session, &[report]).await
    }

    /// The query's keys: this server's share of the collective key, and the seed it shares
    /// with the user.
    async fn setup(&self, gateway: &mut Channel, session: SessionId, payload: &[u8]) -> Result<Setup> {
        let he = &self.he;
        let mut r = Reader::new(payload, gateway.peer(), "setup");
        let batch = r.u32()? as usize;
        r.check_range("batch", batch, 1..=MAX_BATCH)?;
        let user: [u8; PUBLIC_BYTES] = r.seed()?.expose_bytes().to_owned();
        let common = *r.seed()?.expose_bytes();
        r.end()?;
        let mut rng = os_rng();
        let ephemeral = Ephemeral::new(&mut rng);
        let seed = ephemeral.agree(user, session, user, ephemeral.public()).ok_or_else(|| SuiteError::Protocol {
            peer: gateway.peer().into(),
            message: "setup",
            violation: Violation::SmallOrderKey,
        })?;
        let key = SecretKey::generate(he, &mut rng)?;
        let mut reply = ephemeral.public().to_vec();
        key.public_key_share(common, &mut rng)?.write(he, &mut reply)?;
        gateway.send(KEY_SHARE, session, 0, &reply).await?;
        let bytes = gateway.recv(COLLECTIVE, session, 0).await?;
        let collective = PublicKey::read(he, &bytes).map_err(|e| SuiteError::Protocol {
            peer: gateway.peer().into(),
            message: "collective key",
            violation: Violation::Key(e),
        })?;
        Ok(Setup { batch, key, collective, seed })
    }

    /// A secret linear layer's preprocessing: this server's mask share encrypted to A, its
    /// products on the summed masks, its decryption shares, and A's opening.
    async fn linear_offline(
        &self,
        gateway: &mut Channel,
        session: SessionId,
        setup: &Setup,
        node: u32,
    ) -> Result<LinearMaterial> {
        let he = self.he.clone();
        let batch = setup.batch;
        let kernel = self.model.linear_kernel(node as usize).expect("a linear node");
        let packing = ConvPacking::plan(&he, *kernel.geometry())?;
        let (inputs, outputs) = (kernel.geometry().input.len(), kernel.geometry().output().expect("valid").len());
        let mut rng = os_rng();
        let mask = Zeroizing::new(zt::random_vec(&mut rng, batch * inputs));
        let product_mask = Zeroizing::new(zt::random_vec(&mut rng, batch * outputs));
        let (h, key, m) = (he.clone(), setup.collective.clone(), mask.clone());
        let encrypted =
            blocking("the mask encryptions", move || write_full(&h, &encrypt_masks(&h, &key, &packing, &m, batch)?, 0))
                .await?;
        gateway.send(MASKS, session, node, &encrypted).await?;
        let sums = gateway.recv(MASK_SUM, session, node).await?;
        let weights = self.shares.layer(node as usize).expect("a share per linear layer").dense_weights();
        let (h, peer, s, key) =
            (he.clone(), gateway.peer().to_string(), product_mask.clone(), setup.collective.clone());
        let reply = blocking("the products", move || {
            let sums = read_full(&h, &peer, &sums, batch * mask_ciphertexts(&packing), 0, "mask sums")?;
            write_full(&h, &products(&h, &key, &packing, &sums, &weights, &s, batch)?, PRODUCT_LEVEL)
        })
        .await?;
        gateway.send(PRODUCT, session, node, &reply).await?;
        let requests = gateway.recv(DECRYPT, session, node).await?;
        let count = batch * packing.output_ciphertexts();
        let size = DecryptionRequest::size(&he, PRODUCT_LEVEL);
        let requests = read_items(gateway.peer(), &requests, count, size, "decryption requests", |b| {
            DecryptionRequest::read(&he, PRODUCT_LEVEL, b)
        })?;
        let smudging = smudging(&he, &packing)?;
        let mut shares = Vec::with_capacity(count * DecryptionShare::size(&he, PRODUCT_LEVEL));
        for request in &requests {
            setup.key.decryption_share(request, smudging, &mut rng)?.write(&mut shares);
        }
        gateway.send(DECRYPTION, session, node, &shares).await?;
        Ok(LinearMaterial { mask, product_mask })
    }

    async fn online(
        &self,
        name: &str,
        gateway: &mut Channel,
        peer: &mut Channel,
        session: SessionId,
        setup: Setup,
        material: Material,
    ) -> Result<PartyReport> {
        let Material { mut mesh, linear, shared } = material;
        let batch = setup.batch;
        let cut = batch * self.model.input_shape().len();
        let mut input = zt::random_vec(&mut setup.seed.derive(Purpose::InputShare, 0), cut);
        let mut rec = Recorder::new(name).counting_from(&[gateway, peer]);
        if self.role == RemoteRole::B {
            let bytes = Zeroizing::new(gateway.recv(CUT, session, 0).await?);
            let mut r = Reader::new(&bytes, gateway.peer(), "cut");
            r.elements_into(&mut input, zt::add)?;
            r.end()?;
        }
        rec.stage(0, "input", StageKind::Input, &[gateway, peer]);
        let mut runner =
            Runner::new(self.model.clone(), input, batch, false).offloading_linear().traced(self.trace.clone());
        let (mut linear, mut shared) = (linear.into_iter(), shared.into_iter());
        while let Some(step) = runner.step() {
            let node = step.node();
            let output = match step {
                Step::Linear(_) => {
                    let material = linear.next().ok_or(SuiteError::LayerOrder { layer: node })?;
                    self.linear_online(gateway, peer, session, node, runner.pending_input(), material, batch).await?
                }
                Step::Nonlinear(layer) => {
                    let shares = Zeroizing::new(gather(&layer, runner.pending_input(), batch));
                    let prepared = shared.next().ok_or(SuiteError::LayerOrder { layer: node })?;
                    let mut peers: gmw::Peers = [&mut *gateway, &mut *peer];
                    gmw::evaluate(&mut mesh, &mut peers, session, node, prepared, &shares)
                        .await
                        .map_err(|e| circuit_error(node, e))?
                }
            };
            runner.complete(output);
            let kind = match step {
                Step::Linear(_) => StageKind::Linear,
                Step::Nonlinear(layer) => stage_kind(&layer),
            };
            rec.stage(node, self.model.node_name(node as usize), kind, &[gateway, peer]);
        }
        let mut output = runner.output().to_vec();
        let pad = zt::random_vec(&mut setup.seed.derive(Purpose::OutputPad, 0), output.len());
        zt::add_assign(&mut output, &pad);
        send_wiped(gateway, OUTPUT, session, 0, elements_to_bytes(&output)).await?;
        rec.stage(0, "output", StageKind::Output, &[gateway, peer]);
        Ok(rec.finish())
    }

    /// A secret linear layer online: the masked input opened with the other remote server and
    /// the gateway's opening, then `W_X a + b_X + s_X`.
    #[allow(clippy::too_many_arguments)]
    async fn linear_online(
        &self,
        gateway: &mut Channel,
        peer: &mut Channel,
        session: SessionId,
        node: u32,
        input: &[u64],
        material: LinearMaterial,
        batch: usize,
    ) -> Result<Vec<u64>> {
        let LinearMaterial { mask, product_mask } = material;
        let bytes = Zeroizing::new(gateway.recv(OPENING, session, node).await?);
        let mut r = Reader::new(&bytes, gateway.peer(), "opening");
        let opening = Zeroizing::new(r.elements(input.len())?);
        r.end()?;
        let mut opened: Vec<u64> = input.iter().zip(mask.iter()).map(|(&v, &u)| zt::sub(v, u)).collect();
        let message = elements_to_bytes(&opened);
        // B speaks first, so two large openings never wait on each other's reads.
        let theirs = if self.role == RemoteRole::B {
            send_wiped(peer, OPEN, session, node, message).await?;
            Zeroizing::new(peer.recv(OPEN, session, node).await?)
        } else {
            let theirs = Zeroizing::new(peer.recv(OPEN, session, node).await?);
            send_wiped(peer, OPEN, session, node, message).await?;
            theirs
        };
        let mut r = Reader::new(&theirs, peer.peer(), "opening");
        r.elements_into(&mut opened, zt::add)?;
        r.end()?;
        zt::add_assign(&mut opened, &opening);
        let shares = self.shares.clone();
        blocking("the linear layer", move || {
            let share = shares.layer(node as usize).expect("a share per linear layer");
            let mut y = share.product(&opened, batch, rayon::current_num_threads());
            zt::add_assign(&mut y, &product_mask);
            let plane = share.geometry().output().expect("a valid layer").plane();
            fold_bias(&mut y, share.bias(), plane, zt::add);
            Ok(y)
        })
        .await
    }
}

/// Runs CPU-bound `work` off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| SuiteError::stopped(what, &e))?
}
