//! The cloud: computes the offloaded products on disguised inputs; can be told to cheat.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rand_core::{CryptoRng, RngCore};
use tessera_field::kernels::{conv2d_zt, conv2d_zt_within};
use tessera_field::{seed::os_rng, zt};
use tessera_model::fixed::{FixedModel, FixedOp};
use tessera_model::runner::fold_bias;
use tessera_net::{Channel, NetError, Recorder, StageKind};
use tracing::Instrument;

use super::{DONE, Disguise, OFFLOAD, PRODUCT, REPORT, narrow};
use crate::error::{Result, SuiteError, Violation};
use crate::wire::{Reader, elements_to_bytes, send_reports};

/// How a cloud misbehaves, for tests and demos; applied to every product it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cheat {
    /// Computes what it is asked.
    Honest,
    /// Adds one to one random element.
    FlipOne,
    /// Adds random values to one random output channel.
    NoiseChannel,
    /// Returns what it returned for the same layer in the previous query (zeros at first).
    Stale,
    /// Swaps the first two output channels.
    SwapChannels,
    /// Computes the layer on a different (random) input.
    OtherInput,
    /// Adds the layer's bias (times a random factor) to every output: an error shaped like the
    /// bias pattern the client folds into its pad product.
    BiasPattern,
    /// Adds one to one random element of the last image of the batch only.
    LastImage,
    /// Returns `t` (not a field element) in place of one random element.
    OutsideField,
    /// Returns the product without its last element.
    Short,
    /// Returns the product with one extra element.
    Long,
}

impl std::str::FromStr for Cheat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "honest" => Cheat::Honest,
            "flip-one" => Cheat::FlipOne,
            "noise-channel" => Cheat::NoiseChannel,
            "stale" => Cheat::Stale,
            "swap-channels" => Cheat::SwapChannels,
            "other-input" => Cheat::OtherInput,
            "bias-pattern" => Cheat::BiasPattern,
            "last-image" => Cheat::LastImage,
            "outside-field" => Cheat::OutsideField,
            "short" => Cheat::Short,
            "long" => Cheat::Long,
            other => {
                return Err(format!(
                    "unknown cheat `{other}` (honest, flip-one, noise-channel, stale, swap-channels, other-input, \
                     bias-pattern, last-image, outside-field, short, long)"
                ));
            }
        })
    }
}

/// A cloud serving offloaded convolutions of one model.
pub struct Cloud {
    model: Arc<FixedModel>,
    cheat: Cheat,
    /// Most images in one offloaded product.
    max_batch: usize,
    /// Per padded input, keyed by the first layer that reads it: every layer that reads it,
    /// whose products one OFFLOAD of it asks for.
    groups: HashMap<u32, Vec<u32>>,
    last: Mutex<HashMap<u32, Vec<u64>>>,
}

impl std::fmt::Debug for Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloud").field("cheat", &self.cheat).finish_non_exhaustive()
    }
}

impl Cloud {
    /// A cloud for `model` that behaves as `cheat` says.
    pub fn new(model: Arc<FixedModel>, cheat: Cheat) -> Self {
        let groups = model
            .linear_groups()
            .into_iter()
            .map(|g| (g[0] as u32, g.into_iter().map(|n| n as u32).collect()))
            .collect();
        Self { model, cheat, max_batch: usize::MAX, groups, last: Mutex::new(HashMap::new()) }
    }

    /// The same, refusing products of more than `max_batch` images (a deployment's
    /// [`max_batch`](super::max_batch)) before computing anything for them.
    pub fn with_max_batch(self, max_batch: usize) -> Self {
        Self { max_batch, ..self }
    }

    /// Serves the queries a client sends on one connection, until it closes it.
    pub async fn serve(&self, name: &str, client: &mut Channel) -> Result<()> {
        let mut rec = Recorder::new(name);
        loop {
            let (header, payload) = match client.recv_any().await {
                Ok(frame) => frame,
                Err(NetError::PeerClosed { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if header.kind == DONE {
                rec.stage(0, "query", StageKind::Output, &[client]);
                let report = vec![std::mem::replace(&mut rec, Recorder::new(name)).finish()];
                send_reports(client, REPORT, header.session, &report).await?;
                continue;
            }
            if header.kind != OFFLOAD {
                return Err(NetError::UnexpectedKind {
                    peer: client.peer().into(),
                    expected: OFFLOAD,
                    got: header.kind,
                }
                .into());
            }
            let node = header.layer;
            let span = tracing::debug_span!("layer", node, kind = ?StageKind::Offloaded);
            async {
                let product = self.product(client.peer(), node, &payload).await?;
                client.send(PRODUCT, header.session, node, &product).await?;
                Ok::<_, SuiteError>(())
            }
            .instrument(span)
            .await?;
            rec.stage(node, self.model.node_name(node as usize), StageKind::Offloaded, &[client]);
        }
    }

    /// The PRODUCT reply to one OFFLOAD: `K · X'` in the message's field, as bytes, for every
    /// layer that reads the padded input (in node order), or for the named layer alone under
    /// the monomial disguise, whose message depends on the layer's window.
    async fn product(&self, peer: &str, node: u32, payload: &[u8]) -> Result<Vec<u8>> {
        let mut r = Reader::new(payload, peer, "offload");
        let kernel = self
            .model
            .linear_kernel(node as usize)
            .ok_or_else(|| r.error(Violation::WrongNode { node, expected: "a convolution or FC layer" }))?;
        let batch = r.u32()? as usize;
        let tag = r.u32()?;
        let (monomial, narrow) = match (Disguise::from_tag(tag), tag) {
            (Some(d), _) => (d == Disguise::MonomialInsecure, false),
            (None, narrow::TAG) => (false, true),
            (None, _) => return Err(r.error(Violation::UnknownTag { field: "disguise", value: tag })),
        };
        let members = match (monomial, self.groups.get(&node)) {
            (true, _) => vec![node],
            (false, Some(group)) => group.clone(),
            (false, None) => {
                return Err(r.error(Violation::WrongNode { node, expected: "the first layer that reads its input" }));
            }
        };
        let bound_bits = self.model.params().bound_bits();
        let kernel_of = |m: u32| self.model.linear_kernel(m as usize).expect("grouped layers are linear");
        if narrow && !members.iter().all(|&m| narrow::fits(kernel_of(m), bound_bits)) {
            return Err(r.error(Violation::WrongNode { node, expected: "layers whose products fit the narrow pad" }));
        }
        let g = *kernel.geometry();
        let positions = g.output().expect("checked kernel").plane();
        let per_image = if monomial { g.terms() * positions } else { g.input.len() };
        let width = if narrow { 4 } else { 8 };
        if batch == 0
            || batch > self.max_batch
            || batch.checked_mul(per_image).is_none_or(|n| n > payload.len() / width)
        {
            let max = (payload.len() / width / per_image.max(1)).min(self.max_batch) as u64;
            return Err(r.error(Violation::OutOfRange { field: "batch", value: batch as u64, min: 1, max }));
        }
        // Residues mod p, lifted to within ±(p − 1)/2, are elements of Z_t: the exact kernel
        // computes K·(X + M) as an integer (the layers fit), one limb a value, reduced mod p
        // below.
        let mut x = if narrow {
            let mut residues = r.residues::<4>(batch * per_image, narrow::P)?;
            residues.iter_mut().for_each(|v| *v = narrow::lift(*v));
            residues
        } else {
            r.elements(batch * per_image)?
        };
        r.end()?;
        let mut rng = os_rng();
        if self.cheat == Cheat::OtherInput {
            x = if narrow {
                (0..x.len()).map(|_| narrow::lift(narrow::random(&mut rng))).collect()
            } else {
                zt::random_vec(&mut rng, x.len())
            };
        }
        let model = self.model.clone();
        let nodes = members.clone();
        let products = tokio::task::spawn_blocking(move || {
            let threads = rayon::current_num_threads();
            let kernel_of = |m: u32| model.linear_kernel(m as usize).expect("checked above");
            if monomial {
                // The disguised im2col columns of the whole batch, as one matrix product.
                vec![conv2d_zt(&kernel_of(nodes[0]).matrix_form(batch * positions), &x, 1, threads)]
            } else {
                let product = |m: u32| {
                    if narrow {
                        conv2d_zt_within(kernel_of(m), &x, narrow::P / 2, batch, threads)
                    } else {
                        conv2d_zt(kernel_of(m), &x, batch, threads)
                    }
                };
                nodes.iter().map(|&m| product(m)).collect::<Vec<_>>()
            }
        })
        .await
        .map_err(|e| SuiteError::stopped("the product", &e))?;
        let mut reply = Vec::new();
        for (&m, mut y) in members.iter().zip(products) {
            self.tamper(m, batch, &mut y, narrow, &mut rng);
            reply.extend(y);
        }
        Ok(if narrow { narrow::to_bytes(&reply) } else { elements_to_bytes(&reply) })
    }

    /// Applies the cloud's cheat to layer `node`'s product `y` and reduces it to the message's
    /// field (mod `p` when `narrow`).
    fn tamper<R: RngCore + CryptoRng>(&self, node: u32, batch: usize, y: &mut Vec<u64>, narrow: bool, rng: &mut R) {
        let kernel = self.model.linear_kernel(node as usize).expect("a linear layer");
        let plane = kernel.geometry().output().expect("checked kernel").plane();
        let pick = |rng: &mut R, n: usize| (rng.next_u64() % n as u64) as usize;
        match self.cheat {
            Cheat::Honest | Cheat::OtherInput => {}
            Cheat::FlipOne => {
                let i = pick(rng, y.len());
                y[i] = zt::add(y[i], 1);
            }
            Cheat::NoiseChannel => {
                let c = pick(rng, kernel.geometry().out_channels);
                y[c * plane..(c + 1) * plane].iter_mut().for_each(|v| *v = zt::add(*v, zt::random(rng)));
            }
            Cheat::Stale => {
                let mut last = self.last.lock().expect("last products");
                let previous = last.insert(node, y.clone()).filter(|p| p.len() == y.len());
                *y = previous.unwrap_or_else(|| vec![0; y.len()]);
            }
            Cheat::SwapChannels if kernel.geometry().out_channels > 1 => {
                let (a, b) = y.split_at_mut(plane);
                a.swap_with_slice(&mut b[..plane]);
            }
            Cheat::SwapChannels => {}
            Cheat::BiasPattern => {
                if let FixedOp::Linear { bias: Some(bias), .. } = &self.model.ops()[node as usize] {
                    let factor = 1 + rng.next_u64() % (zt::T - 1);
                    fold_bias(y, bias, plane, |v, b| zt::add(v, zt::mul(factor, b)));
                }
            }
            Cheat::LastImage => {
                let image = y.len() / batch;
                let i = y.len() - image + pick(rng, image);
                y[i] = zt::add(y[i], 1);
            }
            Cheat::OutsideField | Cheat::Short | Cheat::Long => {}
        }
        let modulus = if narrow {
            y.iter_mut().for_each(|v| *v = narrow::reduce(*v));
            narrow::P
        } else {
            zt::T
        };
        match self.cheat {
            Cheat::OutsideField => {
                let i = pick(rng, y.len());
                y[i] = modulus;
            }
            Cheat::Short => {
                y.pop();
            }
            Cheat::Long => y.push(0),
            _ => {}
        }
    }
}
