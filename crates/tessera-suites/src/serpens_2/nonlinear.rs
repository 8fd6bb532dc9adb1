//! The serpens-2 ReLU and max pool: one nonlinear layer between the two servers, both halves and
//! both roles at once, as state machines without I/O. Each server is the key owner of its half
//! and the masker of its peer's; both roles share the layer's [`Step`] (its input share and
//! layout). The owner [`Owner::start`]s with its [`Owned`] message, [`Owner::select`]s from the
//! peer's `MASKED` and [`Selecting::finish`]es from its `RESULT` (with its [`Unpermute`] in the
//! hidden layout); the masker [`Masker::start`]s from the peer's `OWNED` with its [`Masked`]
//! message, [`Masker::unmask`]s the peer's `SELECTED` into its [`LayerResult`] and
//! [`Masker::finish`]es with the peer's `UNPERMUTE`. The messages live in `msgs`; `server`
//! drives the steps over the link, each on the blocking pool.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rayon::prelude::*;
use tessera_field::{Seed, fixed, seed::os_rng, zt};
use tessera_he::{Ciphertext, HeParams, Plaintext, PublicKey, SecretKey};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::SessionId;
use zeroize::{Zeroize, Zeroizing};

use super::Layout;
use super::correlation::{Correlations, Direction, Part, owner_values, permutation};
use super::msgs::{LayerResult, Masked, Owned, Selected, Unpermute};
use crate::error::{Result, SuiteError};
use crate::masks::{self, Comparison, ComparisonMasks, MaskShape};
use crate::wire::write_seeded;

/// A server's key pair and its peer's public key for one query.
pub(crate) struct Keys {
    pub mine: Arc<SecretKey>,
    pub peer: PublicKey,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(redacted)")
    }
}

/// Where a layer's items go: `groups` of `N` consecutive items (over the flattened batch); the
/// first `⌈groups/2⌉` groups are `S1`'s half, the rest `S2`'s, so ciphertexts are full except
/// the last of each half.
pub(crate) struct Halves {
    items: usize,
    slots: usize,
    split: usize,
}

impl Halves {
    /// The halves of `layer` on a batch of `batch` images, `slots` items per ciphertext.
    pub fn new(layer: &NonlinearLayer, batch: usize, slots: usize) -> Self {
        let items = batch * layer.items();
        let split = (items.div_ceil(slots).div_ceil(2) * slots).min(items);
        Self { items, slots, split }
    }

    /// The items of the half that server `owner` (0 or 1) owns.
    pub fn half(&self, owner: usize) -> Range<usize> {
        if owner == 0 { 0..self.split } else { self.split..self.items }
    }

    /// The half's groups: ranges of positions `0..n` within the half, `N` each but the last.
    fn groups(&self, owner: usize) -> Vec<Range<usize>> {
        let n = self.half(owner).len();
        (0..n).step_by(self.slots).map(|s| s..(s + self.slots).min(n)).collect()
    }
}

/// What a server holds for a whole query, shared by its layers.
pub(crate) struct Query {
    pub session: SessionId,
    pub batch: usize,
    /// 0 for `S1`, 1 for `S2`.
    pub me: usize,
    pub he: HeParams,
    pub keys: Keys,
    /// Bits of the multiplicative masks (`κ`).
    pub kappa: u32,
    /// Bits of the activation bound (`ℓx`).
    pub bound_bits: u32,
    /// What the user dealt this server.
    pub correlations: Correlations,
}

impl Query {
    fn layout(&self) -> Layout {
        self.correlations.layout()
    }

    /// The server's seed from the user (hidden layout), for `layer`.
    fn seed(&self, layer: u32) -> Result<&Seed> {
        self.correlations.seed().ok_or(SuiteError::MissingCorrelation { layer })
    }
}

/// The input-independent part of step 1 for every layer of the hidden layout: `⟦β⟧` of the half
/// this server (`me`) owns, laid out position-major and seeded, from its seed. Empty for the
/// seed layout.
pub(crate) fn prepare(
    he: &HeParams,
    key: &SecretKey,
    correlations: &Correlations,
    layers: &[NonlinearLayer],
    batch: usize,
    me: usize,
) -> Result<Vec<Vec<u8>>> {
    let Some(seed) = correlations.seed() else { return Ok(Vec::new()) };
    layers
        .iter()
        .map(|layer| {
            let halves = Halves::new(layer, batch, he.degree());
            let (n, s) = (halves.half(me).len(), layer.arity());
            let beta = Zeroizing::new(owner_values(seed, layer.node, me, Direction::Forward, Part::Share, n * s));
            let cts = position_major(&halves.groups(me), s, |q| beta[q], key)?;
            write_seeded(he, &cts)
        })
        .collect()
}

/// Fresh, seeded encryptions of a half's values in the position-major layout: per group `g`
/// and element `j`, slot `p` holds `value(q)` at position `q = (g_start + p) · s + j`.
fn position_major(
    groups: &[Range<usize>],
    s: usize,
    value: impl Fn(usize) -> u64 + Sync,
    key: &SecretKey,
) -> Result<Vec<Ciphertext>> {
    groups
        .par_iter()
        .flat_map_iter(|g| (0..s).map(move |j| (g.clone(), j)))
        .map(|(g, j)| {
            let values = Zeroizing::new(g.map(|p| value(p * s + j)).collect::<Vec<u64>>());
            Ok(key.encrypt_values(&values, &mut os_rng())?)
        })
        .collect()
}

/// What one server holds for a layer, shared by its parallel steps.
pub(crate) struct Step {
    query: Arc<Query>,
    /// The layer's index among the model's nonlinear layers.
    index: usize,
    layer: NonlinearLayer,
    halves: Halves,
    /// Input index (within an image) of element `e` of item `i`, at `i · arity + e`; empty for
    /// element-wise layers.
    gather: Vec<u32>,
    /// This server's share of the layer input.
    x: Vec<u64>,
    peer: String,
}

impl Drop for Step {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

/// The masker's secrets for the peer's half.
struct MaskerSecrets {
    /// The order the key owner receives (`π`, or the identity in the seed layout), the masks
    /// `k`, `e` per comparison and `R` per position.
    masks: ComparisonMasks,
    /// Seed layout: per group the order of its ciphertexts (`within[g · s + j']` is sent
    /// `j'`-th); empty in the hidden layout, where `π` already shuffles every window.
    within: Vec<usize>,
    /// The masker's new share per position (item), uniform in `Z_t`.
    r: Vec<u64>,
}

impl Drop for MaskerSecrets {
    fn drop(&mut self) {
        self.within.zeroize();
        self.r.zeroize();
    }
}

/// Which element of group `g` the masker sends `j`-th, given its per-group orders `within`
/// (empty: every group in element order).
fn sent_element(within: &[usize], s: usize, g: usize, j: usize) -> usize {
    if within.is_empty() { j } else { within[g * s + j] }
}

impl Step {
    /// This server's step of the `index`-th nonlinear layer of `query` on its share `x` of the
    /// layer input, with `peer` across the link.
    pub fn new(query: &Arc<Query>, index: usize, layer: &NonlinearLayer, x: Vec<u64>, peer: &str) -> Self {
        let gather = if layer.arity() == 1 && layer.items() == layer.input.len() { Vec::new() } else { layer.gather() };
        Step {
            query: query.clone(),
            index,
            layer: *layer,
            halves: Halves::new(layer, query.batch, query.he.degree()),
            gather,
            x,
            peer: peer.to_string(),
        }
    }

    fn arity(&self) -> usize {
        self.layer.arity()
    }

    /// Element `j` of `item` (over the layer's flattened batch) in this server's share.
    fn element(&self, item: usize, j: usize) -> u64 {
        if self.gather.is_empty() {
            return self.x[item];
        }
        let per_image = self.layer.items();
        let (image, i) = (item / per_image, item % per_image);
        self.x[image * self.layer.input.len() + self.gather[i * self.arity() + j] as usize]
    }

    /// Element `e` (half-local, `item · arity + j`) of the half of server `owner`, in this
    /// server's share.
    fn half_element(&self, owner: usize, e: usize) -> u64 {
        let s = self.arity();
        self.element(self.halves.half(owner).start + e / s, e % s)
    }

    fn encode(&self, values: &[u64]) -> Result<Plaintext> {
        Ok(Plaintext::encode(&self.query.he, values, 0)?)
    }

    fn decrypt(&self, ct: &Ciphertext) -> Result<Zeroizing<Vec<u64>>> {
        Ok(self.query.keys.mine.decrypt(ct)?)
    }

    /// Step 1, as owner A. Hidden layout: `x_A + α` (natural element order) and the prepared
    /// `⟦β⟧`; seed layout: `⟦x_A⟧`, position-major, seeded.
    fn owned(&self, prepared: Vec<u8>) -> Result<Owned> {
        let (me, s) = (self.query.me, self.arity());
        let n = self.halves.half(me).len();
        match self.query.layout() {
            Layout::Hidden => {
                let alpha = Zeroizing::new(owner_values(
                    self.query.seed(self.layer.node)?,
                    self.layer.node,
                    me,
                    Direction::Forward,
                    Part::Pad,
                    n * s,
                ));
                let sent =
                    Zeroizing::new((0..n * s).map(|e| zt::add(self.half_element(me, e), alpha[e])).collect::<Vec<_>>());
                Ok(Owned::hidden(sent, prepared))
            }
            Layout::Seed => {
                let cts =
                    position_major(&self.halves.groups(me), s, |q| self.half_element(me, q), &self.query.keys.mine)?;
                Owned::seeded(&self.query.he, &cts)
            }
        }
    }

    /// Step 2, as masker B: B's share `b` of the ordered values (hidden: `π(x_A + α + x_B) − Δ`;
    /// seed: `x_B`), then per group and element `⟦k ⊙ (a + b) + e⟧` and `⟦a + b + R⟧` from the
    /// owner's `⟦a⟧`, sealed, the `z`s of a group then its `w`s, in the order sent.
    fn mask_peer(&self, owned: Vec<u8>) -> Result<(Masked, MaskerSecrets)> {
        let (peer, s) = (1 - self.query.me, self.arity());
        let n = self.halves.half(peer).len();
        let groups = self.halves.groups(peer);
        let mut rng = os_rng();
        let (order, pads, cts, within) = match self.query.layout() {
            Layout::Hidden => {
                let owned = Owned::parse(&self.query.he, &self.peer, owned, Some(n * s), groups.len() * s)?;
                let (sent, cts) = (owned.padded.unwrap_or_default(), owned.cts);
                let delta = match self.query.correlations.masked_half(self.index) {
                    Some((delta, _)) if delta.len() == n * s => delta,
                    _ => return Err(SuiteError::MissingCorrelation { layer: self.layer.node }),
                };
                let order = permutation(self.query.seed(self.layer.node)?, self.layer.node, n, s);
                (order, Some((sent, delta)), cts, Vec::new())
            }
            Layout::Seed => {
                let cts = Owned::parse(&self.query.he, &self.peer, owned, None, groups.len() * s)?.cts;
                let mut within = Vec::with_capacity(groups.len() * s);
                for _ in &groups {
                    let mut o: Vec<usize> = (0..s).collect();
                    o.shuffle(&mut rng);
                    within.extend(o);
                }
                ((0..(n * s) as u32).collect(), None, cts, within)
            }
        };
        let (kappa, clamps) = (self.query.kappa, self.layer.compares_with_zero());
        let (mut k_src, mut e_src, mut r_src) = (os_rng(), os_rng(), os_rng());
        let shape = MaskShape { arity: s, clamps, kappa, r_bits: zt::LOG2_T - 1 };
        let masks = ComparisonMasks::with_order(order, &mut k_src, &mut e_src, &mut r_src, shape);
        let c = masks.comparisons.len();
        // B's share at position q.
        let share = |q: usize| {
            let e = masks.order[q] as usize;
            let mine = self.half_element(peer, e);
            match &pads {
                Some((sent, delta)) => zt::sub(zt::add(sent[e], mine), delta[q]),
                None => mine,
            }
        };
        // Per group, in the order sent: its comparisons `⟦k ⊙ v + e⟧` (`v` an element or the
        // difference of two, the elements named by their place `j'` in the group's order), then
        // its elements `⟦x + R⟧`.
        let masked: Vec<Ciphertext> = (0..groups.len() * (c + s))
            .into_par_iter()
            .map(|slot| {
                let (g, i) = (slot / (c + s), slot % (c + s));
                let range = groups[g].clone();
                let element = |j: usize| sent_element(&within, s, g, j);
                let values =
                    |j: usize| Zeroizing::new(range.clone().map(|p| share(p * s + element(j))).collect::<Vec<_>>());
                if i >= c {
                    // An element: ⟦a⟧ + b + R.
                    let j = element(i - c);
                    let mut b = values(i - c);
                    for (v, p) in b.iter_mut().zip(range.clone()) {
                        *v = zt::add(*v, masks.r[p * s + j]);
                    }
                    let mut w = cts[g * s + j].clone();
                    w.add_plain(&self.encode(&b)?)?;
                    return Ok(w);
                }
                // ⟦k·v + e⟧ with v = linear + constant: the ciphertexts times `scale·k` (a pair's
                // second element times its negation), plus `k·linear(b) + k·constant + e`.
                let cmp = masks.comparisons[i];
                let scaled = Zeroizing::new(
                    range.clone().map(|p| zt::mul(Comparison::SCALE, masks.k[p * c + i])).collect::<Vec<u64>>(),
                );
                let (first, second) = match cmp {
                    Comparison::Sign(a) => (a as usize, None),
                    Comparison::Pair(a, b) => (a as usize, Some(b as usize)),
                };
                let mut z = cts[g * s + element(first)].clone();
                z.mul_plain(&self.encode(&scaled)?)?;
                if let Some(second) = second {
                    let negated = Zeroizing::new(scaled.iter().map(|&k| zt::neg(k)).collect::<Vec<u64>>());
                    let mut minus = cts[g * s + element(second)].clone();
                    minus.mul_plain(&self.encode(&negated)?)?;
                    z.add(&minus)?;
                }
                let kv_e = Zeroizing::new(
                    range
                        .clone()
                        .map(|p| {
                            let linear = cmp.linear(|a| share(p * s + element(a)));
                            zt::add(zt::mul(masks.k[p * c + i], linear), masks.offset(p, i))
                        })
                        .collect::<Vec<_>>(),
                );
                z.add_plain(&self.encode(&kv_e)?)?;
                Ok(z)
            })
            .collect::<Result<_>>()?;
        let secrets = MaskerSecrets { masks, within, r: zt::random_vec(&mut rng, n) };
        Ok((Masked::seal(&self.query.keys.peer, &masked)?, secrets))
    }

    /// Step 3, as owner A: decrypts every comparison `z = k ⊙ v + e` and element `w = x + R`,
    /// decides per slot the group's largest element (ReLU: the only one) from the comparisons,
    /// clamps where the layer does, and returns `⟦sel⟧` (one ciphertext per element, seeded)
    /// with the kept `Σ sel ⊙ ⌊w / 2^shift⌋` per position.
    fn select_own(&self, masked: &[u8]) -> Result<(Selected, Zeroizing<Vec<u64>>)> {
        let (me, s) = (self.query.me, self.arity());
        let (clamps, shift, node) = (self.layer.compares_with_zero(), self.layer.shift, self.layer.node);
        let c = Comparison::of_item(s, clamps).len();
        let groups = self.halves.groups(me);
        let received = Masked::parse(&self.query.he, &self.peer, masked, groups.len() * (c + s))?;
        let z_limit = 1i64 << (self.query.kappa + self.query.bound_bits);
        let bound = 1i64 << self.query.bound_bits;
        let w_range = -bound..(1i64 << (zt::LOG2_T - 1)) + bound;
        let selected: Vec<(Vec<Ciphertext>, Zeroizing<Vec<u64>>)> = received
            .par_chunks(c + s)
            .zip(groups.par_iter())
            .map(|(group, range)| {
                let decrypted = group.iter().map(|ct| self.decrypt(ct)).collect::<Result<Vec<_>>>()?;
                let (z, w) = decrypted.split_at(c);
                let len = range.len();
                let mut sel = Zeroizing::new(vec![vec![0u64; len]; s]);
                let mut kept = Zeroizing::new(vec![0u64; len]);
                let mut zs = Zeroizing::new(vec![0i64; c]);
                for p in 0..len {
                    for (v, z) in zs.iter_mut().zip(z) {
                        *v = zt::to_i64(z[p]);
                    }
                    if zs.iter().any(|v| v.abs() >= z_limit) || w.iter().any(|w| !w_range.contains(&zt::to_i64(w[p]))) {
                        return Err(SuiteError::ActivationOverflow { layer: node });
                    }
                    match masks::decide(&zs, s, clamps) {
                        Some(best) => {
                            sel[best][p] = 1;
                            kept[p] = fixed::truncate(w[best][p], shift);
                        }
                        // Nonzero only for a leaky ReLU, whose items are single elements.
                        None => kept[p] = self.layer.truncate_below_zero(w[0][p]),
                    }
                }
                let cts = sel.iter().map(|v| Ok(self.query.keys.mine.encrypt_values(v, &mut os_rng())?));
                Ok((cts.collect::<Result<_>>()?, kept))
            })
            .collect::<Result<_>>()?;
        let mut kept = Zeroizing::new(Vec::with_capacity(self.halves.half(me).len()));
        let mut cts = Vec::with_capacity(groups.len() * s);
        for (c, k) in selected {
            cts.extend(c);
            kept.extend_from_slice(&k);
        }
        Ok((Selected::new(&self.query.he, &cts)?, kept))
    }

    /// Step 4, as masker B: per group `⟦−Σ_j sel_j ⊙ (⌊R_j / 2^shift⌋ − N(R_j)) − N(R_0) − r⟧`,
    /// sealed, `N` the layer's [`NonlinearLayer::truncate_below_zero`] (0 but for a leaky ReLU,
    /// whose groups have one element): what A kept minus this is the output within one unit.
    fn unmask_peer(&self, selected: &[u8], m: &MaskerSecrets) -> Result<LayerResult> {
        let (peer, s) = (1 - self.query.me, self.arity());
        let groups = self.halves.groups(peer);
        let received = Selected::parse(&self.query.he, &self.peer, selected, groups.len() * s)?;
        let results: Vec<Ciphertext> = groups
            .par_iter()
            .enumerate()
            .map(|(g, range)| {
                let mut acc: Option<Ciphertext> = None;
                for j in 0..s {
                    let e = sent_element(&m.within, s, g, j);
                    let floor = Zeroizing::new(
                        range
                            .clone()
                            .map(|p| zt::neg(self.layer.selected_mask_floor(m.masks.r[p * s + e])))
                            .collect::<Vec<u64>>(),
                    );
                    let mut ct = received[g * s + j].clone();
                    ct.mul_plain(&self.encode(&floor)?)?;
                    match &mut acc {
                        Some(a) => a.add(&ct)?,
                        None => acc = Some(ct),
                    }
                }
                let mut acc = acc.expect("an item has at least one element");
                let below_zero = Zeroizing::new(
                    range
                        .clone()
                        .map(|p| {
                            zt::add(
                                m.r[p],
                                self.layer.truncate_below_zero(m.masks.r[p * s + sent_element(&m.within, s, g, 0)]),
                            )
                        })
                        .collect::<Vec<u64>>(),
                );
                acc.sub_plain(&self.encode(&below_zero)?)?;
                Ok(acc)
            })
            .collect::<Result<_>>()?;
        LayerResult::seal(&self.query.keys.peer, &results)
    }

    /// Step 5, as owner A: its share per position, the decrypted result plus what it kept.
    fn own_share(&self, result: &[u8], mut kept: Zeroizing<Vec<u64>>) -> Result<Zeroizing<Vec<u64>>> {
        let groups = self.halves.groups(self.query.me);
        let received = LayerResult::parse(&self.query.he, &self.peer, result, groups.len())?;
        let decrypted = received.par_iter().map(|ct| self.decrypt(ct)).collect::<Result<Vec<_>>>()?;
        for (range, values) in groups.iter().zip(&decrypted) {
            for (k, &v) in kept[range.clone()].iter_mut().zip(values.iter()) {
                *k = zt::add(*k, v);
            }
        }
        Ok(kept)
    }

    /// Back to natural order (hidden layout), as owner A: the message `y_A + α'` and A's share
    /// `β'`.
    fn unpermute_own(&self, mut own: Zeroizing<Vec<u64>>) -> Result<(Unpermute, Zeroizing<Vec<u64>>)> {
        let (seed, node, me) = (self.query.seed(self.layer.node)?, self.layer.node, self.query.me);
        let n = own.len();
        let alpha = Zeroizing::new(owner_values(seed, node, me, Direction::Back, Part::Pad, n));
        zt::add_assign(&mut own, &alpha);
        let share = Zeroizing::new(owner_values(seed, node, me, Direction::Back, Part::Share, n));
        Ok((Unpermute(own), share))
    }

    /// Back to natural order (hidden layout), as masker B: its share of the peer's half,
    /// `π⁻¹(y_A + α' + r) − Δ'`.
    fn unpermute_peer(&self, received: Vec<u8>, m: &MaskerSecrets) -> Result<Zeroizing<Vec<u64>>> {
        let s = self.arity();
        let n = m.r.len();
        let Unpermute(sent) = Unpermute::parse(&self.peer, received, n)?;
        let Some((_, delta)) = self.query.correlations.masked_half(self.index) else {
            return Err(SuiteError::MissingCorrelation { layer: self.layer.node });
        };
        let mut out = Zeroizing::new(vec![0u64; n]);
        for (p, window) in m.masks.order.chunks_exact(s).enumerate() {
            let item = window[0] as usize / s;
            out[item] = zt::sub(zt::add(sent[p], m.r[p]), delta[item]);
        }
        Ok(out)
    }

    /// The layer output: `own` at this server's half, `peer` at the other (each from its role's
    /// `finish`).
    pub fn assemble(&self, own: &[u64], peer: &[u64]) -> Vec<u64> {
        let me = self.query.me;
        let mut out = vec![0u64; self.halves.items];
        out[self.halves.half(me)].copy_from_slice(own);
        out[self.halves.half(1 - me)].copy_from_slice(peer);
        out
    }
}

/// The key owner A of this server's half, between its `OWNED` and the peer's `MASKED`.
pub(crate) struct Owner {
    step: Arc<Step>,
}

impl Owner {
    /// Starts the layer as owner, with `prepared`, this server's `⟦β⟧` for the layer (hidden
    /// layout; empty otherwise): step 1's message.
    pub fn start(step: Arc<Step>, prepared: Vec<u8>) -> Result<(Self, Owned)> {
        let owned = step.owned(prepared)?;
        Ok((Self { step }, owned))
    }

    /// Step 3: decides every item from the peer's `MASKED` payload and selects; keeps
    /// `Σ sel ⊙ ⌊w / 2^shift⌋` and returns `⟦sel⟧`.
    pub fn select(self, masked: Vec<u8>) -> Result<(Selecting, Selected)> {
        let (selected, kept) = self.step.select_own(&masked)?;
        Ok((Selecting { step: self.step, kept }, selected))
    }
}

/// The key owner after its `SELECTED`, keeping its part of the selected values (wiped on drop)
/// until the peer's `RESULT`.
pub(crate) struct Selecting {
    step: Arc<Step>,
    kept: Zeroizing<Vec<u64>>,
}

impl Selecting {
    /// Step 5, from the peer's `RESULT` payload: the owner's share of its half in natural order
    /// and, in the hidden layout, the [`Unpermute`] message that brings the peer's share there.
    pub fn finish(self, result: Vec<u8>) -> Result<(Zeroizing<Vec<u64>>, Option<Unpermute>)> {
        let own = self.step.own_share(&result, self.kept)?;
        match self.step.query.layout() {
            Layout::Seed => Ok((own, None)),
            Layout::Hidden => {
                let (message, own) = self.step.unpermute_own(own)?;
                Ok((own, Some(message)))
            }
        }
    }
}

/// The masker B of the peer's half, from the peer's `OWNED` on, holding its masks and new shares
/// (wiped on drop).
pub(crate) struct Masker {
    step: Arc<Step>,
    secrets: MaskerSecrets,
}

impl Masker {
    /// Step 2, from the peer's `OWNED` payload: draws the masks and returns the masked values.
    pub fn start(step: Arc<Step>, owned: Vec<u8>) -> Result<(Self, Masked)> {
        let (masked, secrets) = step.mask_peer(owned)?;
        Ok((Self { step, secrets }, masked))
    }

    /// Step 4, from the peer's `SELECTED` payload: the peer's masked result.
    pub fn unmask(self, selected: Vec<u8>) -> Result<(Self, LayerResult)> {
        let result = self.step.unmask_peer(&selected, &self.secrets)?;
        Ok((self, result))
    }

    /// This server's share of the peer's half in natural order: its new shares in the seed
    /// layout; from the peer's `UNPERMUTE` payload in the hidden layout (where none is refused as
    /// an empty one).
    pub fn finish(self, unpermute: Option<Vec<u8>>) -> Result<Zeroizing<Vec<u64>>> {
        match self.step.query.layout() {
            Layout::Seed => Ok(Zeroizing::new(self.secrets.r.clone())),
            Layout::Hidden => self.step.unpermute_peer(unpermute.unwrap_or_default(), &self.secrets),
        }
    }
}

#[cfg(test)]
mod tests {
    use tessera_field::kernels::ImageShape;
    use tessera_model::nonlinear::NonlinearKind;

    use super::*;

    #[test]
    fn halves_are_whole_groups_that_cover_every_item_once() {
        let shape = ImageShape::new(64, 32, 32);
        let layer = NonlinearLayer { node: 3, kind: NonlinearKind::Relu, input: shape, output: shape, shift: 8 };
        for (batch, slots, first_groups, second_groups) in [(1, 8192, 4, 4), (3, 8192, 12, 12), (1, 65536 * 2, 1, 0)] {
            let halves = Halves::new(&layer, batch, slots);
            let (a, b) = (halves.groups(0), halves.groups(1));
            assert_eq!((a.len(), b.len()), (first_groups, second_groups), "batch {batch}, {slots} slots");
            let items: Vec<usize> = a
                .iter()
                .flat_map(|g| g.clone())
                .chain(b.iter().flat_map(|g| g.clone().map(|p| p + halves.half(1).start)))
                .collect();
            assert_eq!(items, (0..batch * 65536).collect::<Vec<_>>());
            assert!(a.iter().all(|g| g.len() == slots.min(batch * 65536)));
        }
        // An odd number of groups: the first half has the extra one, and the last group is partial.
        let odd = ImageShape::new(3, 50, 50);
        let layer = NonlinearLayer { input: odd, output: odd, ..layer };
        let halves = Halves::new(&layer, 1, 4096);
        let (a, b) = (halves.groups(0), halves.groups(1));
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!((a[0].len(), b[0].len()), (4096, 7500 - 4096));
    }
}
