//! What every holder derives for one nonlinear layer from the query seed: the layer's masks
//! (shared by all holders) and its own zero-sum re-randomizers.

use tessera_field::{FixedPointParams, Purpose, Seed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use zeroize::Zeroize;

use crate::masks::{ComparisonMasks, MaskShape, MaskSources};

/// Everything holder `index` derives for one layer before its input is known: the layer's masks
/// and the holder's re-randomizers. Wiped on drop.
pub(crate) struct HolderSecrets {
    /// The layer's masks (the same at every holder).
    pub masks: ComparisonMasks,
    /// This holder's re-randomizer of `z`, one per comparison.
    pub rho: Vec<u64>,
    /// This holder's re-randomizer of `w`, one per position.
    pub rho_w: Vec<u64>,
}

impl HolderSecrets {
    /// Derives holder `index`'s (of `holders`) secrets for `layer` on a batch of `batch`.
    pub fn derive(
        seed: &Seed,
        layer: &NonlinearLayer,
        batch: usize,
        params: &FixedPointParams,
        index: usize,
        holders: usize,
    ) -> Self {
        let masks = layer_masks(seed, layer, batch, params);
        let (rho, rho_w) = rerandomizers(seed, layer.node, index, holders, masks.k.len(), masks.order.len());
        Self { masks, rho, rho_w }
    }
}

impl Drop for HolderSecrets {
    fn drop(&mut self) {
        self.rho.zeroize();
        self.rho_w.zeroize();
    }
}

/// The layer's masks for a batch: every holder derives the same from the same seed, each layer
/// and purpose from its own stream.
pub(crate) fn layer_masks(
    seed: &Seed,
    layer: &NonlinearLayer,
    batch: usize,
    params: &FixedPointParams,
) -> ComparisonMasks {
    let node = layer.node;
    let src = MaskSources {
        order: &mut seed.derive(Purpose::Permutation, node),
        k: &mut seed.derive(Purpose::MultiplicativeMask, node),
        e: &mut seed.derive(Purpose::Offset, node),
        r: &mut seed.derive(Purpose::TruncationMask, node),
    };
    let (items, arity, kappa) = (batch * layer.items(), layer.arity(), params.mask_bits());
    ComparisonMasks::draw(
        src,
        items,
        MaskShape { arity, clamps: layer.compares_with_zero(), kappa, r_bits: zt::LOG2_T - 1 },
    )
}

/// Holder `index`'s (1-based, of `holders`) re-randomizers of its `z` and `w` messages
/// (`n_z` and `n_w` values): uniform, independent of each other, and summing to zero over the
/// holders (holder 1 takes minus the others', which every holder can derive from the seed).
pub(crate) fn rerandomizers(
    seed: &Seed,
    node: u32,
    index: usize,
    holders: usize,
    n_z: usize,
    n_w: usize,
) -> (Vec<u64>, Vec<u64>) {
    let draw = |purpose, j: usize, n| zt::random_vec(&mut seed.derive_indexed(purpose, node, j as u32), n);
    let (z, w) = (Purpose::Rerandomizer, Purpose::TruncationRerandomizer);
    if index > 1 {
        return (draw(z, index, n_z), draw(w, index, n_w));
    }
    let (mut rho, mut rho_w) = (vec![0u64; n_z], vec![0u64; n_w]);
    for j in 2..=holders {
        zt::sub_assign(&mut rho, &draw(z, j, n_z));
        zt::sub_assign(&mut rho_w, &draw(w, j, n_w));
    }
    (rho, rho_w)
}

#[cfg(test)]
mod tests {
    use tessera_field::kernels::ImageShape;
    use tessera_field::seed::os_rng;
    use tessera_model::nonlinear::NonlinearKind;

    use super::*;

    fn relu(node: u32) -> NonlinearLayer {
        let shape = ImageShape::new(4, 8, 8);
        NonlinearLayer { node, kind: NonlinearKind::Relu, input: shape, output: shape, shift: 8 }
    }

    /// Two layers of one query, and the same layer of two queries, never share a permutation
    /// or masks; holders of the same seed derive the same ones; masks stay in their ranges.
    #[test]
    fn masks_are_fresh_per_layer_and_query_and_shared_by_the_holders() {
        let params = FixedPointParams::new(6, 8, 19).unwrap();
        let mut rng = os_rng();
        let (a, b) = (Seed::random(&mut rng), Seed::random(&mut rng));
        let l1 = layer_masks(&a, &relu(1), 2, &params);
        let l3 = layer_masks(&a, &relu(3), 2, &params);
        let other_query = layer_masks(&b, &relu(1), 2, &params);
        let same = layer_masks(&a, &relu(1), 2, &params);
        assert_eq!((&l1.order, &l1.k, &l1.e, &l1.r), (&same.order, &same.k, &same.e, &same.r));
        assert_eq!(l1.comparisons, [crate::masks::Comparison::Sign(0)]);
        for m in [&l3, &other_query] {
            assert_ne!(l1.order, m.order);
            assert!(l1.k.iter().zip(&m.k).filter(|(x, y)| x == y).count() < 16);
            assert!(l1.r.iter().zip(&m.r).all(|(x, y)| x != y));
        }
        let mut sorted = l1.order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..512).collect::<Vec<u32>>(), "a permutation of all items of the batch");
        let kappa = params.mask_bits();
        assert!(l1.k.iter().all(|&k| (1..=1u64 << kappa).contains(&k)));
        assert!(l1.r.iter().all(|&r| r < 1u64 << (zt::LOG2_T - 1)));
    }

    /// The re-randomizers sum to zero over the holders, and no two are alike.
    #[test]
    fn rerandomizers_are_zero_sum_and_independent() {
        let seed = Seed::random(&mut os_rng());
        for holders in [2, 3, 8] {
            let all: Vec<_> = (1..=holders).map(|j| rerandomizers(&seed, 5, j, holders, 300, 300)).collect();
            let (mut z, mut w) = (vec![0u64; 300], vec![0u64; 300]);
            for (rho, rho_w) in &all {
                zt::add_assign(&mut z, rho);
                zt::add_assign(&mut w, rho_w);
                assert!(rho.iter().zip(rho_w).all(|(a, b)| a != b));
            }
            assert!(z.iter().chain(&w).all(|&v| v == 0), "{holders} holders");
        }
    }
}
