//! Permutation correlations (PROTOCOLS.md 3.3, *Hiding positions from the key owner*): what the
//! user deals per query, nonlinear layer and half, before and independently of the input, so
//! that the two servers can turn their shares of a half's elements into shares of the elements
//! in an order `π` that the half's key owner **A** does not know, and back.
//!
//! For the half owned by server `h` (A) and masked by the other (B), with `n` items of `s`
//! elements:
//!
//! * **forward** (elements): A derives `α, β` (uniform, `n·s` each) from its seed; B derives `π`
//!   (a permutation of the items composed with one of the elements inside each,
//!   `element_order`) from its own seed and receives `Δ = π(α) + β`. A sends `x_A + α`; B's
//!   share of `π(x)` is `π(x_A + α + x_B) − Δ`, A's is `β`.
//! * **back** (items), independent of the forward one: A derives `α', β'` (`n` each), B receives
//!   `Δ' = π⁻¹(α') + β'`. A sends `y_A + α'` (its share in `π`'s item order); B's share of `y`
//!   in natural order is `π⁻¹(y_A + α' + y_B) − Δ'`, A's is `β'`.
//!
//! Every message a server sees is uniform on its own (`α`, `α'` are one-time pads known to the
//! user and A only). Reusing the forward correlation backwards would hand B `x` (it would know
//! `π` and both pads' images), hence the second one.

use std::fmt;

use tessera_field::{Purpose, Seed, seed::os_rng, zt};
use tessera_model::nonlinear::NonlinearLayer;
use zeroize::Zeroize;

use super::Layout;
use super::nonlinear::Halves;
use crate::error::{Result, Violation};
use crate::masks::element_order;
use crate::wire::{Reader, put_elements};

/// Which of a half's two correlations a pad belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Natural element order to `π`'s.
    Forward,
    /// `π`'s item order back to the natural one.
    Back,
}

/// Which of the key owner's two values of a correlation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The pad `α` it adds to what it sends.
    Pad,
    /// Its share `β` of the result.
    Share,
}

/// The key owner's pad or share of the correlation of the half that server `owner` (0 or 1)
/// owns, `len` values, from its seed: a stream of its own per layer, half, direction and part.
pub(crate) fn owner_values(
    seed: &Seed,
    node: u32,
    owner: usize,
    direction: Direction,
    part: Part,
    len: usize,
) -> Vec<u64> {
    let index = 2 * owner as u32 + u32::from(direction == Direction::Back);
    let purpose = match part {
        Part::Pad => Purpose::CorrelationPad,
        Part::Share => Purpose::CorrelationShare,
    };
    zt::random_vec(&mut seed.derive_indexed(purpose, node, index), len)
}

/// The masker's order `π` of a half of `items` items of `arity` elements, from its seed:
/// `order[q]` is the element (half-local, `item · arity + e`) at position `q`.
pub(crate) fn permutation(seed: &Seed, node: u32, items: usize, arity: usize) -> Vec<u32> {
    element_order(&mut seed.derive(Purpose::Permutation, node), items, arity)
}

/// What the user sends one server for a query ([`CORRELATIONS`](super::CORRELATIONS)): the
/// layout and, for the hidden layout, the server's seed (its pads as key owner, its `π` as
/// masker) and per nonlinear layer the `Δ` and `Δ'` of the half it masks. Redacted in `Debug`,
/// wiped on drop.
pub struct Correlations {
    layout: Layout,
    seed: Option<Seed>,
    /// Per nonlinear layer: `Δ` (one value per element of the masked half, in `π`'s order).
    forward: Vec<Vec<u64>>,
    /// Per nonlinear layer: `Δ'` (one value per item of the masked half, natural order).
    back: Vec<Vec<u64>>,
}

impl fmt::Debug for Correlations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Correlations").field("layout", &self.layout).finish_non_exhaustive()
    }
}

impl Drop for Correlations {
    fn drop(&mut self) {
        self.forward.iter_mut().chain(&mut self.back).for_each(Zeroize::zeroize);
    }
}

impl Correlations {
    /// The user's dealing for both servers (`[S1, S2]`), fresh from a CSPRNG: for `layers` on a
    /// batch of `batch` images with `slots` items per ciphertext.
    pub fn deal(layers: &[NonlinearLayer], batch: usize, slots: usize, layout: Layout) -> [Self; 2] {
        if layout == Layout::Seed {
            return [0, 1].map(|_| Self { layout, seed: None, forward: Vec::new(), back: Vec::new() });
        }
        let mut rng = os_rng();
        let seeds = [Seed::random(&mut rng), Seed::random(&mut rng)];
        let mut dealt = [0, 1].map(|_| (Vec::with_capacity(layers.len()), Vec::with_capacity(layers.len())));
        for layer in layers {
            let halves = Halves::new(layer, batch, slots);
            for owner in 0..2 {
                let masker = 1 - owner;
                let (n, s) = (halves.half(owner).len(), layer.arity());
                let order = permutation(&seeds[masker], layer.node, n, s);
                let values =
                    |direction, part, len| owner_values(&seeds[owner], layer.node, owner, direction, part, len);
                let mut alpha = values(Direction::Forward, Part::Pad, n * s);
                let mut forward = values(Direction::Forward, Part::Share, n * s);
                for (d, &q) in forward.iter_mut().zip(&order) {
                    *d = zt::add(*d, alpha[q as usize]);
                }
                alpha.zeroize();
                let mut alpha = values(Direction::Back, Part::Pad, n);
                let mut back = values(Direction::Back, Part::Share, n);
                for (position, window) in order.chunks_exact(s).enumerate() {
                    let item = window[0] as usize / s;
                    back[item] = zt::add(back[item], alpha[position]);
                }
                alpha.zeroize();
                dealt[masker].0.push(forward);
                dealt[masker].1.push(back);
            }
        }
        let [a, b] = seeds;
        let [(f0, b0), (f1, b1)] = dealt;
        [Self { layout, seed: Some(a), forward: f0, back: b0 }, Self { layout, seed: Some(b), forward: f1, back: b1 }]
    }

    /// The layout these correlations serve.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The server's seed (hidden layout).
    pub(crate) fn seed(&self) -> Option<&Seed> {
        self.seed.as_ref()
    }

    /// `Δ` and `Δ'` of the `index`-th nonlinear layer's masked half (hidden layout).
    pub(crate) fn masked_half(&self, index: usize) -> Option<(&[u64], &[u64])> {
        Some((self.forward.get(index)?, self.back.get(index)?))
    }

    /// The [`CORRELATIONS`](super::CORRELATIONS) payload: the layout (u32: 0 hidden, 1 seed);
    /// for the hidden layout the 32-byte seed, then per layer `Δ` and `Δ'`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let values: usize = self.forward.iter().chain(&self.back).map(Vec::len).sum();
        let mut out = Vec::with_capacity(36 + 8 * values);
        out.extend_from_slice(&u32::from(self.layout == Layout::Seed).to_le_bytes());
        if let Some(seed) = &self.seed {
            out.extend_from_slice(seed.expose_bytes());
        }
        for (f, b) in self.forward.iter().zip(&self.back) {
            put_elements(&mut out, f);
            put_elements(&mut out, b);
        }
        out
    }

    /// Reads the payload that server `index` (1 or 2) received from `peer` for `layers` on a
    /// batch of `batch` images with `slots` items per ciphertext.
    pub fn parse(
        peer: &str,
        payload: &[u8],
        index: usize,
        layers: &[NonlinearLayer],
        batch: usize,
        slots: usize,
    ) -> Result<Self> {
        let mut r = Reader::new(payload, peer, "correlations");
        let layout = match r.u32()? {
            0 => Layout::Hidden,
            1 => Layout::Seed,
            other => return Err(r.error(Violation::UnknownTag { field: "layout", value: other })),
        };
        let mut dealt = Self { layout, seed: None, forward: Vec::new(), back: Vec::new() };
        if layout == Layout::Hidden {
            dealt.seed = Some(r.seed()?);
            r.check_range("server index", index, 1..=2)?;
            let masked = 2 - index;
            for layer in layers {
                let n = Halves::new(layer, batch, slots).half(masked).len();
                dealt.forward.push(r.elements(n * layer.arity())?);
                dealt.back.push(r.elements(n)?);
            }
        }
        r.end()?;
        Ok(dealt)
    }
}

#[cfg(test)]
mod tests {
    use tessera_field::kernels::{ImageShape, Window2d};
    use tessera_model::nonlinear::NonlinearKind;

    use super::*;

    fn layers() -> Vec<NonlinearLayer> {
        let (input, pooled) = (ImageShape::new(4, 8, 8), ImageShape::new(4, 4, 4));
        let window = Window2d::square(2, 2);
        vec![
            NonlinearLayer { node: 2, kind: NonlinearKind::Relu, input, output: input, shift: 8 },
            NonlinearLayer {
                node: 5,
                kind: NonlinearKind::MaxPool { window, relu: true },
                input,
                output: pooled,
                shift: 0,
            },
        ]
    }

    /// Both correlations of every half work: from the parties' own pads and messages, the
    /// masker's share plus the owner's is the permuted input, then the natural-order output.
    #[test]
    fn shares_of_the_permuted_values_and_back() {
        let (batch, slots) = (3, 128);
        let layers = layers();
        let dealt = Correlations::deal(&layers, batch, slots, Layout::Hidden);
        let dealt: Vec<Correlations> = dealt
            .iter()
            .enumerate()
            .map(|(j, c)| Correlations::parse("user", &c.to_bytes(), j + 1, &layers, batch, slots).unwrap())
            .collect();
        let mut rng = os_rng();
        for (index, layer) in layers.iter().enumerate() {
            let halves = Halves::new(layer, batch, slots);
            for owner in 0..2 {
                let (a, b) = (&dealt[owner], &dealt[1 - owner]);
                let (n, s) = (halves.half(owner).len(), layer.arity());
                assert!(n > 0);
                let x = zt::random_vec(&mut rng, n * s);
                let x_a = zt::random_vec(&mut rng, n * s);
                let x_b: Vec<u64> = x.iter().zip(&x_a).map(|(&v, &a)| zt::sub(v, a)).collect();
                let values =
                    |direction, part, len| owner_values(a.seed().unwrap(), layer.node, owner, direction, part, len);
                let (alpha, beta) =
                    (values(Direction::Forward, Part::Pad, n * s), values(Direction::Forward, Part::Share, n * s));
                let order = permutation(b.seed().unwrap(), layer.node, n, s);
                let (delta, delta_back) = b.masked_half(index).unwrap();
                for (q, &e) in order.iter().enumerate() {
                    let e = e as usize;
                    let sent = zt::add(x_a[e], alpha[e]);
                    let b_share = zt::sub(zt::add(sent, x_b[e]), delta[q]);
                    assert_eq!(zt::add(b_share, beta[q]), x[e]);
                }
                // Back: an output per item, shared in π's item order.
                let y = zt::random_vec(&mut rng, n);
                let (alpha, beta) = (values(Direction::Back, Part::Pad, n), values(Direction::Back, Part::Share, n));
                for (position, window) in order.chunks_exact(s).enumerate() {
                    let item = window[0] as usize / s;
                    let y_a = zt::random(&mut rng);
                    let y_b = zt::sub(y[item], y_a);
                    let natural = zt::sub(zt::add(zt::add(y_a, alpha[position]), y_b), delta_back[item]);
                    assert_eq!(zt::add(natural, beta[item]), y[item]);
                }
            }
        }
        // The two servers' seeds differ, and every query deals afresh.
        assert_ne!(dealt[0].seed(), dealt[1].seed());
        let again = Correlations::deal(&layers, batch, slots, Layout::Hidden);
        assert_ne!(again[0].masked_half(0).unwrap().0, dealt[0].masked_half(0).unwrap().0);
    }

    /// The seed layout deals nothing; malformed payloads are refused.
    #[test]
    fn seed_layout_and_refusals() {
        let layers = layers();
        let [a, _] = Correlations::deal(&layers, 1, 64, Layout::Seed);
        assert_eq!(a.to_bytes(), 1u32.to_le_bytes());
        let parsed = Correlations::parse("user", &a.to_bytes(), 1, &layers, 1, 64).unwrap();
        assert_eq!(parsed.layout(), Layout::Seed);
        assert!(parsed.masked_half(0).is_none());
        let [h, _] = Correlations::deal(&layers, 1, 64, Layout::Hidden);
        let bytes = h.to_bytes();
        assert!(Correlations::parse("user", &bytes[..bytes.len() - 8], 1, &layers, 1, 64).is_err());
        assert!(Correlations::parse("user", &bytes, 1, &layers, 2, 64).is_err());
        assert!(Correlations::parse("user", &2u32.to_le_bytes(), 1, &layers, 1, 64).is_err());
        assert_eq!(format!("{h:?}"), "Correlations { layout: Hidden, .. }");
    }
}
