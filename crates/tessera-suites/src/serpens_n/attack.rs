//! The central server's best attacks on what it receives, shipped so that tests (and anyone
//! auditing a deployment) can run them on a recorded view. Each returns the values it claims to
//! have recovered; the tests compare them with the truth.
//!
//! * [`ratio`]: one holder's two messages `a = k·x_j`, `b = x_j` give `k = a / b` and then every
//!   `x = z / k`. Defeated by the holders' independent re-randomizers (each message is uniform).
//! * [`window_gcd`]: `gcd(z_1, …, z_s) = k · gcd(x)` over a max-pool window gives `k` and the
//!   window's values when `z = k·x` exactly. Defeated by the offsets `e ∈ [0, k)`.
//! * [`inside_mask_range`]: how many single-message values look like masked activations rather
//!   than uniform field elements.

use tessera_field::zt;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::TappedFrame;

use super::MASKED;

/// What `S0` received for one nonlinear layer: every holder's message, in the order received.
#[derive(Clone)]
pub struct LayerView {
    /// The layer's node.
    pub node: u32,
    /// Elements per item.
    pub arity: usize,
    /// Per holder message, its values `z_j, w_j` interleaved per position.
    pub messages: Vec<Vec<u64>>,
}

impl std::fmt::Debug for LayerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerView").field("node", &self.node).field("messages", &self.messages.len()).finish()
    }
}

impl LayerView {
    /// Groups recorded frames by layer: every `MASKED` frame of the nonlinear `layers`.
    pub fn from_frames(frames: &[TappedFrame], layers: &[NonlinearLayer]) -> Vec<LayerView> {
        layers
            .iter()
            .map(|l| LayerView {
                node: l.node,
                arity: l.arity(),
                messages: frames
                    .iter()
                    .filter(|f| f.header.kind == MASKED && f.header.layer == l.node)
                    .map(|f| f.payload.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8"))).collect())
                    .collect(),
            })
            .filter(|v| !v.messages.is_empty())
            .collect()
    }

    /// Message `j`'s `z` part.
    pub fn z_of(&self, j: usize) -> Vec<u64> {
        self.messages[j].iter().step_by(2).copied().collect()
    }

    /// Message `j`'s `w` part.
    pub fn w_of(&self, j: usize) -> Vec<u64> {
        self.messages[j].iter().skip(1).step_by(2).copied().collect()
    }

    /// The sums over the holders: `z = π(k ⊙ x + e)` and `w = π(x + R)`.
    pub fn sums(&self) -> (Vec<u64>, Vec<u64>) {
        let n = self.messages.first().map_or(0, |m| m.len() / 2);
        let (mut z, mut w) = (vec![0u64; n], vec![0u64; n]);
        for j in 0..self.messages.len() {
            zt::add_assign(&mut z, &self.z_of(j));
            zt::add_assign(&mut w, &self.w_of(j));
        }
        (z, w)
    }
}

/// The ratio attack on holder `j`'s message: per position, `k = z_j / w_j`; where that is a
/// possible mask (`1 ≤ k ≤ 2^κ`), the claimed activation `⌊z / k⌋` of the summed `z`.
pub fn ratio(view: &LayerView, j: usize, kappa: u32) -> Vec<Option<i64>> {
    let (z, _) = view.sums();
    let (a, b) = (view.z_of(j), view.w_of(j));
    let inverses = zt::inv_all(&b.iter().map(|&v| if v == 0 { 1 } else { v }).collect::<Vec<_>>());
    let inverses = inverses.expect("nonzero");
    a.iter()
        .zip(&inverses)
        .zip(&z)
        .map(|((&a, &inv), &z)| {
            let k = zt::mul(a, inv);
            (1..=1u64 << kappa).contains(&k).then(|| zt::to_i64(z).div_euclid(k as i64))
        })
        .collect()
}

/// The gcd attack on every window of the summed `z`: where `g = gcd(z_1, …, z_s)` is a possible
/// mask (`2 ≤ g ≤ 2^κ`), the claimed window `z / g`.
pub fn window_gcd(view: &LayerView, kappa: u32) -> Vec<Option<Vec<i64>>> {
    let (z, _) = view.sums();
    z.chunks_exact(view.arity)
        .map(|window| {
            let values: Vec<i64> = window.iter().map(|&v| zt::to_i64(v)).collect();
            let g = values.iter().fold(0u64, |g, &v| gcd(g, v.unsigned_abs()));
            (2..=1u64 << kappa).contains(&g).then(|| values.iter().map(|&v| v / g as i64).collect())
        })
        .collect()
}

/// The share of `values` whose signed representative lies below `2^(log2 t − 1)` in magnitude,
/// where every masked activation `k·x + e` or `x + R` lies: about one half for uniform field
/// elements, one for a message that is not re-randomized.
pub fn inside_mask_range(values: &[u64]) -> f64 {
    let limit = 1i64 << (zt::LOG2_T - 1);
    values.iter().filter(|&&v| zt::to_i64(v).abs() < limit).count() as f64 / values.len().max(1) as f64
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
