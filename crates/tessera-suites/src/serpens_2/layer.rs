//! One nonlinear layer between the two servers: both halves, both roles, at once.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rand::seq::SliceRandom;
use rand_core::RngCore;
use rayon::prelude::*;
use tessera_field::{seed::os_rng, zt};
use tessera_he::{Ciphertext, Form, HeParams, Plaintext, PublicKey, SecretKey};
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::{Channel, SessionId};
use zeroize::Zeroize;

use super::{MASKED, OWNED, RESULT, SELECTED};
use crate::error::{Result, SuiteError};
use crate::wire::{read_ciphertexts, seal_all, write_seeded};

/// A server's key pair and its peer's public key for one query.
pub(crate) struct Keys {
    pub mine: SecretKey,
    pub peer: PublicKey,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(redacted)")
    }
}

/// Where a layer's items go: `groups` of `N` consecutive items (over the flattened batch);
/// the first `⌈groups/2⌉` groups are `S1`'s half, the rest `S2`'s, so ciphertexts are full
/// except the last of each half.
struct Layout {
    items: usize,
    arity: usize,
    slots: usize,
    split: usize,
}

impl Layout {
    fn new(layer: &NonlinearLayer, batch: usize, slots: usize) -> Self {
        let items = batch * layer.items();
        let split = (items.div_ceil(slots).div_ceil(2) * slots).min(items);
        Self { items, arity: layer.arity(), slots, split }
    }

    /// The items of the half that server `owner` (0 or 1) owns.
    fn half(&self, owner: usize) -> Range<usize> {
        if owner == 0 { 0..self.split } else { self.split..self.items }
    }

    /// The item ranges of the half's groups.
    fn groups(&self, owner: usize) -> Vec<Range<usize>> {
        let half = self.half(owner);
        (half.start..half.end).step_by(self.slots).map(|s| s..(s + self.slots).min(half.end)).collect()
    }
}

/// What one server holds for a layer, shared by its parallel steps.
struct Step {
    layer: NonlinearLayer,
    layout: Layout,
    /// Input index (within an image) of element `e` of item `i`, at `i · arity + e`; empty for
    /// element-wise layers.
    gather: Vec<u32>,
    /// This server's share of the layer input.
    x: Vec<u64>,
    /// 0 for `S1`, 1 for `S2`.
    me: usize,
    he: HeParams,
    keys: Arc<Keys>,
    /// Bits of the multiplicative masks.
    kappa: u32,
    /// `|k·x|` never reaches `2^limit` for activations within the calibrated bound.
    limit: u32,
    peer: String,
}

impl Drop for Step {
    fn drop(&mut self) {
        self.x.zeroize();
    }
}

/// The masker's secrets for the peer's half.
struct Masks {
    /// `order[q]`: the group sent at position `q`.
    order: Vec<usize>,
    /// Per group, the order of its ciphertexts (`within[g · arity + j']` is sent `j'`-th).
    within: Vec<usize>,
    /// Multiplicative mask per item of the half, uniform in `[1, 2^κ]`.
    k: Vec<u64>,
    /// The masker's new share per item, uniform in `Z_t`.
    r: Vec<u64>,
}

impl Drop for Masks {
    fn drop(&mut self) {
        self.order.zeroize();
        self.within.zeroize();
        self.k.zeroize();
        self.r.zeroize();
    }
}

impl Step {
    /// Element `j` of `item` in this server's share.
    fn element(&self, item: usize, j: usize) -> u64 {
        if self.gather.is_empty() {
            return self.x[item];
        }
        let per_image = self.layer.items();
        let (image, i) = (item / per_image, item % per_image);
        self.x[image * self.layer.input.len() + self.gather[i * self.layout.arity + j] as usize]
    }

    fn encode(&self, values: &[u64], level: usize) -> Result<Plaintext> {
        Ok(Plaintext::encode(&self.he, values, level)?)
    }

    /// Reads `count` ciphertexts in `form` from the peer's `message`.
    fn read(&self, form: Form, bytes: &[u8], count: usize, message: &'static str) -> Result<Vec<Ciphertext>> {
        read_ciphertexts(&self.he, &self.peer, form, bytes, count, message)
    }

    /// Writes fresh ciphertexts, in order, seeded.
    fn write_seeded(&self, cts: &[Ciphertext]) -> Result<Vec<u8>> {
        write_seeded(&self.he, cts)
    }

    /// Seals ciphertexts for the peer (its key), in order: the returned form.
    fn seal_for_peer(&self, cts: &[Ciphertext]) -> Result<Vec<u8>> {
        seal_all(&self.keys.peer, cts)
    }

    /// Step 1, as owner: `⟦x_A⟧` of every group and element, seeded.
    fn encrypt_own(&self) -> Result<Vec<u8>> {
        let s = self.layout.arity;
        let cts: Vec<Ciphertext> = self
            .layout
            .groups(self.me)
            .par_iter()
            .flat_map_iter(|g| (0..s).map(move |j| (g.clone(), j)))
            .map(|(g, j)| {
                let mut values: Vec<u64> = g.clone().map(|item| self.element(item, j)).collect();
                let ct = self.keys.mine.encrypt_values(&values, &mut os_rng());
                values.zeroize();
                Ok(ct?)
            })
            .collect::<Result<_>>()?;
        self.write_seeded(&cts)
    }

    /// The masker's fresh secrets for the peer's half.
    fn draw_masks(&self) -> Masks {
        let mut rng = os_rng();
        let groups = self.layout.groups(1 - self.me).len();
        let s = self.layout.arity;
        let mut order: Vec<usize> = (0..groups).collect();
        order.shuffle(&mut rng);
        let mut within = Vec::with_capacity(groups * s);
        for _ in 0..groups {
            let mut o: Vec<usize> = (0..s).collect();
            o.shuffle(&mut rng);
            within.extend(o);
        }
        let n = self.layout.half(1 - self.me).len();
        let k = (0..n).map(|_| (rng.next_u64() >> (64 - self.kappa)) + 1).collect();
        let r = zt::random_vec(&mut rng, n);
        Masks { order, within, k, r }
    }

    /// Step 2, as masker: `⟦k ⊙ (x_A + x_B)⟧` per group and element, groups and elements
    /// shuffled, switched down, re-randomized, in the returned form.
    fn mask_peer(&self, owned: &[u8], m: &Masks) -> Result<Vec<u8>> {
        let groups = self.layout.groups(1 - self.me);
        let s = self.layout.arity;
        let first = self.layout.half(1 - self.me).start;
        let received = self.read(Form::Seeded, owned, groups.len() * s, "owned")?;
        let cts: Vec<Ciphertext> = (0..groups.len() * s)
            .into_par_iter()
            .map(|pos| {
                let g = m.order[pos / s];
                let j = m.within[g * s + pos % s];
                let range = &groups[g];
                let mut ct = received[g * s + j].clone();
                let mut mine: Vec<u64> = range.clone().map(|item| self.element(item, j)).collect();
                let pt = self.encode(&mine, 0);
                mine.zeroize();
                ct.add_plain(&pt?)?;
                ct.mul_plain(&self.encode(&m.k[range.start - first..range.end - first], 0)?)?;
                Ok(ct)
            })
            .collect::<Result<_>>()?;
        self.seal_for_peer(&cts)
    }

    /// Step 3, as owner: per slot the largest `z = k·x` of its group, zero where ReLU clamps.
    fn select_own(&self, masked: &[u8]) -> Result<Vec<u8>> {
        let groups = self.layout.groups(self.me);
        let s = self.layout.arity;
        let received = self.read(Form::Returned, masked, groups.len() * s, "masked")?;
        let limit = 1i64 << self.limit;
        let clamps = self.layer.clamps_at_zero();
        // The masker's order hides which group is which, but every group but the last is full.
        let cts: Vec<Ciphertext> = received
            .par_chunks(s.max(1))
            .map(|group| {
                let mut best = vec![i64::MIN; self.layout.slots];
                let mut overflow = false;
                for ct in group {
                    let z = self.keys.mine.decrypt(ct)?;
                    for (b, &v) in best.iter_mut().zip(z.iter()) {
                        let v = zt::to_i64(v);
                        overflow |= v >= limit || v <= -limit;
                        *b = (*b).max(v);
                    }
                }
                if overflow {
                    best.zeroize();
                    return Err(SuiteError::ActivationOverflow { layer: self.layer.node });
                }
                let mut sel: Vec<u64> =
                    best.iter().map(|&v| if clamps && v <= 0 { 0 } else { zt::from_i64(v) }).collect();
                best.zeroize();
                let ct = self.keys.mine.encrypt_values(&sel, &mut os_rng());
                sel.zeroize();
                Ok(ct?)
            })
            .collect::<Result<_>>()?;
        self.write_seeded(&cts)
    }

    /// Step 4, as masker: `⟦k^−1 ⊙ sel − r⟧` per group, back in the original order.
    fn unmask_peer(&self, selected: &[u8], m: &Masks) -> Result<Vec<u8>> {
        let groups = self.layout.groups(1 - self.me);
        let first = self.layout.half(1 - self.me).start;
        let received = self.read(Form::Seeded, selected, groups.len(), "selected")?;
        let mut back: Vec<(usize, Ciphertext)> = received
            .into_par_iter()
            .enumerate()
            .map(|(q, mut ct)| {
                let g = m.order[q];
                let range = groups[g].start - first..groups[g].end - first;
                let mut k_inv = zt::inv_all(&m.k[range.clone()]).expect("masks are nonzero");
                ct.mul_plain(&self.encode(&k_inv, 0)?)?;
                k_inv.zeroize();
                ct.sub_plain(&self.encode(&m.r[range], 0)?)?;
                Ok((g, ct))
            })
            .collect::<Result<_>>()?;
        back.sort_by_key(|(g, _)| *g);
        let cts: Vec<Ciphertext> = back.into_iter().map(|(_, ct)| ct).collect();
        self.seal_for_peer(&cts)
    }

    /// Step 5: this server's share of every item, truncated locally: `S1` floors its share,
    /// `S2` floors the negation of its own, so the sum is `⌊y / 2^shift⌋` or one more.
    fn finish(&self, result: &[u8], m: &Masks) -> Result<Vec<u64>> {
        let groups = self.layout.groups(self.me);
        let received = self.read(Form::Returned, result, groups.len(), "result")?;
        let mut out = vec![0u64; self.layout.items];
        let decrypted: Vec<_> =
            received.par_iter().map(|ct| self.keys.mine.decrypt(ct)).collect::<std::result::Result<_, _>>()?;
        for (g, values) in groups.iter().zip(&decrypted) {
            out[g.clone()].copy_from_slice(&values[..g.len()]);
        }
        let peer_half = self.layout.half(1 - self.me);
        out[peer_half].copy_from_slice(&m.r);
        let (shift, first) = (self.layer.shift, self.me == 0);
        if shift > 0 {
            out.par_iter_mut().for_each(|v| *v = truncate_share(*v, shift, first));
        }
        Ok(out)
    }
}

/// One server's local truncation of its share of `y` by `2^shift`: `S1` floors its share `a`,
/// `S2` its share `b` as `−⌊(−b mod t) / 2^shift⌋`. The two results add up to `⌊y / 2^shift⌋` or
/// one more, unless `a − (−b mod t)` wraps around `t` (probability `|y| / t` when one share is
/// uniform).
fn truncate_share(v: u64, shift: u32, first: bool) -> u64 {
    if first { v >> shift } else { zt::neg(zt::neg(v) >> shift) }
}

/// Runs one nonlinear layer as server `me` (0 for `S1`, 1 for `S2`) with its peer over `link`:
/// returns this server's share of the layer output (at activation scale), for the whole batch.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn evaluate(
    link: &mut Channel,
    session: SessionId,
    layer: &NonlinearLayer,
    batch: usize,
    x: Vec<u64>,
    me: usize,
    he: &HeParams,
    keys: &Arc<Keys>,
    kappa: u32,
    bound_bits: u32,
) -> Result<Vec<u64>> {
    let gather = if layer.arity() == 1 && layer.items() == layer.input.len() { Vec::new() } else { layer.gather() };
    let step = Arc::new(Step {
        layer: *layer,
        layout: Layout::new(layer, batch, he.degree()),
        gather,
        x,
        me,
        he: he.clone(),
        keys: keys.clone(),
        kappa,
        limit: kappa + bound_bits,
        peer: link.peer().to_string(),
    });
    let node = layer.node;
    let owned = blocking(&step, |s| s.encrypt_own()).await?;
    let owned = link.exchange(OWNED, session, node, &owned).await?;
    let masks = Arc::new(step.draw_masks());
    let m = masks.clone();
    let masked = blocking(&step, move |s| s.mask_peer(&owned, &m)).await?;
    let masked = link.exchange(MASKED, session, node, &masked).await?;
    let selected = blocking(&step, move |s| s.select_own(&masked)).await?;
    let selected = link.exchange(SELECTED, session, node, &selected).await?;
    let m = masks.clone();
    let result = blocking(&step, move |s| s.unmask_peer(&selected, &m)).await?;
    let result = link.exchange(RESULT, session, node, &result).await?;
    blocking(&step, move |s| s.finish(&result, &masks)).await
}

/// Runs `f` on the blocking pool (HE work would stall the runtime's threads).
async fn blocking<T: Send + 'static>(
    step: &Arc<Step>,
    f: impl FnOnce(&Step) -> Result<T> + Send + 'static,
) -> Result<T> {
    let step = step.clone();
    tokio::task::spawn_blocking(move || f(&step))
        .await
        .map_err(|e| SuiteError::Local(format!("HE step stopped: {e}")))?
}

#[cfg(test)]
mod tests {
    use tessera_field::kernels::ImageShape;
    use tessera_model::nonlinear::NonlinearKind;

    use super::*;

    #[test]
    fn local_truncation_is_the_floor_or_one_more() {
        let mut rng = os_rng();
        for shift in [1, 8, 13] {
            for _ in 0..20_000 {
                let y = (rng.next_u64() >> 40) as i64 - (1 << 23);
                let r = zt::random(&mut rng);
                let a = zt::sub(zt::from_i64(y), r);
                let sum = zt::to_i64(zt::add(truncate_share(a, shift, true), truncate_share(r, shift, false)));
                let floor = y.div_euclid(1 << shift);
                assert!(sum == floor || sum == floor + 1, "y {y}, shift {shift}: {sum} vs {floor}");
            }
        }
        // Zero stays zero whatever the shares.
        let r = zt::random(&mut rng);
        assert_eq!(zt::add(truncate_share(zt::neg(r), 8, true), truncate_share(r, 8, false)), 0);
    }

    #[test]
    fn halves_are_whole_groups_that_cover_every_item_once() {
        let shape = ImageShape::new(64, 32, 32);
        let layer = NonlinearLayer { node: 3, kind: NonlinearKind::Relu, input: shape, output: shape, shift: 8 };
        for (batch, slots, first_groups, second_groups) in [(1, 8192, 4, 4), (3, 8192, 12, 12), (1, 65536 * 2, 1, 0)] {
            let layout = Layout::new(&layer, batch, slots);
            let (a, b) = (layout.groups(0), layout.groups(1));
            assert_eq!((a.len(), b.len()), (first_groups, second_groups), "batch {batch}, {slots} slots");
            let items: Vec<usize> = a.iter().chain(&b).flat_map(|g| g.clone()).collect();
            assert_eq!(items, (0..batch * 65536).collect::<Vec<_>>());
            assert!(a.iter().all(|g| g.len() == slots.min(batch * 65536)));
        }
        // An odd number of groups: the first half has the extra one, and the last group is partial.
        let odd = ImageShape::new(3, 50, 50);
        let layer = NonlinearLayer { input: odd, output: odd, ..layer };
        let layout = Layout::new(&layer, 1, 4096);
        let (a, b) = (layout.groups(0), layout.groups(1));
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!((a[0].len(), b[0].len()), (4096, 7500 - 4096));
    }
}
