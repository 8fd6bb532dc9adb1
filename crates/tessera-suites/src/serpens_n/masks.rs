//! The masks every holder derives for one nonlinear layer from the query seed.

use rand::seq::SliceRandom;
use rand_core::RngCore;
use tessera_field::{FixedPointParams, Purpose, Seed, zt};
use tessera_model::nonlinear::NonlinearLayer;
use zeroize::Zeroize;

/// Permutation and masks of one layer for a batch.
pub(crate) struct LayerMasks {
    /// `perm[p]` is the item (over the flattened batch) sent at position `p`.
    pub perm: Vec<u32>,
    /// Multiplicative mask per position, uniform in `[1, 2^κ]`.
    pub k: Vec<u64>,
    /// Truncation mask per element (`position × arity + e`), uniform in `[0, 2^(ℓx+σ))`.
    pub r: Vec<u64>,
}

impl LayerMasks {
    /// Derives the layer's masks: every holder gets the same from the same seed, and each
    /// layer and purpose has its own stream.
    pub fn derive(seed: &Seed, layer: &NonlinearLayer, batch: usize, params: &FixedPointParams) -> Self {
        let items = batch * layer.items();
        let mut perm: Vec<u32> = (0..items as u32).collect();
        perm.shuffle(&mut seed.derive(Purpose::Permutation, layer.node));
        let kappa = params.mask_bits();
        let mut rng = seed.derive(Purpose::MultiplicativeMask, layer.node);
        let k = (0..items).map(|_| (rng.next_u64() >> (64 - kappa)) + 1).collect();
        let r_bits = zt::LOG2_T - 1;
        let mut rng = seed.derive(Purpose::TruncationMask, layer.node);
        let r = (0..items * layer.arity()).map(|_| rng.next_u64() >> (64 - r_bits)).collect();
        Self { perm, k, r }
    }
}

impl Drop for LayerMasks {
    fn drop(&mut self) {
        self.perm.zeroize();
        self.k.zeroize();
        self.r.zeroize();
    }
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
        let l1 = LayerMasks::derive(&a, &relu(1), 2, &params);
        let l3 = LayerMasks::derive(&a, &relu(3), 2, &params);
        let other_query = LayerMasks::derive(&b, &relu(1), 2, &params);
        let same = LayerMasks::derive(&a, &relu(1), 2, &params);
        assert_eq!((&l1.perm, &l1.k, &l1.r), (&same.perm, &same.k, &same.r));
        for m in [&l3, &other_query] {
            assert_ne!(l1.perm, m.perm);
            assert!(l1.k.iter().zip(&m.k).filter(|(x, y)| x == y).count() < 4);
            assert!(l1.r.iter().zip(&m.r).all(|(x, y)| x != y));
        }
        let mut sorted = l1.perm.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..512).collect::<Vec<u32>>(), "a permutation of all items of the batch");
        let kappa = params.mask_bits();
        assert!(l1.k.iter().all(|&k| (1..=1u64 << kappa).contains(&k)));
        assert!(l1.r.iter().all(|&r| r < 1u64 << (zt::LOG2_T - 1)));
    }
}
