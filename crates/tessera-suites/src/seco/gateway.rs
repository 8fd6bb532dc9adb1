//! The gateway A: runs the layers before the cut with the user (clientserver's model owner),
//! builds the collective key with the remote servers, holds a share of every value after the
//! cut (its linear layers' shares by joint decryption in preprocessing, its nonlinear layers'
//! from the three-party circuits online), and relays between the user and the remote servers.

use std::sync::Arc;

use tessera_field::seed::os_rng;
use tessera_field::zt;
use tessera_gc::gmw::{self, Mesh, Prepared};
use tessera_he::collective::{DecryptionRequest, DecryptionShare};
use tessera_he::{ConvPacking, HeParams, PublicKey, SecretKey};
use tessera_model::fixed::FixedModel;
use tessera_model::runner::{LayerTrace, Runner, Step};
use tessera_net::{Channel, PartyReport, Recorder, SessionId, StageCost, StageKind};
use zeroize::Zeroizing;

use super::keys::PUBLIC_BYTES;
use super::linear::{PRODUCT_LEVEL, add_all, encrypt_masks, mask_ciphertexts, read_full, read_items, write_full};
use super::remote::blocking;
use super::{
    COLLECTIVE, CUT, DECRYPT, DECRYPTION, Heartbeat, KEY_SHARE, KEYS, LOGITS, MASK_SUM, MASKS, MAX_BATCH, OPENING,
    OUTPUT, PREPARE, PREPARED, PRODUCT, QUERY, REMOTE_PREPARED, REMOTE_REPORT, REPORT, SETUP, TRANSITION,
    circuit_error, shared_layer,
};
use crate::clientserver::{self, ClientServerServer, Task, gather, missing_report, schedule};
use crate::error::{Result, SuiteError};
use crate::service::next_query;
use crate::wire::{Reader, elements_to_bytes, recv_reports, send_reports, send_wiped};

/// The gateway of one split model.
pub struct Gateway {
    /// The layers before the cut, with their weights, served as clientserver's model owner
    /// (`None` when the cut is before the first layer).
    prefix: Option<ClientServerServer>,
    /// The architecture after the cut (`None` when every layer is before it).
    suffix: Option<Arc<FixedModel>>,
    he: Arc<HeParams>,
    trace: Option<LayerTrace>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("remote", &self.suffix.is_some()).finish_non_exhaustive()
    }
}

/// The collective key and the batch of one query.
struct GatewaySetup {
    batch: usize,
    key: SecretKey,
    collective: PublicKey,
}

/// A's material of one secret linear layer: its mask share `u_A` and its output share
/// `W u − s_B − s_C`.
struct LinearShares {
    mask: Zeroizing<Vec<u64>>,
    output: Zeroizing<Vec<u64>>,
}

/// The gateway's preprocessed material of the layers after the cut: its mask `μ` of the cut
/// value, the OT links with B and C, per secret linear layer its mask share `u_A` and output
/// share `W u − s_B − s_C`, per nonlinear layer its triples.
struct Suffix {
    cut_mask: Zeroizing<Vec<u64>>,
    mesh: Mesh,
    linear: Vec<LinearShares>,
    shared: Vec<Prepared>,
}

impl Gateway {
    /// A gateway for `prefix` (the layers before the cut, with weights; empty when the cut is
    /// before the first layer) and `suffix` (the architecture after it, if any).
    pub fn new(prefix: Arc<FixedModel>, suffix: Option<Arc<FixedModel>>, he: Arc<HeParams>) -> Self {
        let prefix =
            (!prefix.ops().is_empty()).then(|| ClientServerServer::new(prefix, he.clone(), MAX_BATCH, 1, usize::MAX));
        Self { prefix, suffix, he, trace: None }
    }

    /// Records A's share of every nonlinear layer's input and output, before the cut and after
    /// (in-memory test runs).
    #[doc(hidden)]
    pub fn traced(mut self, prefix: Option<LayerTrace>, suffix: Option<LayerTrace>) -> Self {
        self.prefix = self.prefix.map(|p| p.traced(prefix));
        self.trace = suffix;
        self
    }

    /// Serves the user on `user`, one query after another, with the remote servers on `b` and
    /// `c`, until the user closes the connection.
    pub async fn serve(&self, name: &str, user: &mut Channel, b: &mut Channel, c: &mut Channel) -> Result<()> {
        while let Some((header, payload)) = next_query(user, PREPARE).await? {
            if let Err(e) = self.query(name, user, b, c, header.session, &payload).await {
                // The user learns why its query ended; the servers' links end with it.
                user.abort(header.session, &e.to_string()).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn query(
        &self,
        name: &str,
        user: &mut Channel,
        b: &mut Channel,
        c: &mut Channel,
        session: SessionId,
        payload: &[u8],
    ) -> Result<()> {
        let mut r = Reader::new(payload, user.peer(), "prepare");
        let batch = r.u32()? as usize;
        r.check_range("batch", batch, 1..=MAX_BATCH)?;
        let user_key = *r.seed()?.expose_bytes();
        r.end()?;
        let mut rec = Recorder::new(name).counting_from(&[user, b, c]);
        let setup = match &self.suffix {
            Some(_) => Some(self.setup(user, b, c, session, batch, user_key).await?),
            None => {
                user.send(KEYS, session, 0, &[]).await?;
                None
            }
        };
        rec.stage(0, "keys", StageKind::Keys, &[user, b, c]);
        let mut own_report = rec.finish();
        // The layers before the cut report their own costs to the user, as in clientserver.
        let prefix = match &self.prefix {
            Some(server) => {
                let payload = user.recv(clientserver::PREPARE, session, 0).await?;
                Some(server.prepare(name, user, session, &payload).await?)
            }
            None => None,
        };
        let mut rec = Recorder::new(name).counting_from(&[user, b, c]);
        let cut = batch * self.cut_len();
        let mut reports = Vec::new();
        let remote = match (&self.suffix, setup) {
            (Some(suffix), Some(setup)) => {
                let transition = match &self.prefix {
                    Some(_) => Some(read_wiped(user, TRANSITION, session, cut).await?),
                    None => None,
                };
                let material = self.suffix_offline(user, b, c, session, &setup, suffix).await?;
                rec.stage(0, "preprocess", StageKind::Preprocess, &[user, b, c]);
                for peer in [&mut *b, &mut *c] {
                    let mut r = recv_reports(peer, REMOTE_PREPARED, session).await?;
                    let report = r.pop().ok_or_else(|| missing_report(peer.peer()))?;
                    reports.push(totals(report, StageKind::Preprocess));
                }
                Some((transition, material, suffix.clone(), setup.batch))
            }
            _ => None,
        };
        own_report.append(rec.finish());
        reports.insert(0, own_report);
        send_reports(user, PREPARED, session, &reports).await?;
        let (own, prefix_rec) = match (&self.prefix, prefix) {
            (Some(server), Some(material)) => {
                let query = user.recv(clientserver::QUERY, session, 0).await?;
                let (share, prefix_rec) = server.online_share(name, user, session, material, query).await?;
                (share, Some(prefix_rec))
            }
            _ => (read_wiped(user, QUERY, session, cut).await?, None),
        };
        let mut rec = Recorder::new(name).counting_from(&[user, b, c]);
        let mut reports = Vec::new();
        let logits = match remote {
            Some((transition, material, suffix, batch)) => {
                // A's share of the cut value, re-masked by `μ`, completes B's.
                let mut cut: Vec<u64> =
                    own.iter().zip(material.cut_mask.iter()).map(|(&z, &m)| zt::sub(z, m)).collect();
                if let Some(delta) = transition {
                    zt::add_assign(&mut cut, &delta);
                }
                send_wiped(b, CUT, session, 0, elements_to_bytes(&cut)).await?;
                let mut output = self.suffix_online(user, b, c, session, suffix, batch, material).await?;
                let from_b = Zeroizing::new(b.recv(OUTPUT, session, 0).await?);
                let from_c = Zeroizing::new(c.recv(OUTPUT, session, 0).await?);
                for (peer, bytes) in [(b.peer(), from_b), (c.peer(), from_c)] {
                    let mut r = Reader::new(&bytes, peer, "output");
                    r.elements_into(&mut output, zt::add)?;
                    r.end()?;
                }
                for peer in [&mut *b, &mut *c] {
                    let mut r = recv_reports(peer, REMOTE_REPORT, session).await?;
                    let report = r.pop().ok_or_else(|| missing_report(peer.peer()))?;
                    reports.push(totals(report, StageKind::Output));
                }
                Zeroizing::new(output)
            }
            None => own,
        };
        send_wiped(user, LOGITS, session, 0, elements_to_bytes(&logits)).await?;
        rec.stage(0, "output", StageKind::Output, &[user, b, c]);
        let own_report = match prefix_rec {
            Some(prefix_rec) => {
                let mut report = prefix_rec.finish();
                report.append(rec.finish());
                report
            }
            None => rec.finish(),
        };
        reports.insert(0, own_report);
        send_reports(user, REPORT, session, &reports).await
    }

    /// Elements of the value crossing the cut, per image.
    fn cut_len(&self) -> usize {
        self.suffix.as_ref().map_or(0, |s| s.input_shape().len())
    }

    /// The query's collective key, and the relay of the X25519 keys between the user and the
    /// remote servers.
    async fn setup(
        &self,
        user: &mut Channel,
        b: &mut Channel,
        c: &mut Channel,
        session: SessionId,
        batch: usize,
        user_key: [u8; PUBLIC_BYTES],
    ) -> Result<GatewaySetup> {
        let he = &self.he;
        let mut rng = os_rng();
        let mut common = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rng, &mut common);
        let mut setup = (batch as u32).to_le_bytes().to_vec();
        setup.extend_from_slice(&user_key);
        setup.extend_from_slice(&common);
        let key = SecretKey::generate(he, &mut rng)?;
        let mut shares = vec![key.public_key_share(common, &mut rng)?];
        let mut keys = Vec::with_capacity(2 * PUBLIC_BYTES);
        for peer in [&mut *b, &mut *c] {
            peer.send(SETUP, session, 0, &setup).await?;
        }
        for peer in [&mut *b, &mut *c] {
            let bytes = peer.recv(KEY_SHARE, session, 0).await?;
            let key_error = |e| SuiteError::Protocol {
                peer: peer.peer().into(),
                message: "key share",
                violation: crate::error::Violation::Key(e),
            };
            let mut r = Reader::new(&bytes, peer.peer(), "key share");
            keys.extend_from_slice(r.seed()?.expose_bytes());
            let share = PublicKey::read(he, &bytes[PUBLIC_BYTES..]).map_err(key_error)?;
            shares.push(share);
        }
        let collective = PublicKey::collective(he, &shares)?;
        let mut bytes = Vec::with_capacity(PublicKey::size(he));
        collective.write(he, &mut bytes)?;
        for peer in [&mut *b, &mut *c] {
            peer.send(COLLECTIVE, session, 0, &bytes).await?;
        }
        user.send(KEYS, session, 0, &keys).await?;
        Ok(GatewaySetup { batch, key, collective })
    }

    /// Preprocessing of the layers after the cut, layer by layer with B and C: A's fresh share
    /// `μ` of the cut value, the OT links, and each layer's material.
    async fn suffix_offline(
        &self,
        user: &mut Channel,
        b: &mut Channel,
        c: &mut Channel,
        session: SessionId,
        setup: &GatewaySetup,
        suffix: &Arc<FixedModel>,
    ) -> Result<Suffix> {
        let batch = setup.batch;
        let mut rng = os_rng();
        let cut_mask = Zeroizing::new(zt::random_vec(&mut rng, batch * suffix.input_shape().len()));
        let mut mesh =
            Mesh::connect(0, &mut [&mut *b, &mut *c], session, &mut rng).await.map_err(|e| circuit_error(0, e))?;
        let (mut linear, mut shared) = (Vec::new(), Vec::new());
        let mut heartbeat = Heartbeat::new();
        for task in schedule(suffix) {
            match task {
                Task::Linear(node) => linear.push(self.linear_offline(b, c, session, setup, suffix, node).await?),
                Task::Nonlinear(layer) => {
                    let circuit = shared_layer(&layer, batch)?;
                    let prepared =
                        gmw::prepare(&mut mesh, &mut [&mut *b, &mut *c], session, layer.node, circuit, &mut rng)
                            .await
                            .map_err(|e| circuit_error(layer.node, e))?;
                    shared.push(prepared);
                }
            }
            heartbeat.beat(user, session).await?;
        }
        Ok(Suffix { cut_mask, mesh, linear, shared })
    }

    /// The layers after the cut online, on A's shares from `μ` on: per secret linear layer its
    /// opening to B and C and its preprocessed output share, per nonlinear layer the
    /// three-party circuit. Returns A's share of the logits.
    #[allow(clippy::too_many_arguments)]
    async fn suffix_online(
        &self,
        user: &mut Channel,
        b: &mut Channel,
        c: &mut Channel,
        session: SessionId,
        suffix: Arc<FixedModel>,
        batch: usize,
        material: Suffix,
    ) -> Result<Vec<u64>> {
        let Suffix { cut_mask, mut mesh, linear, shared } = material;
        let mut runner =
            Runner::new(suffix, cut_mask.to_vec(), batch, false).offloading_linear().traced(self.trace.clone());
        let (mut linear, mut shared) = (linear.into_iter(), shared.into_iter());
        let mut heartbeat = Heartbeat::new();
        while let Some(step) = runner.step() {
            let node = step.node();
            let output = match step {
                Step::Linear(_) => {
                    let LinearShares { mask, output } = linear.next().ok_or(SuiteError::LayerOrder { layer: node })?;
                    let opening: Vec<u64> =
                        runner.pending_input().iter().zip(mask.iter()).map(|(&v, &u)| zt::sub(v, u)).collect();
                    let opening = elements_to_bytes(&opening);
                    for peer in [&mut *b, &mut *c] {
                        send_wiped(peer, OPENING, session, node, opening.clone()).await?;
                    }
                    output.to_vec()
                }
                Step::Nonlinear(layer) => {
                    let shares = Zeroizing::new(gather(&layer, runner.pending_input(), batch));
                    let prepared = shared.next().ok_or(SuiteError::LayerOrder { layer: node })?;
                    gmw::evaluate(&mut mesh, &mut [&mut *b, &mut *c], session, node, prepared, &shares)
                        .await
                        .map_err(|e| circuit_error(node, e))?
                }
            };
            runner.complete(output);
            heartbeat.beat(user, session).await?;
        }
        Ok(runner.output().to_vec())
    }

    /// A secret linear layer's preprocessing at A: the summed mask encryptions to both weight
    /// holders, their products summed and decrypted jointly into A's shares.
    #[allow(clippy::too_many_arguments)]
    async fn linear_offline(
        &self,
        b: &mut Channel,
        c: &mut Channel,
        session: SessionId,
        setup: &GatewaySetup,
        suffix: &FixedModel,
        node: u32,
    ) -> Result<LinearShares> {
        let he = self.he.clone();
        let batch = setup.batch;
        let kernel = suffix.linear_kernel(node as usize).expect("a linear node");
        let packing = ConvPacking::plan(&he, *kernel.geometry())?;
        let inputs = kernel.geometry().input.len();
        let mask = Zeroizing::new(zt::random_vec(&mut os_rng(), batch * inputs));
        let (h, key, m) = (he.clone(), setup.collective.clone(), mask.clone());
        let own = blocking("the mask encryptions", move || encrypt_masks(&h, &key, &packing, &m, batch)).await?;
        let count = batch * mask_ciphertexts(&packing);
        let from_b = b.recv(MASKS, session, node).await?;
        let from_c = c.recv(MASKS, session, node).await?;
        let (h, peers) = (he.clone(), [b.peer().to_string(), c.peer().to_string()]);
        let sums = blocking("the mask sums", move || {
            let mut sums = own;
            for (bytes, peer) in [from_b, from_c].iter().zip(&peers) {
                add_all(&mut sums, &read_full(&h, peer, bytes, count, 0, "masks")?)?;
            }
            write_full(&h, &sums, 0)
        })
        .await?;
        for peer in [&mut *b, &mut *c] {
            peer.send(MASK_SUM, session, node, &sums).await?;
        }
        let results = batch * packing.output_ciphertexts();
        let from_b = b.recv(PRODUCT, session, node).await?;
        let mut products = read_full(&he, b.peer(), &from_b, results, PRODUCT_LEVEL, "products")?;
        let from_c = c.recv(PRODUCT, session, node).await?;
        add_all(&mut products, &read_full(&he, c.peer(), &from_c, results, PRODUCT_LEVEL, "products")?)?;
        let mut requests = Vec::with_capacity(results * DecryptionRequest::size(&he, PRODUCT_LEVEL));
        products.iter().for_each(|ct| DecryptionRequest::of(ct).write(&mut requests));
        for peer in [&mut *b, &mut *c] {
            peer.send(DECRYPT, session, node, &requests).await?;
        }
        let size = DecryptionShare::size(&he, PRODUCT_LEVEL);
        let mut shares = Vec::new();
        for peer in [&mut *b, &mut *c] {
            let bytes = peer.recv(DECRYPTION, session, node).await?;
            shares.push(read_items(peer.peer(), &bytes, results, size, "decryption shares", |s| {
                DecryptionShare::read(&he, PRODUCT_LEVEL, s)
            })?);
        }
        // A's own key share and B's and C's decryption shares, ciphertext by ciphertext.
        let per_image = packing.output_ciphertexts();
        let mut y = Vec::with_capacity(batch * kernel.geometry().output().expect("a valid layer").len());
        for (image, cts) in products.chunks(per_image).enumerate() {
            let plain = cts
                .iter()
                .enumerate()
                .map(|(j, ct)| {
                    let k = image * per_image + j;
                    setup.key.combine(ct, &[&shares[0][k], &shares[1][k]])
                })
                .collect::<tessera_he::Result<Vec<_>>>()?;
            y.extend(packing.decode_output(&plain)?);
        }
        Ok(LinearShares { mask, output: Zeroizing::new(y) })
    }
}

/// A remote server's report as the user receives it: its totals (time, CPU, bytes per link) as
/// one stage of `kind`, without the per-layer stages that would show the user the architecture
/// after the cut.
fn totals(report: PartyReport, kind: StageKind) -> PartyReport {
    let stage = StageCost {
        layer: 0,
        name: "layers after the cut".into(),
        kind,
        wall_us: report.stages.iter().map(|s| s.wall_us).sum(),
        cpu_us: report.stages.iter().map(|s| s.cpu_us).sum(),
        links: report.links.clone(),
    };
    PartyReport { stages: vec![stage], ..report }
}

/// Receives exactly `n` field elements of `kind`, wiped when dropped.
async fn read_wiped(
    channel: &mut Channel,
    kind: tessera_net::MessageKind,
    session: SessionId,
    n: usize,
) -> Result<Zeroizing<Vec<u64>>> {
    let bytes = Zeroizing::new(channel.recv(kind, session, 0).await?);
    let mut r = Reader::new(&bytes, channel.peer(), "shares");
    let v = Zeroizing::new(r.elements(n)?);
    r.end()?;
    Ok(v)
}
