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
