//! The central server `S0` attacks its exact view of serpensN queries: every frame it receives,
//! one by one, recorded on its in-memory channels. Each attack is first run on messages built the
//! way the first protocol built them (no re-randomizers, `k` uniform, no offsets), where it must
//! succeed (so these tests can fail), then on the real view, where it must recover nothing
//! beyond the leakage docs/suites/serpens-n.md states.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{encoded, runtime};
use rand::Rng;
use rand::RngCore;
use tessera::LoadedModel;
use tessera::dataset::Dataset;
use tessera::input::normalize;
use tessera_field::seed::os_rng;
use tessera_field::zt;
use tessera_model::nonlinear::NonlinearLayer;
use tessera_net::Wiretap;
use tessera_suites::serpens_n::attack::{Comparison, LayerView, inside_mask_range, known_value, ratio, window_gcd};
use tessera_suites::serpens_n::{InMemoryRun, run_in_memory};

/// Images of different classes (test records 0–3 are a 7, a 2, a 1 and a 0).
const BATCH: usize = 4;
const HOLDERS: usize = 3;

struct Case {
    layers: Vec<NonlinearLayer>,
    /// The reference's input to the first nonlinear layer, gathered window by window: exactly
    /// what the secure run masks there (no truncation has happened yet).
    first_windows: Vec<Vec<i64>>,
    /// `S0`'s view, layer by layer.
    views: Vec<LayerView>,
    kappa: u32,
}

fn case() -> Case {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", BATCH);
    let layers = fixed.nonlinear_layers();
    let mut runner = tessera_model::runner::Runner::new(fixed.clone(), input.clone(), BATCH, true);
    let first = runner.advance().expect("a nonlinear layer");
    let x = runner.pending_input().to_vec();
    let gather = first.gather();
    let first_windows = (0..BATCH)
        .flat_map(|b| {
            let x = &x[b * first.input.len()..(b + 1) * first.input.len()];
            gather
                .chunks(first.arity())
                .map(|w| w.iter().map(|&i| zt::to_i64(x[i as usize])).collect())
                .collect::<Vec<_>>()
        })
        .collect();
    let tap = Wiretap::new();
    let settings = InMemoryRun {
        holders: HOLDERS,
        timeout: Duration::from_secs(60),
        central_view: Some(tap.clone()),
        layer_shares: None,
    };
    runtime(4).block_on(run_in_memory(&fixed, &input, BATCH, &settings)).unwrap();
    let views = LayerView::from_frames(&tap.frames(), &layers);
    assert_eq!(views.len(), layers.len(), "a view of every nonlinear layer");
    assert!(views.iter().all(|v| v.messages.len() == HOLDERS), "one message per holder and layer");
    let kappa = fixed.params().mask_bits();
    Case { layers, first_windows, views, kappa }
}

/// Messages for the first layer built with one `k` per window, as earlier designs did, each
/// element encoded as a sign comparison encodes it (`2x + 1`): holder `j` sends
/// `k·2x_j (+ k + e)` and `x_j` (holder 1 `x_1 + R`) per element, windows in their natural
/// order. Without `offsets` and re-randomizers this is the first protocol (`k` uniform in
/// `[1, 2^κ]`, no offset); with `offsets`, `e ∈ [0, k)` is added once and `log2 k` is uniform.
fn one_k_per_window_view(c: &Case, offsets: bool) -> LayerView {
    let mut rng = os_rng();
    let arity = c.layers[0].arity();
    let (mut z, mut w) = (vec![Vec::new(); HOLDERS], vec![Vec::new(); HOLDERS]);
    for window in &c.first_windows {
        let k = if offsets {
            (((rng.next_u64() >> 12) as f64 / (1u64 << 52) as f64 * c.kappa as f64).exp2() as u64).max(1)
        } else {
            rng.random_range(1..=1u64 << c.kappa)
        };
        for &x in window {
            let mut shares = zt::random_vec(&mut rng, HOLDERS - 1);
            let sum = shares.iter().fold(0, |a, &s| zt::add(a, s));
            shares.insert(0, zt::sub(zt::from_i64(x), sum));
            let r = rng.random_range(0..1u64 << (zt::LOG2_T - 1));
            // Each element encoded as a sign comparison encodes it: `k·(2x + 1) (+ e)`.
            let (scale, constant) = (2, k + if offsets { rng.random_range(0..k) } else { 0 });
            for (j, &s) in shares.iter().enumerate() {
                z[j].push(zt::add(zt::mul(k, zt::mul(scale, s)), if j == 0 { constant } else { 0 }));
                w[j].push(if j == 0 { zt::add(s, r) } else { s });
            }
        }
    }
    let messages = z.into_iter().zip(w).map(|(z, w)| z.into_iter().chain(w).collect()).collect();
    let comparisons = (0..arity as u8).map(Comparison::Sign).collect();
    LayerView { node: c.layers[0].node, arity, comparisons, messages }
}

/// The first layer's input on a blank image, per element: what the model's owner knows the
/// background gives.
fn background_values() -> Vec<i64> {
    let m = LoadedModel::load(&common::repo().join("models/minionn-mnist.onnx")).unwrap();
    let set = Dataset::open(&common::repo().join("data/mnist-test-200-images.idx")).unwrap();
    let blank = vec![0u8; set.shape.len()];
    let x = normalize(&blank, set.shape, m.meta());
    let fixed = m.fixed().unwrap();
    let mut runner = tessera_model::runner::Runner::new(fixed.clone(), fixed.encode_input(&x, 1).unwrap(), 1, true);
    runner.advance().unwrap();
    let mut values: Vec<i64> = runner.pending_input().iter().map(|&v| zt::to_i64(v)).collect();
    values.sort_unstable();
    values.dedup();
    values
}

/// Every activation of the first layer, and every window as a sorted list.
fn truths(c: &Case) -> (HashSet<i64>, HashSet<Vec<i64>>) {
    let values = c.first_windows.iter().flatten().copied().collect();
    let windows = c.first_windows.iter().map(|w| sorted(w.clone())).collect();
    (values, windows)
}

fn sorted(mut v: Vec<i64>) -> Vec<i64> {
    v.sort_unstable();
    v
}

/// Holder `j`'s two messages: `k = z_j / w_j`, then `x = z / k`. On the first protocol's messages
/// this recovers every activation; on the real view no ratio is even a possible mask.
#[test]
fn attack_ratio_of_a_holders_two_messages_recovers_nothing() {
    let c = case();
    let (values, _) = truths(&c);
    let old = one_k_per_window_view(&c, false);
    let exact_old: usize =
        (1..HOLDERS).map(|j| ratio(&old, j, c.kappa).iter().flatten().filter(|v| values.contains(v)).count()).sum();
    let n_old = (HOLDERS - 1) * old.messages[0].len() / 2;
    assert!(exact_old * 100 >= n_old * 99, "first protocol: {exact_old} of {n_old} recovered");
    for view in &c.views {
        for j in 0..HOLDERS {
            let claims = ratio(view, j, c.kappa);
            let hits = claims.iter().flatten().count();
            // A uniform ratio is a possible mask with probability 2^κ/t ≈ 2^-20 per position.
            assert!(
                hits <= 2,
                "layer {}, holder {}: {hits} of {} ratios are possible masks",
                view.node,
                j + 1,
                claims.len()
            );
            if view.node == c.layers[0].node {
                // A chance ratio in range gives a small claim, which may equal some activation.
                let exact = claims.iter().flatten().filter(|v| values.contains(v)).count();
                assert!(exact <= 2, "holder {}: {exact} activations recovered", j + 1);
            }
        }
    }
    println!("ratio attack: first protocol {exact_old} of {n_old} activations; real view at most chance");
}

/// `gcd(z_1, …, z_s)` per max-pool window: on `z = k·x` it gives `k·gcd(x)`, hence the exact
/// window wherever `gcd(x) = 1` (about half of MiniONN-MNIST's first-layer windows); with offsets, (almost) no window's gcd is a possible mask with a plausible quotient.
#[test]
fn attack_gcd_per_window_recovers_nothing() {
    let c = case();
    let (_, windows) = truths(&c);
    let old = one_k_per_window_view(&c, false);
    let claims_old = window_gcd(&old, c.kappa);
    let exact_old = claims_old.iter().flatten().filter(|w| windows.contains(&sorted(w.to_vec()))).count();
    assert!(exact_old * 100 >= claims_old.len() * 40, "first protocol: {exact_old} of {} windows", claims_old.len());
    let claims = window_gcd(&c.views[0], c.kappa);
    let exact = claims.iter().flatten().filter(|w| windows.contains(&sorted(w.to_vec()))).count();
    // The gcd finds a window only where `k` is tiny and every offset is a multiple of it:
    // probability Σ_k P(k)·k^-s = (log2(3/2)/16 + log2(4/3)/81 + …)/κ ≈ 0.045/κ ≈ 0.11% for
    // s = 4, κ = 40 (docs/suites/serpens-n.md).
    assert!(exact * 1000 <= claims.len() * 3, "{exact} of {} windows recovered", claims.len());
    println!("gcd attack: first protocol {exact_old} of {} windows; real view {exact}", claims_old.len());
}

/// Every single message `S0` receives is uniform over `Z_t`: half its values lie where masked
/// activations lie, and the top bits are flat. (The sums, which carry `z` and `w`, all lie
/// there: the check can tell.)
#[test]
fn attack_each_single_message_is_uniform() {
    let c = case();
    let (z, w) = c.views[0].sums();
    assert!(inside_mask_range(&z) > 0.999 && inside_mask_range(&w) > 0.999);
    for view in &c.views {
        for j in 0..HOLDERS {
            for part in [view.z_of(j), view.w_of(j)] {
                if part.len() < 2_000 {
                    continue;
                }
                let inside = inside_mask_range(&part);
                assert!((0.46..0.54).contains(&inside), "layer {}, holder {}: {inside}", view.node, j + 1);
                let mut bins = [0usize; 8];
                for &v in &part {
                    bins[(v as u128 * 8 / zt::T as u128) as usize] += 1;
                }
                let expected = part.len() as f64 / 8.0;
                let chi2: f64 = bins.iter().map(|&b| (b as f64 - expected).powi(2) / expected).sum();
                // 7 degrees of freedom: above 35.3 with probability 10^-5 (some 20 checks per run).
                assert!(chi2 < 35.3, "layer {}, holder {}: χ² {chi2:.1}, bins {bins:?}", view.node, j + 1);
            }
        }
    }
}

/// What the sums do leak, as the docs state it: signs exactly, and magnitudes only through
/// `log2 |z| = log2 |x| + log2 k` with `log2 k` uniform over `κ` bits.
#[test]
fn attack_magnitudes_from_the_sums_are_blurred_by_kappa_bits() {
    let c = case();
    let z = c.views[0].sign_sums();
    let x: Vec<i64> = c.first_windows.iter().flatten().copied().collect();
    // The multiset of signs is exact (z < 0 exactly when x < 0).
    let negative = |v: &[i64]| v.iter().filter(|&&v| v < 0).count();
    assert_eq!(negative(&z.iter().map(|&v| zt::to_i64(v)).collect::<Vec<_>>()), negative(&x));
    // Magnitudes: log2|z| − log2|x| spreads over [0, κ]; the attacker's best single guess of
    // log2|x| (log2|z| − κ/2) is within one bit for about 2/κ of the activations, not all.
    let spread = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let log_z: Vec<f64> = z.iter().map(|&v| zt::to_i64(v)).filter(|&v| v > 0).map(|v| (v as f64).log2()).collect();
    let log_x: Vec<f64> = x.iter().filter(|&&v| v > 0).map(|&v| (v as f64).log2()).collect();
    let added = spread(&log_z).powi(2) - spread(&log_x).powi(2);
    let uniform = (c.kappa as f64).powi(2) / 12.0;
    assert!((added - uniform).abs() < 0.15 * uniform, "added variance {added:.1}, uniform over κ bits {uniform:.1}");
}

/// A value the attacker knows inside a window (the first layer's response to the blank
/// background, from the model) pins the window's `k` when its elements share one — then every
/// element of the window comes out, digit values included. With a `k` per comparison, the same
/// attack recovers no window with a digit value.
#[test]
fn attack_a_known_value_in_a_window_pins_nothing() {
    let c = case();
    let (_, windows) = truths(&c);
    let known = background_values();
    let digit = |w: &Vec<i64>| w.iter().any(|v| known.binary_search(v).is_err());
    let exact = |view: &LayerView| {
        known_value(view, &known, c.kappa)
            .into_iter()
            .flatten()
            .filter(|w| digit(w) && windows.contains(&sorted(w.clone())))
            .count()
    };
    let shared = exact(&one_k_per_window_view(&c, true));
    let digit_windows = c.first_windows.iter().filter(|w| digit(w)).count();
    assert!(shared * 20 >= digit_windows, "one k per window: {shared} of {digit_windows} digit windows");
    let real = exact(&c.views[0]);
    assert!(real * 1000 <= digit_windows, "{real} of {digit_windows} digit windows recovered");
    println!(
        "known-value attack: one k per window {shared} of {digit_windows} digit windows; a k per comparison {real}"
    );
}

/// Ties and zeros do not show: a window whose values are all equal (the blank background) would
/// show every pair as non-negative if a tie compared as zero, and a zero input would give
/// `z = 0`. With every compared value made nonzero (`2x + 1`, and pairs tie-broken by a secret
/// order), "every pair non-negative" is a uniformly random order's chance, `1/s!`, whatever the
/// window holds, and no `z` is zero.
#[test]
fn attack_ties_and_zeros_do_not_show() {
    let c = case();
    let view = &c.views[0];
    let (z, _) = view.sums();
    let n = view.items();
    let comparisons = view.comparisons.len();
    let pairs: Vec<usize> = (0..comparisons).filter(|&i| matches!(view.comparisons[i], Comparison::Pair(..))).collect();
    let ordered = (0..n).filter(|&p| pairs.iter().all(|&i| zt::to_i64(z[p * comparisons + i]) >= 0)).count();
    let tied = c.first_windows.iter().filter(|w| w.iter().all(|&v| v == w[0])).count();
    let expected = n as f64 / 24.0;
    println!("ties: {ordered} windows look ordered, {expected:.0} expected by chance; {tied} windows are constant");
    assert!(tied as f64 > expected + 10.0 * expected.sqrt(), "the check could not tell: {tied} constant windows");
    assert!(
        (ordered as f64 - expected).abs() < 5.0 * expected.sqrt(),
        "{ordered} ordered windows, {expected:.0} by chance"
    );
    assert_eq!(z.iter().filter(|&&v| v == 0).count(), 0, "a compared value of zero");
}
