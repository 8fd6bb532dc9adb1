//! Suite verify with client and cloud in this process: exact results on every shipped model,
//! every cheating cloud caught, recomputation on request, and what a curious cloud learns from
//! the frames it receives under each disguise (the `attack_` tests).

mod common;

use common::{SHIPPED, encoded, repo, runtime};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tessera::LoadedModel;
use tessera::input::normalize;
use tessera::model::cost::OpCount;
use tessera::model::fixed::{FixedModel, FixedOp};
use tessera_field::kernels::ConvKernel;
use tessera_field::kernels::im2col::Im2col;
use tessera_field::zt;
use tessera_net::Wiretap;
use tessera_suites::SuiteError;
use tessera_suites::verify::{
    Challenge, Cheat, ClientCost, ClientSettings, Cloud, DONE, Disguise, OFFLOAD, run_in_memory,
};

const STRICT: ClientSettings = ClientSettings {
    disguise: Disguise::Pad,
    challenge: Challenge::Field,
    repetitions: 1,
    recompute_on_failure: false,
};
const MONOMIAL: ClientSettings = ClientSettings { disguise: Disguise::MonomialInsecure, ..STRICT };

#[test]
fn results_equal_the_fixed_point_reference_exactly() {
    let rt = runtime(2);
    for &(model, evalset, n) in SHIPPED {
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        for settings in [STRICT, MONOMIAL] {
            let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
            let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, n, settings, 1, None)).unwrap();
            assert_eq!(outcome.logits, reference, "{model}, {:?}", settings.disguise);
            assert!(outcome.recomputed.is_empty());
            assert_eq!(outcome.reports.len(), 2);
            check_counts(model, &fixed, n, settings, &outcome.cost);
        }
    }
}

/// The client's counted operations against what each part must cost: one addition per padded
/// input element and per unpadded output element, one multiplication and one addition per input
/// and output element per challenge; the local model's multiplications are the imported model's
/// multiply-accumulates. The CPU parts fit in the total.
fn check_counts(model: &str, fixed: &FixedModel, n: usize, settings: ClientSettings, cost: &ClientCost) {
    let a = &cost.arithmetic;
    let linear: Vec<_> = (0..fixed.ops().len()).filter_map(|node| fixed.linear_kernel(node)).collect();
    let inputs: u64 = linear.iter().map(|k| k.geometry().input.len() as u64).sum::<u64>() * n as u64;
    let outputs: u64 = linear.iter().map(|k| k.geometry().output().unwrap().len() as u64).sum::<u64>() * n as u64;
    let macs =
        tessera::model::cost::total(&LoadedModel::load(&repo().join(format!("models/{model}.onnx"))).unwrap().merged)
            .macs;
    // Beyond the multiply-accumulates, the residual adds that rescale one input multiply.
    let lifted: u64 = (0..fixed.ops().len())
        .filter(|&node| matches!(fixed.ops()[node], FixedOp::Add { lift: Some(_) }))
        .map(|node| fixed.op_count(node).mul)
        .sum();
    assert_eq!(cost.local_model.mul, (macs + lifted) * n as u64, "{model}");
    match settings.disguise {
        Disguise::Pad => {
            assert_eq!(a.pad, OpCount { add: inputs, ..Default::default() }, "{model}");
            assert_eq!(a.unpad, OpCount { add: outputs, ..Default::default() }, "{model}");
            let per = inputs + outputs;
            assert_eq!(a.check, OpCount { mul: per, add: per, other: (n * linear.len()) as u64 }, "{model}");
            assert!(a.preprocess.mul >= macs * n as u64, "{model}: K·M is computed ahead");
        }
        Disguise::MonomialInsecure => assert_eq!(a.preprocess, OpCount::default(), "{model}"),
    }
    let c = &cost.cpu;
    assert!(c.pads + c.checks + c.unpad + c.local + c.transport <= c.total + std::time::Duration::from_micros(1));
}

#[test]
fn every_cheating_cloud_is_caught() {
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-cifar", "cifar10-test-200.bin", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    for cheat in [Cheat::FlipOne, Cheat::NoiseChannel, Cheat::Stale, Cheat::SwapChannels, Cheat::OtherInput] {
        for (trial, settings) in [STRICT, STRICT, MONOMIAL, MONOMIAL].into_iter().enumerate() {
            let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
            let err = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 2, None)).unwrap_err();
            assert!(matches!(err, SuiteError::VerificationFailed { layer: 0, .. }), "{cheat:?} trial {trial}: {err}");
        }
        // Asked to, the client recomputes what failed and still gets the exact result.
        let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
        let settings = ClientSettings { recompute_on_failure: true, ..STRICT };
        let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 2, None)).unwrap();
        assert_eq!(outcome.logits, reference, "{cheat:?}");
        let linear = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).count();
        assert_eq!(outcome.recomputed.len(), linear, "{cheat:?}: every layer caught");
    }
}

/// Real CIFAR-10 test images the attacks run on: 1,024 windows of 27 taps each per image at
/// MiniONN-CIFAR's first convolution.
const ATTACKED: usize = 8;

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

/// The fraction `p / q` (`q > 0`, `|p|, q ≤ √(t/2)`, lowest terms) congruent to `a` mod `t`, if
/// there is one (then it is unique): the extended Euclidean algorithm on `(t, a)`, stopped at the
/// first remainder at most `√(t/2)`.
fn rational_reconstruction(a: u64) -> Option<(i64, i64)> {
    let bound = (zt::T / 2).isqrt() as i128;
    // Both rows keep r ≡ s · a (mod t).
    let (mut r0, mut s0, mut r1, mut s1) = (zt::T as i128, 0i128, a as i128, 1i128);
    while r1 > bound {
        let q = r0 / r1;
        (r0, s0, r1, s1) = (r1, s1, r0 - q * r1, s0 - q * s1);
    }
    if s1.abs() > bound {
        return None;
    }
    let g = gcd(r1, s1);
    Some(((s1.signum() * r1 / g) as i64, (s1.abs() / g) as i64))
}

/// The window behind a column `c = s · x` (`s` unknown and nonzero, `x` small integers) up to one
/// integer factor: each ratio `c_i / c_k = x_i / x_k` is a small fraction, found by rational
/// reconstruction; scaled to integers they give the primitive vector `v` with `x = λ · v`.
/// `None` where some ratio is no small fraction (not the image of a small-integer window).
fn direction(column: &[u64]) -> Option<Vec<i64>> {
    let Some(k) = column.iter().position(|&c| c != 0) else {
        return Some(vec![0; column.len()]);
    };
    let inv = zt::inv(column[k]).expect("nonzero");
    let fractions: Vec<(i64, i64)> =
        column.iter().map(|&c| rational_reconstruction(zt::mul(c, inv))).collect::<Option<_>>()?;
    let lcm = fractions.iter().try_fold(1i128, |l, &(_, q)| (l / gcd(l, q as i128)).checked_mul(q as i128))?;
    fractions.iter().map(|&(p, q)| (p as i128).checked_mul(lcm / q as i128)?.try_into().ok()).collect()
}

/// Whether `window` can be an input window: every tap of channel `ch` (`taps` per channel) is one
/// of `encodings[ch]` or a padding zero.
fn fits(window: impl IntoIterator<Item = i64>, taps: usize, encodings: &[HashSet<i64>]) -> bool {
    window.into_iter().enumerate().all(|(i, x)| x == 0 || encodings[i / taps].contains(&x))
}

/// The factors `λ` that make `λ · v` an input window (`v` nonzero).
fn scalars(v: &[i64], taps: usize, encodings: &[HashSet<i64>]) -> Vec<i64> {
    let k = v.iter().position(|&x| x != 0).expect("a nonzero direction");
    let mut found: Vec<i64> = encodings[k / taps]
        .iter()
        .filter(|&&e| e != 0 && e % v[k] == 0)
        .map(|&e| e / v[k])
        .filter(|&l| fits(v.iter().map(|&x| l * x), taps, encodings))
        .collect();
    found.sort_unstable();
    found
}

/// The taps of a `c × kh × kw` window that overlap the next window along `axis` (0: down, 1:
/// right; stride 1), seen from the first window (`first`) or from the next: the same input values.
fn overlap(v: &[i64], [kh, kw]: [usize; 2], axis: usize, first: bool) -> Vec<i64> {
    let skip = usize::from(first);
    v.iter()
        .enumerate()
        .filter(|&(i, _)| {
            let (ky, kx) = (i / kw % kh, i % kw);
            let along = if axis == 0 { (ky, kh) } else { (kx, kw) };
            along.0 >= skip && along.0 + 1 - skip < along.1
        })
        .map(|(_, &x)| x)
        .collect()
}

/// `v` as `factor · key` with `key` primitive and its first nonzero entry positive; `None` for zero.
fn normalized(v: Vec<i64>) -> Option<(Vec<i64>, i64)> {
    let first = *v.iter().find(|&&x| x != 0)?;
    let g = v.iter().fold(0i128, |g, &x| gcd(g, x as i128)) as i64 * first.signum();
    Some((v.iter().map(|&x| x / g).collect(), g))
}

/// The windows (index, factor `f`) whose first and whose second half has one overlap shape.
type Halves = [Vec<(usize, i64)>; 2];

/// What a curious cloud makes of a batch's disguised columns of a `kernel` layer (`c = s · x` per
/// column, scales and order unknown), knowing the input encoding: the exact window of each column
/// it can pin down. Rational reconstruction gives every window `x = λ · v` up to its factor `λ`.
/// Overlapping windows hold the same input values: an overlap shape (`key`, up to scale) that
/// occurs exactly once on each side links two windows, `λ_a · f_a = λ_b · f_b`; over a connected
/// set of windows one factor remains, which the encoding pins (every tap one of its channel's
/// encoded pixel values). Then windows still open take the factor every settled window of the same
/// overlap shape agrees on, until nothing changes.
fn recover_windows(kernel: &ConvKernel, columns: &[Vec<u64>], encodings: &[HashSet<i64>]) -> Vec<Vec<Vec<i64>>> {
    let w = kernel.geometry().window;
    assert_eq!(w.stride, [1, 1], "the overlaps are written for stride 1");
    let taps = w.size();
    let dirs: Vec<Option<Vec<i64>>> = columns.iter().map(|c| direction(c)).collect();
    let fit = |j: usize, l: i64| fits(dirs[j].as_ref().expect("a direction").iter().map(|&x| l * x), taps, encodings);
    // Per overlap shape, the windows that have it as their first and as their second half.
    let mut groups: HashMap<(usize, Vec<i64>), Halves> = HashMap::new();
    for (j, v) in dirs.iter().enumerate() {
        let Some(v) = v else { continue };
        for axis in 0..2 {
            for (side, first) in [(0, true), (1, false)] {
                if let Some((key, f)) = normalized(overlap(v, w.kernel, axis, first)) {
                    groups.entry((axis, key)).or_default()[side].push((j, f));
                }
            }
        }
    }
    // Edges (b, f_a, f_b) of window a: the true factors satisfy λ_a · f_a = λ_b · f_b.
    let mut edges: Vec<Vec<(usize, i64, i64)>> = vec![Vec::new(); columns.len()];
    for [a, b] in groups.values() {
        if let ([(a, fa)], [(b, fb)]) = (a.as_slice(), b.as_slice()) {
            edges[*a].push((*b, *fa, *fb));
            edges[*b].push((*a, *fb, *fa));
        }
    }
    let mut lambda: Vec<Option<i64>> = vec![None; columns.len()];
    // Where a whole image fits a few factors (a coarse input encoding makes `x` and `2x` both
    // valid images when `x` has low contrast), each window's candidate factors.
    let mut alternatives: Vec<Vec<i64>> = vec![Vec::new(); columns.len()];
    let mut seen = vec![false; columns.len()];
    for root in 0..columns.len() {
        let Some(v) = dirs[root].as_ref().filter(|_| !seen[root]) else { continue };
        seen[root] = true;
        if v.iter().all(|&x| x == 0) {
            lambda[root] = Some(1);
            continue;
        }
        let mut member = vec![root];
        let mut i = 0;
        while i < member.len() {
            for &(b, _, _) in &edges[member[i]] {
                if !seen[b] {
                    seen[b] = true;
                    member.push(b);
                }
            }
            i += 1;
        }
        // Each candidate factor of `root` forces the others'; it stands if they are consistent.
        let solve = |l: i64| -> Option<HashMap<usize, i64>> {
            let mut factor = HashMap::from([(root, l)]);
            for &a in &member {
                for &(b, fa, fb) in &edges[a] {
                    let num = factor[&a] as i128 * fa as i128;
                    let lb = i64::try_from(num / fb as i128).ok().filter(|_| num % fb as i128 == 0)?;
                    if *factor.entry(b).or_insert(lb) != lb {
                        return None;
                    }
                }
            }
            member.iter().all(|&j| fit(j, factor[&j])).then_some(factor)
        };
        let solutions: Vec<_> =
            scalars(v, taps, encodings).into_iter().filter_map(solve).take(MAX_CANDIDATES + 1).collect();
        if let [factor] = &solutions[..] {
            factor.iter().for_each(|(&j, &l)| lambda[j] = Some(l));
        } else if (2..=MAX_CANDIDATES).contains(&solutions.len()) {
            for factor in &solutions {
                factor.iter().for_each(|(&j, &l)| alternatives[j].push(l));
            }
        } else {
            // Ambiguous or inconsistent: each window on its own, where its factor is unique.
            for &j in &member {
                if let [l] = scalars(dirs[j].as_ref().expect("a direction"), taps, encodings)[..] {
                    lambda[j] = Some(l);
                }
            }
        }
    }
    loop {
        let mut changed = false;
        for group in groups.values() {
            let members = || group.iter().flatten();
            let mut settled = members().filter_map(|&(j, f)| lambda[j].map(|l| l * f));
            let Some(t) = settled.next() else { continue };
            if settled.any(|u| u != t) {
                continue;
            }
            for &(j, f) in members() {
                if lambda[j].is_none() && t % f == 0 && fit(j, t / f) {
                    (lambda[j], changed) = (Some(t / f), true);
                }
            }
        }
        if !changed {
            break;
        }
    }
    let scaled = |v: &[i64], l: i64| v.iter().map(|&x| l * x).collect::<Vec<_>>();
    dirs.iter()
        .zip(lambda.into_iter().zip(alternatives))
        .map(|(v, (l, alt))| match (v, l) {
            (None, _) => Vec::new(),
            (Some(v), Some(l)) => vec![scaled(v, l)],
            (Some(v), None) => alt.into_iter().map(|l| scaled(v, l)).collect(),
        })
        .collect()
}

/// The most candidates per image the attack keeps: more would not be a recovery.
const MAX_CANDIDATES: usize = 4;

/// Per input channel, every value `model`'s input encoding gives a pixel byte: normalization and
/// scale are in the model file, which the cloud holds.
fn pixel_encodings(model: &str) -> Vec<HashSet<i64>> {
    let m = LoadedModel::load(&repo().join("models").join(format!("{model}.onnx"))).unwrap();
    let fixed = m.fixed().unwrap();
    let shape = fixed.input_shape();
    let plane = shape.plane();
    assert!(plane >= 256, "every byte value in one plane");
    let pixels: Vec<u8> = (0..shape.len()).map(|i| (i % plane % 256) as u8).collect();
    let encoded = fixed.encode_input(&normalize(&pixels, shape, m.meta()), 1).unwrap();
    (0..shape.c).map(|c| encoded[c * plane..][..256].iter().map(|&v| zt::to_i64(v)).collect()).collect()
}

/// Every window (im2col column: the taps of one output position) of `kernel` over `batch`
/// images `x`.
fn windows(kernel: &ConvKernel, x: &[u64], batch: usize) -> Vec<Vec<u64>> {
    let g = kernel.geometry();
    let cols = Im2col::new(g.input, g.window);
    let positions = cols.positions();
    let columns = batch * positions;
    let mut matrix = vec![0u64; g.terms() * columns];
    for (b, image) in x.chunks(g.input.len()).enumerate() {
        cols.fill(image, 0, positions, &mut matrix, columns, b * positions);
    }
    columns_of(&matrix, columns)
}

/// The columns of a row-major matrix with `columns` columns.
fn columns_of(matrix: &[u64], columns: usize) -> Vec<Vec<u64>> {
    (0..columns).map(|j| matrix.iter().skip(j).step_by(columns).copied().collect()).collect()
}

/// What the attack got out of one query's frames.
struct Attacked {
    /// Windows of the first convolution in what the cloud received.
    windows: usize,
    /// Windows the attack produced candidates for (right or wrong).
    resolved: usize,
    /// Windows whose candidates include a window of the true input (each true window matched
    /// once).
    recovered: usize,
    /// Windows it resolved to one candidate.
    unique: usize,
    /// The first offloaded layer's input as the cloud received it, and the true encoded input.
    received: Vec<u64>,
    input: Vec<u64>,
}

/// Runs one query on `ATTACKED` real CIFAR-10 images under `disguise`, records every frame the
/// cloud receives, and attacks the first (the image's own windows, at the first convolution) with
/// rational reconstruction, exactly as the cloud sees it.
fn attack(disguise: Disguise) -> Attacked {
    let model = "minionn-cifar";
    let (fixed, input) = encoded(model, "cifar10-test-200.bin", ATTACKED);
    let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
    let settings = ClientSettings { disguise, ..STRICT };
    let tap = Wiretap::new();
    runtime(2).block_on(run_in_memory(&fixed, cloud, &input, ATTACKED, settings, 1, Some(tap.clone()))).unwrap();
    let view = tap.frames();

    // The cloud's view, one frame at a time: an OFFLOAD per linear layer in order, then DONE.
    let linear: Vec<u32> =
        (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).map(|n| n as u32).collect();
    let kinds: Vec<_> = view.iter().map(|r| (r.header.kind, r.header.layer)).collect();
    let expected: Vec<_> = linear.iter().map(|&n| (OFFLOAD, n)).chain([(DONE, 0)]).collect();
    assert_eq!(kinds, expected, "{disguise:?}: the frames the cloud received");
    assert!(view.iter().all(|r| r.from == "client"));

    // The first OFFLOAD as the cloud reads it: batch, disguise tag, elements.
    let first = &view[0];
    let kernel = fixed.linear_kernel(first.header.layer as usize).unwrap();
    let (head, body) = first.payload.split_at(8);
    assert_eq!(u32::from_le_bytes(head[..4].try_into().unwrap()) as usize, ATTACKED);
    let tag = u32::from_le_bytes(head[4..].try_into().unwrap());
    assert_eq!(Disguise::from_tag(tag), Some(disguise));
    let received: Vec<u64> = body.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    let columns = match disguise {
        // Permuted, scaled im2col columns of the whole batch: terms × columns.
        Disguise::MonomialInsecure => columns_of(&received, received.len() / kernel.geometry().terms()),
        // `X + M`: the cloud takes its windows the same way.
        Disguise::Pad => windows(kernel, &received, ATTACKED),
    };

    let encodings = pixel_encodings(model);
    let mut truth: HashMap<Vec<i64>, usize> = HashMap::new();
    for w in windows(kernel, &input, ATTACKED) {
        *truth.entry(w.iter().map(|&v| zt::to_i64(v)).collect()).or_default() += 1;
    }
    let (mut resolved, mut recovered, mut unique) = (0, 0, 0);
    for candidates in recover_windows(kernel, &columns, &encodings) {
        if candidates.is_empty() {
            continue;
        }
        resolved += 1;
        unique += usize::from(candidates.len() == 1);
        if let Some(w) = candidates.iter().find(|w| truth.get(*w).is_some_and(|&n| n > 0)) {
            *truth.get_mut(w).expect("just found") -= 1;
            recovered += 1;
        }
    }
    Attacked { windows: columns.len(), resolved, recovered, unique, received, input }
}

#[test]
fn attack_rational_reconstruction_recovers_the_input_under_monomial_insecure() {
    let a = attack(Disguise::MonomialInsecure);
    println!(
        "monomial-insecure: {} of {} windows recovered exactly ({:.2}%; {} as the only candidate, the rest among at most {MAX_CANDIDATES}), {} resolved",
        a.recovered,
        a.windows,
        100.0 * a.recovered as f64 / a.windows as f64,
        a.unique,
        a.resolved
    );
    assert_eq!(a.windows, ATTACKED * 1024);
    assert!(a.recovered * 100 >= a.windows * 99, "{} of {} windows", a.recovered, a.windows);
}

#[test]
fn attack_rational_reconstruction_recovers_nothing_under_the_pad() {
    let a = attack(Disguise::Pad);
    let same = a.received.iter().zip(&a.input).filter(|(x, y)| x == y).count();
    println!(
        "pad: {} of {} windows recovered, {} resolved, {same} of {} values in the clear",
        a.recovered,
        a.windows,
        a.resolved,
        a.input.len()
    );
    assert_eq!(a.windows, ATTACKED * 1024);
    assert_eq!((a.recovered, a.resolved), (0, 0), "no window of X + M reconstructs");
    // Each element of `X + M` equals the element of `X` with probability 1/t.
    assert_eq!(same, 0, "no value of X in the clear");
}

/// The first offloaded layer of `fixed`, with its bias.
fn first_linear(fixed: &FixedModel) -> (usize, Vec<u64>) {
    (0..fixed.ops().len())
        .find_map(|n| match &fixed.ops()[n] {
            FixedOp::Linear { bias, .. } => Some((n, bias.clone().unwrap_or_default())),
            _ => None,
        })
        .expect("an offloaded layer")
}

/// Products wrong in the shape of the bias pattern (`c · b_o` on every output of channel `o`:
/// what a cloud that adds the bias itself returns) or in one element of the last image of the
/// batch only: caught at the first layer, and with recomputation the logits stay exact.
#[test]
fn adversary_bias_pattern_and_last_image_errors_are_caught() {
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-cifar", "cifar10-test-200.bin", 3);
    let (_, bias) = first_linear(&fixed);
    assert!(bias.iter().any(|&b| b != 0), "the first layer has a bias");
    let reference = fixed.run_encoded(input.clone(), 3).unwrap();
    for cheat in [Cheat::BiasPattern, Cheat::LastImage] {
        for trial in 0..3 {
            let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
            let err = rt.block_on(run_in_memory(&fixed, cloud, &input, 3, STRICT, 1, None)).unwrap_err();
            assert!(matches!(err, SuiteError::VerificationFailed { layer: 0, .. }), "{cheat:?} trial {trial}: {err}");
        }
        let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
        let settings = ClientSettings { recompute_on_failure: true, repetitions: 2, ..STRICT };
        let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, 3, settings, 1, None)).unwrap();
        assert_eq!(outcome.logits, reference, "{cheat:?}: recomputed with the biases");
        let linear = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).count();
        assert_eq!(outcome.recomputed.len(), linear, "{cheat:?}");
    }
}

/// A product with an element `≥ t`, one element short or one too many is refused with a typed
/// protocol error (not a panic, not a check failure), with or without recomputation: a
/// malformed reply ends the query even where `recompute_on_failure` is set.
#[test]
fn adversary_malformed_products_are_refused_with_typed_errors() {
    use tessera_suites::error::Violation;
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 2);
    for recompute in [false, true] {
        let settings = ClientSettings { recompute_on_failure: recompute, ..STRICT };
        for cheat in [Cheat::OutsideField, Cheat::Short, Cheat::Long] {
            let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
            let err = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 1, None)).unwrap_err();
            let ok = matches!(
                (cheat, &err),
                (Cheat::OutsideField, SuiteError::Protocol { violation: Violation::OutsideField, .. })
                    | (Cheat::Short, SuiteError::Protocol { violation: Violation::Truncated { .. }, .. })
                    | (Cheat::Long, SuiteError::Protocol { violation: Violation::TrailingBytes { count: 8 }, .. })
            );
            assert!(ok, "{cheat:?}, recompute {recompute}: {err:?}");
        }
    }
}

/// No repetition accepts nothing: an honest cloud's first product fails, and with
/// recomputation every layer is recomputed and the logits are exact. Several repetitions pass
/// an honest cloud and catch a cheating one; `Challenge::Bits(60)`, the largest set below `t`,
/// passes and catches; sizes outside `1..=60` accept nothing.
#[test]
fn adversary_repetitions_and_challenge_sets_at_the_edges() {
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    let linear = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).count();
    let run = |cheat, settings| {
        rt.block_on(run_in_memory(&fixed, Arc::new(Cloud::new(fixed.clone(), cheat)), &input, 2, settings, 1, None))
    };
    let failed_first = |r: tessera_suites::Result<_>| matches!(r, Err(SuiteError::VerificationFailed { layer: 0, .. }));
    let none = ClientSettings { repetitions: 0, ..STRICT };
    assert!(failed_first(run(Cheat::Honest, none)));
    let outcome = run(Cheat::Honest, ClientSettings { recompute_on_failure: true, ..none }).unwrap();
    assert_eq!((outcome.logits, outcome.recomputed.len()), (reference.clone(), linear));
    for settings in [
        ClientSettings { repetitions: 3, ..STRICT },
        ClientSettings { challenge: Challenge::Bits(60), ..STRICT },
        ClientSettings { challenge: Challenge::Bits(1), repetitions: 1, recompute_on_failure: true, ..STRICT },
    ] {
        let outcome = run(Cheat::Honest, settings).unwrap();
        assert_eq!(outcome.logits, reference, "{settings:?}");
        if settings.challenge != Challenge::Bits(1) {
            assert!(outcome.recomputed.is_empty(), "{settings:?}");
            assert!(failed_first(run(Cheat::FlipOne, settings)), "{settings:?}");
        }
    }
    for bits in [0, 61, 64] {
        let settings = ClientSettings { challenge: Challenge::Bits(bits), ..STRICT };
        assert!(failed_first(run(Cheat::Honest, settings)), "{bits} bits");
    }
}

/// What the cloud receives under the pad, every layer of two queries on the same input: one
/// OFFLOAD per offloaded layer of exactly 8 + 8 · batch · |X| bytes, whose first word is
/// `batch | 0 << 32` and whose elements all lie in `Z_t`, look uniform (about half have bit 60
/// set, the share of `[2^60, t)`), and share no element between the two queries (a fresh pad).
#[test]
fn adversary_the_cloud_receives_only_fresh_uniform_pads() {
    let (fixed, input) = encoded("minionn-cifar", "cifar10-test-200.bin", 2);
    let tap = Wiretap::new();
    let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
    runtime(2).block_on(run_in_memory(&fixed, cloud, &input, 2, STRICT, 2, Some(tap.clone()))).unwrap();
    let view = tap.frames();
    let linear: Vec<usize> = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).collect();
    assert_eq!(view.len(), 2 * (linear.len() + 1), "an OFFLOAD per layer and DONE, twice");
    let mut queries: Vec<Vec<Vec<u64>>> = vec![Vec::new(), Vec::new()];
    for (q, frames) in view.chunks(linear.len() + 1).enumerate() {
        assert_eq!(frames[linear.len()].header.kind, DONE);
        assert!(frames[linear.len()].payload.is_empty());
        for (frame, &node) in frames.iter().zip(&linear) {
            assert_eq!((frame.header.kind, frame.header.layer as usize), (OFFLOAD, node));
            let n = 2 * fixed.linear_kernel(node).unwrap().geometry().input.len();
            assert_eq!(frame.payload.len(), 8 + 8 * n, "layer {node}");
            let words: Vec<u64> =
                frame.payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
            assert_eq!(words[0], 2, "batch 2, tag 0");
            assert!(words[1..].iter().all(|&v| v < zt::T), "layer {node}");
            let high = words[1..].iter().filter(|&&v| v >= 1 << 60).count() as f64 / n as f64;
            let p = (zt::T - (1 << 60)) as f64 / zt::T as f64;
            assert!((high - p).abs() < 6.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9, "layer {node}: {high}");
            queries[q].push(words[1..].to_vec());
        }
    }
    for (a, b) in queries[0].iter().zip(&queries[1]) {
        assert_eq!(a.iter().zip(b).filter(|(x, y)| x == y).count(), 0, "the same pad twice");
    }
}

/// The pads' limbs stay in the convolution kernel's per-thread scratch after `K · M` is
/// computed unless preprocessing wipes it: after `preprocess` on this thread, nothing of the
/// pads (nor of `K · M`) is left there.
#[test]
fn adversary_preprocessing_leaves_no_pad_in_the_kernel_scratch() {
    let (fixed, _) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let pre = tessera_suites::verify::preprocess(&fixed, 2, STRICT);
    assert!(tessera_field::kernels::conv::scratch_is_wiped(), "M's limbs left in the scratch");
    drop(pre);
}

/// A cloud receiving malformed OFFLOAD frames (batch 0, a batch larger than the payload, an
/// unknown disguise tag, an element `≥ t`, trailing bytes, a layer that is no convolution)
/// refuses each with a typed protocol error.
#[test]
fn adversary_the_cloud_refuses_malformed_offloads() {
    use tessera_net::{Channel, SessionId};
    use tessera_suites::error::Violation;
    let rt = runtime(2);
    let (fixed, _) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (node, _) = first_linear(&fixed);
    let n = fixed.linear_kernel(node).unwrap().geometry().input.len();
    let frame = |batch: u32, tag: u32, elements: Vec<u64>, extra: usize| {
        let mut bytes = batch.to_le_bytes().to_vec();
        bytes.extend(tag.to_le_bytes());
        elements.iter().for_each(|e| bytes.extend(e.to_le_bytes()));
        bytes.extend(vec![0u8; extra]);
        bytes
    };
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("batch 0", node as u32, frame(0, 0, vec![1; n], 0)),
        ("batch u32::MAX", node as u32, frame(u32::MAX, 0, vec![1; n], 0)),
        ("batch 2, one image", node as u32, frame(2, 0, vec![1; n], 0)),
        ("batch 1 counted with the header word", node as u32, frame(1, 0, vec![1; n - 1], 0)),
        ("tag 2", node as u32, frame(1, 2, vec![1; n], 0)),
        ("element t", node as u32, frame(1, 0, [vec![zt::T], vec![1; n - 1]].concat(), 0)),
        ("trailing byte", node as u32, frame(1, 0, vec![1; n], 1)),
        ("empty", node as u32, Vec::new()),
        ("not a convolution", u32::MAX, frame(1, 0, vec![1; n], 0)),
    ];
    for (name, layer, payload) in cases {
        let err = rt.block_on(async {
            let (mut ours, mut theirs) = Channel::pair("client", "cloud", std::time::Duration::from_secs(10), 1 << 30);
            let cloud = Cloud::new(fixed.clone(), Cheat::Honest);
            let server = async { cloud.serve("cloud", &mut theirs).await };
            let client = async {
                ours.send(OFFLOAD, SessionId::random(), layer, &payload).await.unwrap();
                ours
            };
            let (result, ours) = futures::join!(server, client);
            drop(ours);
            result.unwrap_err()
        });
        let typed = matches!(
            &err,
            SuiteError::Protocol {
                violation: Violation::OutOfRange { .. }
                    | Violation::UnknownTag { .. }
                    | Violation::OutsideField
                    | Violation::Truncated { .. }
                    | Violation::TrailingBytes { .. }
                    | Violation::WrongNode { .. },
                ..
            }
        );
        assert!(typed, "{name}: {err:?}");
    }
}
