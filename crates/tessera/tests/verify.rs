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
use tessera::model::runner::fold_bias;
use tessera_field::kernels::im2col::Im2col;
use tessera_field::kernels::{ConvKernel, conv2d_zt};
use tessera_field::zt;
use tessera_net::Wiretap;
use tessera_suites::SuiteError;
use tessera_suites::verify::{
    Challenge, Cheat, ClientCost, ClientSettings, Cloud, DONE, Disguise, OFFLOAD, all_pass, draw_probes, narrow,
    run_in_memory,
};

const STRICT: ClientSettings = ClientSettings {
    disguise: Disguise::Pad,
    challenge: Challenge::Field,
    repetitions: 1,
    recompute_on_failure: false,
    narrow_pad: true,
};
const MONOMIAL: ClientSettings = ClientSettings { disguise: Disguise::MonomialInsecure, ..STRICT };
/// The pad in `Z_t` on every layer (the default pads in `Z_p` where a layer fits).
const WIDE: ClientSettings = ClientSettings { narrow_pad: false, ..STRICT };

/// Whether the client pads `kernel`'s layer in `Z_p` under `settings`.
fn narrow_pad(fixed: &FixedModel, kernel: &ConvKernel, settings: ClientSettings) -> bool {
    settings.disguise == Disguise::Pad && settings.narrow_pad && narrow::fits(kernel, fixed.params().bound_bits())
}

/// An OFFLOAD as the cloud reads it: batch, disguise tag, and the values (four bytes each in
/// `Z_p`, eight in `Z_t`) with their modulus.
fn offload_values(payload: &[u8]) -> (usize, u32, Vec<u64>, u64) {
    let (head, body) = payload.split_at(8);
    let batch = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
    let tag = u32::from_le_bytes(head[4..].try_into().unwrap());
    let width = if tag == narrow::TAG { 4 } else { 8 };
    let values = body
        .chunks_exact(width)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..width].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    (batch, tag, values, if tag == narrow::TAG { narrow::P } else { zt::T })
}

#[test]
fn results_equal_the_fixed_point_reference_exactly() {
    let rt = runtime(2);
    for &(model, evalset, n) in SHIPPED {
        let (fixed, input) = encoded(model, evalset, n);
        let reference = fixed.run_encoded(input.clone(), n).unwrap();
        // Every layer of the shipped models fits the narrow pad.
        assert!(
            (0..fixed.ops().len()).filter_map(|node| fixed.linear_kernel(node)).all(|k| narrow_pad(&fixed, k, STRICT))
        );
        for settings in [STRICT, WIDE, MONOMIAL] {
            let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
            let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, n, settings, 1, None)).unwrap();
            assert_eq!(outcome.logits, reference, "{model}, {settings:?}");
            assert!(outcome.recomputed.is_empty());
            assert_eq!(outcome.reports.len(), 2);
            check_counts(model, &fixed, n, settings, &outcome.cost);
        }
    }
}

/// The client's counted operations against what each part must cost: one addition per padded
/// input element (once for layers that read the same input) and per unpadded output element,
/// one multiplication and one addition per input and output element and per output channel per
/// challenge; the local model's multiplications are the imported model's
/// multiply-accumulates. Every part of the time split is measured, and the transport is the
/// rest of the total.
fn check_counts(model: &str, fixed: &FixedModel, n: usize, settings: ClientSettings, cost: &ClientCost) {
    let a = &cost.arithmetic;
    let linear: Vec<_> = (0..fixed.ops().len()).filter_map(|node| fixed.linear_kernel(node)).collect();
    let inputs: u64 = linear.iter().map(|k| k.geometry().input.len() as u64).sum::<u64>() * n as u64;
    // Layers that read the same input share its pad.
    let padded: u64 = fixed
        .linear_groups()
        .iter()
        .map(|g| fixed.linear_kernel(g[0]).unwrap().geometry().input.len() as u64)
        .sum::<u64>()
        * n as u64;
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
            // A narrow pad also reduces every input mod p and lifts every output back.
            let narrow = linear.iter().all(|k| narrow_pad(fixed, k, settings));
            let (lift_in, lift_out) = if narrow { (padded, outputs) } else { (0, 0) };
            assert_eq!(a.pad, OpCount { add: padded, mul: 0, other: lift_in }, "{model}");
            assert_eq!(a.unpad, OpCount { add: outputs, mul: 0, other: lift_out }, "{model}");
            // Per image and layer, one more per output channel combines the channels.
            let channels: u64 = linear.iter().map(|k| k.geometry().out_channels as u64).sum::<u64>() * n as u64;
            let per = inputs + outputs + channels;
            assert_eq!(a.check, OpCount { mul: per, add: per, other: (n * linear.len()) as u64 }, "{model}");
            assert!(a.preprocess.mul >= macs * n as u64, "{model}: K·M is computed ahead");
        }
        Disguise::MonomialInsecure => assert_eq!(a.preprocess, OpCount::default(), "{model}"),
    }
    // The parts are wall-clock times of compute-only sections (a preempted client can see them
    // add up past its CPU time); the transport is the rest of the CPU time.
    let c = &cost.cpu;
    let parts = c.pads + c.checks + c.unpad + c.local;
    assert!(!c.checks.is_zero() && !c.local.is_zero(), "{model}: every part is timed");
    assert_eq!(c.transport, c.total.saturating_sub(parts), "{model}");
}

#[test]
fn every_cheating_cloud_is_caught() {
    let rt = runtime(2);
    let (fixed, input) = encoded("minionn-cifar", "cifar10-test-200.bin", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    for cheat in [Cheat::FlipOne, Cheat::NoiseChannel, Cheat::Stale, Cheat::SwapChannels, Cheat::OtherInput] {
        for (trial, settings) in [STRICT, STRICT, WIDE, MONOMIAL, MONOMIAL].into_iter().enumerate() {
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

/// ResNet-20's downsampling blocks read their input twice (the first convolution and the
/// projection shortcut): the client pads it once and sends it once, naming the first layer, and
/// the cloud answers with both products. Each product is still checked on its own: a cloud
/// that changes one element of every product is caught at every layer, the shortcuts included,
/// and the client that recomputes them gets the exact result.
#[test]
fn layers_reading_one_input_share_its_offload_and_are_each_checked() {
    let rt = runtime(2);
    let (fixed, input) = encoded("resnet20-cifar", "cifar10-test-200.bin", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    let groups = fixed.linear_groups();
    let linear = (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()).count();
    assert_eq!(groups.iter().filter(|g| g.len() == 2).count(), 2, "two projection shortcuts");
    assert_eq!(groups.iter().map(Vec::len).sum::<usize>(), linear);
    let tap = Wiretap::new();
    let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
    let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, STRICT, 1, Some(tap.clone()))).unwrap();
    assert_eq!(outcome.logits, reference);
    let offloads: Vec<usize> =
        tap.frames().iter().filter(|f| f.header.kind == OFFLOAD).map(|f| f.header.layer as usize).collect();
    assert_eq!(offloads, groups.iter().map(|g| g[0]).collect::<Vec<_>>(), "one OFFLOAD per input");
    let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::FlipOne));
    let settings = ClientSettings { recompute_on_failure: true, ..STRICT };
    let outcome = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 1, None)).unwrap();
    assert_eq!(outcome.logits, reference);
    let mut recomputed: Vec<usize> = outcome.recomputed.iter().map(|&n| n as usize).collect();
    recomputed.sort_unstable();
    let mut every = groups.concat();
    every.sort_unstable();
    assert_eq!(recomputed, every, "every product checked on its own");
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
    let (batch, tag, received, _) = offload_values(&first.payload);
    assert_eq!(batch, ATTACKED);
    match disguise {
        Disguise::Pad => assert_eq!(tag, narrow::TAG),
        Disguise::MonomialInsecure => assert_eq!(Disguise::from_tag(tag), Some(disguise)),
    }
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
        for (settings, width) in [(settings, 4), (ClientSettings { narrow_pad: false, ..settings }, 8)] {
            for cheat in [Cheat::OutsideField, Cheat::Short, Cheat::Long] {
                let cloud = Arc::new(Cloud::new(fixed.clone(), cheat));
                let err = rt.block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 1, None)).unwrap_err();
                let ok = match (cheat, &err) {
                    (Cheat::OutsideField, SuiteError::Protocol { violation: Violation::OutsideField, .. }) => true,
                    (Cheat::Short, SuiteError::Protocol { violation: Violation::Truncated { .. }, .. }) => true,
                    (Cheat::Long, SuiteError::Protocol { violation: Violation::TrailingBytes { count }, .. }) => {
                        *count == width
                    }
                    _ => false,
                };
                assert!(ok, "{cheat:?}, recompute {recompute}, {width}-byte values: {err:?}");
            }
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

/// What the cloud receives under the pad, every layer of two queries on the same input, for
/// the pad in `Z_p` and in `Z_t`, on MiniONN-CIFAR and on ResNet-20 (whose shortcuts share
/// their input's message): one OFFLOAD per offloaded input of exactly
/// `8 + width · batch · |X|` bytes, whose header is `batch` and the pad's tag, whose values all
/// lie below the modulus, look uniform (the share in the top half of `[0, 2^k)`, `k` the
/// modulus's bit length, is that of a uniform draw), and share no value between the two queries
/// (a fresh pad).
#[test]
fn adversary_the_cloud_receives_only_fresh_uniform_pads() {
    for model in ["minionn-cifar", "resnet20-cifar"] {
        cloud_view_is_fresh_uniform_pads(model);
    }
}

fn cloud_view_is_fresh_uniform_pads(model: &str) {
    let (fixed, input) = encoded(model, "cifar10-test-200.bin", 2);
    for (settings, tag, width) in [(STRICT, narrow::TAG, 4), (WIDE, Disguise::Pad as u32, 8)] {
        let tap = Wiretap::new();
        let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
        runtime(2).block_on(run_in_memory(&fixed, cloud, &input, 2, settings, 2, Some(tap.clone()))).unwrap();
        let view = tap.frames();
        // Layers that read one input share its OFFLOAD, which names the first of them.
        let linear: Vec<usize> = fixed.linear_groups().iter().map(|g| g[0]).collect();
        assert_eq!(view.len(), 2 * (linear.len() + 1), "an OFFLOAD per input and DONE, twice");
        let mut queries: Vec<Vec<Vec<u64>>> = vec![Vec::new(), Vec::new()];
        for (q, frames) in view.chunks(linear.len() + 1).enumerate() {
            assert_eq!(frames[linear.len()].header.kind, DONE);
            assert!(frames[linear.len()].payload.is_empty());
            for (frame, &node) in frames.iter().zip(&linear) {
                assert_eq!((frame.header.kind, frame.header.layer as usize), (OFFLOAD, node));
                let n = 2 * fixed.linear_kernel(node).unwrap().geometry().input.len();
                assert_eq!(frame.payload.len(), 8 + width * n, "layer {node}");
                let (batch, got, values, modulus) = offload_values(&frame.payload);
                assert_eq!((batch, got), (2, tag), "layer {node}");
                assert!(values.iter().all(|&v| v < modulus), "layer {node}");
                let half = 1u64 << (63 - modulus.leading_zeros());
                let high = values.iter().filter(|&&v| v >= half).count() as f64 / n as f64;
                let p = (modulus - half) as f64 / modulus as f64;
                assert!((high - p).abs() < 6.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9, "layer {node}: {high}");
                queries[q].push(values);
            }
        }
        for (a, b) in queries[0].iter().zip(&queries[1]) {
            // Values of 32 bits may meet by chance (about n² / 2^32 pairs at the same place: n / 2^32).
            let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
            assert!(same <= usize::from(width == 4), "the same pad twice: {same} values");
        }
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
    let narrow_frame = |values: Vec<u64>| {
        let mut bytes = 1u32.to_le_bytes().to_vec();
        bytes.extend(narrow::TAG.to_le_bytes());
        values.iter().for_each(|&v| bytes.extend((v as u32).to_le_bytes()));
        bytes
    };
    let cases: Vec<(&str, u32, Vec<u8>)> = vec![
        ("batch 0", node as u32, frame(0, 0, vec![1; n], 0)),
        ("batch u32::MAX", node as u32, frame(u32::MAX, 0, vec![1; n], 0)),
        ("batch 2, one image", node as u32, frame(2, 0, vec![1; n], 0)),
        ("batch 1 counted with the header word", node as u32, frame(1, 0, vec![1; n - 1], 0)),
        ("tag 3", node as u32, frame(1, 3, vec![1; n], 0)),
        ("narrow pad, residue p", node as u32, narrow_frame([vec![narrow::P], vec![1; n - 1]].concat())),
        ("narrow pad, eight bytes a value", node as u32, frame(1, narrow::TAG, vec![1; n], 0)),
        ("narrow pad, one value short", node as u32, narrow_frame(vec![1; n - 1])),
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

/// The narrow pad's wire, computed here for one layer: the pad `M`, `K·M − b mod p`, the
/// message `X + M mod p` and the honest reply `K·(X + M) mod p`.
struct NarrowWire {
    km_minus_b: Vec<u64>,
    reply: Vec<u64>,
}

impl NarrowWire {
    fn new(kernel: &ConvKernel, bias: &[u64], x: &[u64], rng: &mut rand_chacha::ChaCha20Rng) -> Self {
        let m: Vec<u64> = (0..x.len()).map(|_| narrow::random(rng)).collect();
        let plane = kernel.geometry().output().unwrap().plane();
        let mut km: Vec<u64> = conv2d_zt(kernel, &m, 1, 1).into_iter().map(narrow::reduce).collect();
        fold_bias(&mut km, bias, plane, narrow::minus_bias);
        let z: Vec<u64> = x.iter().zip(&m).map(|(&x, &m)| narrow::add(narrow::reduce(x), m)).collect();
        let reply = conv2d_zt(kernel, &z, 1, 1).into_iter().map(narrow::reduce).collect();
        Self { km_minus_b: km, reply }
    }

    /// What the client makes of `reply`: `lift(Y' − (K·M − b))` in `Z_t`.
    fn unpad(&self, reply: &[u64]) -> Vec<u64> {
        reply.iter().zip(&self.km_minus_b).map(|(&y, &k)| narrow::lift(narrow::sub(y, k))).collect()
    }
}

/// The honest `K·X + b` in `Z_t`.
fn exact_product(kernel: &ConvKernel, bias: &[u64], x: &[u64]) -> Vec<u64> {
    let mut y = conv2d_zt(kernel, x, 1, 1);
    fold_bias(&mut y, bias, kernel.geometry().output().unwrap().plane(), zt::add);
    y
}

/// Whether one fresh challenge from `challenge` (with the bias folded in) accepts `y` as
/// `K·X + b`.
fn accepts(
    kernel: &ConvKernel,
    bias: &[u64],
    x: &[u64],
    y: &[u64],
    challenge: Challenge,
    rng: &mut rand_chacha::ChaCha20Rng,
) -> bool {
    let mut probes = draw_probes(kernel, challenge, 1, rng);
    // As the client's: a narrow pad's products lie within ±(p − 1)/2 once lifted, and inputs
    // outside that range are read in full.
    let in_range = x.iter().all(|&v| narrow::lift(narrow::reduce(v)) == v);
    for p in &mut probes {
        p.include_bias(bias);
        p.expect_values_within(narrow::P / 2);
        if !in_range {
            p.read_inputs_in_full();
        }
    }
    all_pass(&probes, x, y, 1, &mut OpCount::default())
}

/// Soundness of the narrow pad on minionn-mnist's first layer (a real image): the honest
/// reply lifts to `K·X + b` exactly; each wrong reply the cloud can send in `[0, p)` (one
/// element off by one, off by `(p−1)/2` across the lift boundary, off by `p − 1` (−1 mod p),
/// the bias pattern added mod p, a channel of noise) lifts to another `Z_t` vector and is
/// refused by every challenge from `Z_t`; from a 1-bit challenge set (`Z = {0, 1}`) an error
/// in the first output passes exactly when `r_0 = 0`: half the time, the same for every error
/// value (the check sees only the nonzero `Z_t` error).
#[test]
fn adversary_narrow_wrong_replies_lift_to_wrong_products_and_are_caught() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (node, bias) = first_linear(&fixed);
    let kernel = fixed.linear_kernel(node).unwrap();
    assert!(narrow_pad(&fixed, kernel, STRICT));
    let x = &input[..kernel.geometry().input.len()];
    let truth = exact_product(kernel, &bias, x);
    let plane = kernel.geometry().output().unwrap().plane();
    let half = (narrow::P - 1) / 2;
    type Tamper = fn(&mut [u64], &[u64], usize, &mut rand_chacha::ChaCha20Rng);
    let tampers: [(&str, Tamper); 5] = [
        ("+1", |y, _, _, _| y[0] = narrow::add(y[0], 1)),
        ("+(p-1)/2", |y, _, _, _| y[0] = narrow::add(y[0], (narrow::P - 1) / 2)),
        ("-1", |y, _, _, _| y[0] = narrow::add(y[0], narrow::P - 1)),
        ("bias pattern", |y, b, plane, _| fold_bias(y, b, plane, |v, b| narrow::add(v, narrow::reduce(b)))),
        ("noisy channel", |y, _, plane, rng| {
            y[..plane].iter_mut().for_each(|v| *v = narrow::add(*v, narrow::random(rng)))
        }),
    ];
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(61);
    for _ in 0..20 {
        let wire = NarrowWire::new(kernel, &bias, x, &mut rng);
        let honest = wire.unpad(&wire.reply);
        assert_eq!(honest, truth, "the honest reply lifts to K·X + b");
        assert!(honest.iter().all(|&v| zt::to_i64(v).unsigned_abs() <= half));
        assert!(accepts(kernel, &bias, x, &honest, Challenge::Field, &mut rng));
        for (name, tamper) in tampers {
            let mut reply = wire.reply.clone();
            tamper(&mut reply, &bias, plane, &mut rng);
            assert!(reply.iter().all(|&v| v < narrow::P));
            let lifted = wire.unpad(&reply);
            assert_ne!(lifted, truth, "{name}");
            assert!(!accepts(kernel, &bias, x, &lifted, Challenge::Field, &mut rng), "{name}");
        }
    }
    // A 1-bit challenge set: the error in output 0 is weighted by r_0 alone.
    let trials = 1000;
    for (name, tamper) in &tampers[..3] {
        let passed = (0..trials)
            .filter(|_| {
                let wire = NarrowWire::new(kernel, &bias, x, &mut rng);
                let mut reply = wire.reply.clone();
                tamper(&mut reply, &bias, plane, &mut rng);
                accepts(kernel, &bias, x, &wire.unpad(&reply), Challenge::Bits(1), &mut rng)
            })
            .count();
        let rate = passed as f64 / trials as f64;
        println!("{name}: {passed}/{trials} passed a 1-bit challenge");
        assert!((rate - 0.5).abs() < 6.0 * (0.25 / trials as f64).sqrt(), "{name}: {rate}");
    }
}

/// Honest products at the lift boundary, `K·X + b = ±(p−1)/2` with `K = (1)`, `b = ±7` (1×1
/// convolution of one channel; the bias's sign that of the product, so that the input stays
/// within the pad's range): exact and accepted; one beyond, `±(p+1)/2`, lifts to `∓(p−1)/2`
/// (off by `p`) and the check refuses the honest cloud's reply, as it would a cheat's.
#[test]
fn adversary_narrow_honest_products_at_the_lift_boundary() {
    use tessera_field::kernels::{ConvGeometry, ImageShape, Window2d};
    let g = ConvGeometry { input: ImageShape::new(1, 1, 1), out_channels: 1, window: Window2d::square(1, 1) };
    let kernel = ConvKernel::new(g, &[1]).unwrap();
    assert!(narrow::fits(&kernel, 30));
    let half = ((narrow::P - 1) / 2) as i64;
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(5);
    for (target, exact) in [(half, true), (-half, true), (half + 1, false), (-half - 1, false), (1 << 40, false)] {
        let b = 7 * target.signum();
        let bias = [zt::from_i64(b)];
        let x = [zt::from_i64(target - b)];
        let truth = exact_product(&kernel, &bias, &x);
        assert_eq!(zt::to_i64(truth[0]), target);
        for _ in 0..10 {
            let wire = NarrowWire::new(&kernel, &bias, &x, &mut rng);
            let y = wire.unpad(&wire.reply);
            assert_eq!(y == truth, exact, "{target}");
            if !exact && target.abs() <= half + 1 {
                assert_eq!(zt::to_i64(y[0]), target - target.signum() * narrow::P as i64, "off by p");
            }
            assert_eq!(accepts(&kernel, &bias, &x, &y, Challenge::Field, &mut rng), exact, "{target}");
        }
    }
    // Without bias the input itself sits at the edge of the range the check reads it in.
    for target in [half, -half] {
        let (bias, x) = ([0], [zt::from_i64(target)]);
        let wire = NarrowWire::new(&kernel, &bias, &x, &mut rng);
        let y = wire.unpad(&wire.reply);
        assert_eq!(y, x, "{target}");
        assert!(accepts(&kernel, &bias, &x, &y, Challenge::Field, &mut rng), "{target}");
    }
}

/// Client and cloud with a relay between them that rewrites every PRODUCT with `tamper`
/// (given the layer and the reply's bytes).
fn run_relayed(
    fixed: &Arc<FixedModel>,
    input: &[u64],
    batch: usize,
    settings: ClientSettings,
    tamper: impl Fn(u32, &mut Vec<u8>) + Send + 'static,
) -> tessera_suites::Result<tessera_suites::verify::Outcome> {
    use tessera_net::{Channel, SessionId};
    use tessera_suites::verify::{PRODUCT, client, preprocess};
    let timeout = std::time::Duration::from_secs(60);
    runtime(2).block_on(async {
        let (mut ours, mut relay_in) = Channel::pair("client", "cloud", timeout, 1 << 30);
        let (mut relay_out, mut theirs) = Channel::pair("client", "cloud", timeout, 1 << 30);
        let cloud = Cloud::new(fixed.clone(), Cheat::Honest);
        let server = tokio::spawn(async move { cloud.serve("cloud", &mut theirs).await });
        let relay = tokio::spawn(async move {
            while let Ok((h, payload)) = relay_in.recv_any().await {
                relay_out.send(h.kind, h.session, h.layer, &payload).await.unwrap();
                let (h, mut payload) = relay_out.recv_any().await.unwrap();
                if h.kind == PRODUCT {
                    tamper(h.layer, &mut payload);
                }
                if relay_in.send(h.kind, h.session, h.layer, &payload).await.is_err() {
                    break;
                }
            }
        });
        let pre = preprocess(fixed, batch, settings);
        let outcome =
            client("client", fixed.clone(), &mut ours, SessionId::random(), input.to_vec(), pre, settings).await;
        drop(ours);
        let _ = relay.await;
        let _ = server.await;
        outcome
    })
}

/// Replies through a relay: unchanged, the logits are exact; a residue at or above `p` (`p`,
/// `p + 4`, `2^32 − 1`, and `y + p` wrapped in 32 bits where that stays at or above `p`) in the
/// first product is a typed `OutsideField` error even with recomputation on; the first element
/// moved by `(p−1)/2` (across the lift boundary) fails the check at layer 0, and with
/// recomputation that layer alone is recomputed and the logits stay exact.
#[test]
fn adversary_narrow_replies_at_or_above_p_are_refused_end_to_end() {
    use tessera_suites::error::Violation;
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 2);
    let reference = fixed.run_encoded(input.clone(), 2).unwrap();
    let (first, _) = first_linear(&fixed);
    let first = first as u32;
    assert_eq!(run_relayed(&fixed, &input, 2, STRICT, |_, _| {}).unwrap().logits, reference);
    let set = |at: usize, v: u32| {
        move |layer: u32, bytes: &mut Vec<u8>| {
            if layer == first {
                bytes[4 * at..4 * at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
    };
    for recompute in [false, true] {
        let settings = ClientSettings { recompute_on_failure: recompute, ..STRICT };
        for (at, v) in [(0, narrow::P as u32), (1, narrow::P as u32 + 4), (7, u32::MAX)] {
            let err = run_relayed(&fixed, &input, 2, settings, set(at, v)).unwrap_err();
            assert!(matches!(err, SuiteError::Protocol { violation: Violation::OutsideField, .. }), "{v}: {err:?}");
        }
        let err = run_relayed(&fixed, &input, 2, settings, move |layer, bytes: &mut Vec<u8>| {
            if layer == first {
                // The first y < 5 (if any) plus p, else p itself: at or above p either way.
                let at = bytes.chunks(4).position(|c| u32::from_le_bytes(c.try_into().unwrap()) < 5).unwrap_or(0);
                let y = u32::from_le_bytes(bytes[4 * at..4 * at + 4].try_into().unwrap());
                let v = if y < 5 { y + narrow::P as u32 } else { narrow::P as u32 };
                bytes[4 * at..4 * at + 4].copy_from_slice(&v.to_le_bytes());
            }
        })
        .unwrap_err();
        assert!(matches!(err, SuiteError::Protocol { violation: Violation::OutsideField, .. }), "{err:?}");
        let boundary = move |layer: u32, bytes: &mut Vec<u8>| {
            if layer == first {
                let y = u64::from(u32::from_le_bytes(bytes[..4].try_into().unwrap()));
                let v = narrow::add(y, (narrow::P - 1) / 2) as u32;
                bytes[..4].copy_from_slice(&v.to_le_bytes());
            }
        };
        match run_relayed(&fixed, &input, 2, settings, boundary) {
            Err(SuiteError::VerificationFailed { layer, .. }) => assert!(!recompute && layer == first),
            Ok(outcome) => assert!(recompute && outcome.logits == reference && outcome.recomputed == vec![first]),
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// An honest cloud and inputs crafted at minionn-mnist's first layer: each tap of the widest
/// output row's window set to `±a` with its weight's sign. Within the fixed-point bound
/// (`a = 2^ℓx − 1`) that product stays inside `(−p/2, p/2)`; at twice the bound it leaves it.
/// Then the narrow pad lifts it wrongly and the check refuses the honest reply (as a cheat: the
/// abort tells the cloud that this input's product left `(−p/2, p/2)`); the wide pad computes
/// it; with recomputation the narrow pad's logits equal the wide pad's.
#[test]
fn adversary_narrow_honest_overflow_fails_like_a_cheat() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (first, bias) = first_linear(&fixed);
    let kernel = fixed.linear_kernel(first).unwrap();
    let g = *kernel.geometry();
    let w = kernel.integer_weights();
    let (row, weights) =
        w.chunks(g.terms()).enumerate().max_by_key(|(_, r)| r.iter().map(|v| v.abs()).sum::<i64>()).unwrap();
    let [kh, kw] = g.window.kernel;
    let [sh, sw] = g.window.stride;
    let (oy, ox) = (g.window.pads[0].div_ceil(sh), g.window.pads[1].div_ceil(sw));
    let (y0, x0) = (oy * sh - g.window.pads[0], ox * sw - g.window.pads[1]);
    let out = g.output().unwrap();
    let row_sum: i64 = weights.iter().map(|v| v.abs()).sum();
    let crafted = |a: i64| {
        let mut x = vec![0u64; input.len()];
        for c in 0..g.input.c {
            for i in 0..kh {
                for j in 0..kw {
                    let tap = weights[(c * kh + i) * kw + j];
                    x[(c * g.input.h + y0 + i) * g.input.w + x0 + j] = zt::from_i64(a * tap.signum());
                }
            }
        }
        let peak = zt::to_i64(exact_product(kernel, &bias, &x)[(row * out.h + oy) * out.w + ox]);
        (x, peak)
    };
    let bound = fixed.params().bound_bits();
    let (x, peak) = crafted((1 << bound) - 1);
    fixed.check_bound(first, &x).unwrap();
    println!("bound 2^{bound}, row {row} Σ|k| = {row_sum}: in bound {peak} (p/2 = {})", narrow::P / 2);
    assert!(peak.unsigned_abs() < narrow::P / 2, "in bound, the first layer cannot overflow");
    let (x, peak) = crafted((1 << (bound + 1)) - 1);
    println!("twice the bound: {peak}");
    assert!(fixed.check_bound(first, &x).is_err());
    assert!(peak.unsigned_abs() > narrow::P / 2);
    let run = |settings| {
        runtime(2).block_on(run_in_memory(
            &fixed,
            Arc::new(Cloud::new(fixed.clone(), Cheat::Honest)),
            &x,
            1,
            settings,
            1,
            None,
        ))
    };
    let err = run(STRICT).unwrap_err();
    assert!(matches!(err, SuiteError::VerificationFailed { layer, .. } if layer as usize == first), "{err:?}");
    let wide = run(WIDE).unwrap();
    assert!(wide.recomputed.is_empty());
    let recomputed = run(ClientSettings { recompute_on_failure: true, ..STRICT }).unwrap();
    assert_eq!(recomputed.logits, wide.logits);
    assert_eq!(recomputed.recomputed.first(), Some(&(first as u32)), "{:?}", recomputed.recomputed);
    println!("recomputed layers {:?}; reference: {:?}", recomputed.recomputed, fixed.run_encoded(x.clone(), 1).err());
}

/// An input beyond `±(p − 1)/2`: the narrow pad's check reads inputs in that range as one
/// 32-bit limb, so it would read `x = 2^32 + 5` as `x̃ = 5`, and a cloud that knew the input
/// could answer `K·x̃ + b` (a product in range, which lifts exactly). The client tests the
/// inputs as it pads them and reads this one in full: that answer fails the check at the first
/// layer. The honest answer fails too (the pad carries `x mod p = 10`, a product of another
/// input), and with recomputation the logits equal the wide pad's.
#[test]
fn adversary_narrow_inputs_beyond_the_pads_range_are_checked_in_full() {
    let (fixed, input) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (first, _) = first_linear(&fixed);
    let kernel = fixed.linear_kernel(first).unwrap().clone();
    let (at, value) = (300, (1i64 << 32) + 5);
    let mut x = input.clone();
    x[at] = zt::from_i64(value);
    let shift = narrow::P / 2;
    assert_eq!(zt::sub(zt::add(x[at], shift) & u64::from(u32::MAX), shift), 5, "read as one limb");
    assert_eq!(narrow::reduce(x[at]), 10, "carried by the pad");
    // K·(x̃ − x mod p), added to the honest reply, makes it the product of the misread input.
    let mut shift_by = vec![0u64; x.len()];
    shift_by[at] = zt::from_i64(5 - 10);
    let delta: Vec<u64> = conv2d_zt(&kernel, &shift_by, 1, 1).into_iter().map(narrow::reduce).collect();
    let forge = move |layer: u32, bytes: &mut Vec<u8>| {
        if layer as usize != first {
            return;
        }
        for (word, &d) in bytes.chunks_exact_mut(4).zip(&delta) {
            let y = u64::from(u32::from_le_bytes(word.try_into().unwrap()));
            word.copy_from_slice(&(narrow::add(y, d) as u32).to_le_bytes());
        }
    };
    let err = run_relayed(&fixed, &x, 1, STRICT, forge).unwrap_err();
    assert!(matches!(err, SuiteError::VerificationFailed { layer, .. } if layer as usize == first), "{err:?}");
    let run = |settings| {
        let cloud = Arc::new(Cloud::new(fixed.clone(), Cheat::Honest));
        runtime(2).block_on(run_in_memory(&fixed, cloud, &x, 1, settings, 1, None))
    };
    let err = run(STRICT).unwrap_err();
    assert!(matches!(err, SuiteError::VerificationFailed { layer, .. } if layer as usize == first), "{err:?}");
    let wide = run(WIDE).unwrap();
    let recomputed = run(ClientSettings { recompute_on_failure: true, ..STRICT }).unwrap();
    assert_eq!(recomputed.logits, wide.logits);
    assert_eq!(recomputed.recomputed.first(), Some(&(first as u32)));
}

/// Malformed narrow OFFLOADs (tag 2) at the cloud, and hostile lengths at the reader: each is
/// a typed error, nothing is allocated for a claimed length the bytes do not hold.
#[test]
fn adversary_narrow_malformed_offloads_and_lengths_are_typed_errors() {
    use tessera_net::{Channel, SessionId};
    use tessera_suites::error::Violation;
    use tessera_suites::wire::Reader;
    let rt = runtime(2);
    let (fixed, _) = encoded("minionn-mnist", "mnist-test-200-images.idx", 1);
    let (node, _) = first_linear(&fixed);
    let n = fixed.linear_kernel(node).unwrap().geometry().input.len();
    let frame = |batch: u32, values: Vec<u32>, extra: usize| {
        let mut bytes = batch.to_le_bytes().to_vec();
        bytes.extend(narrow::TAG.to_le_bytes());
        values.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
        bytes.extend(vec![0u8; extra]);
        bytes
    };
    type Expected = fn(&Violation) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expected)> = vec![
        // The header's eight bytes count as two values in the batch bound: the reader refuses.
        ("two values short", frame(1, vec![1; n - 2], 0), |v| matches!(v, Violation::Truncated { .. })),
        ("one byte short", frame(1, vec![1; n], 0)[..8 + 4 * n - 1].to_vec(), |v| {
            matches!(v, Violation::Truncated { .. } | Violation::OutOfRange { .. })
        }),
        ("trailing 1", frame(1, vec![1; n], 1), |v| matches!(v, Violation::TrailingBytes { count: 1 })),
        ("trailing 3", frame(1, vec![1; n], 3), |v| matches!(v, Violation::TrailingBytes { count: 3 })),
        ("u32::MAX", frame(1, [vec![u32::MAX], vec![1; n - 1]].concat(), 0), |v| matches!(v, Violation::OutsideField)),
        ("p + 4 last", frame(1, [vec![1; n - 1], vec![narrow::P as u32 + 4]].concat(), 0), |v| {
            matches!(v, Violation::OutsideField)
        }),
        ("batch 2, one image", frame(2, vec![1; n], 0), |v| matches!(v, Violation::OutOfRange { .. })),
        ("batch u32::MAX", frame(u32::MAX, vec![1; n], 0), |v| matches!(v, Violation::OutOfRange { .. })),
        ("batch 0", frame(0, vec![1; n], 0), |v| matches!(v, Violation::OutOfRange { .. })),
    ];
    for (name, payload, expected) in cases {
        let err = rt.block_on(async {
            let (mut ours, mut theirs) = Channel::pair("client", "cloud", std::time::Duration::from_secs(10), 1 << 30);
            let cloud = Cloud::new(fixed.clone(), Cheat::Honest).with_max_batch(4);
            let server = async { cloud.serve("cloud", &mut theirs).await };
            let client = async {
                ours.send(OFFLOAD, SessionId::random(), node as u32, &payload).await.unwrap();
                ours
            };
            let (result, ours) = futures::join!(server, client);
            drop(ours);
            result.unwrap_err()
        });
        let ok = matches!(&err, SuiteError::Protocol { violation, .. } if expected(violation));
        assert!(ok, "{name}: {err:?}");
    }
    // The reader: a claimed length beyond the bytes (or beyond the address space) is refused
    // before anything is allocated; a residue at p is outside the field.
    let bytes = [0u8; 12];
    for count in [4, usize::MAX / 4, usize::MAX / 4 + 1, usize::MAX] {
        let mut r = Reader::new(&bytes, "cloud", "product");
        let err = r.residues::<4>(count, narrow::P).unwrap_err();
        assert!(
            matches!(
                err,
                SuiteError::Protocol { violation: Violation::Truncated { .. } | Violation::OutOfRange { .. }, .. }
            ),
            "{count}: {err:?}"
        );
    }
    let p = (narrow::P as u32).to_le_bytes();
    let mut r = Reader::new(&p, "cloud", "product");
    let mut dst = [0u64; 1];
    assert!(matches!(
        r.residues_into::<4>(&mut dst, narrow::P, |_, v| v),
        Err(SuiteError::Protocol { violation: Violation::OutsideField, .. })
    ));
    // The frame limits assume eight bytes a value: an upper bound for the narrow pad's four.
    let max_frame = 1 << 20;
    let batch = tessera_suites::verify::max_batch(&fixed, max_frame);
    let limits = tessera_suites::verify::frame_limits(&fixed, max_frame);
    for node in (0..fixed.ops().len()).filter(|&n| fixed.linear_kernel(n).is_some()) {
        let g = fixed.linear_kernel(node).unwrap().geometry();
        let narrow_offload = 8 + 4 * batch * g.input.len();
        assert!(narrow_offload <= limits.max(OFFLOAD) as usize, "layer {node}");
        assert!(4 * batch * g.output().unwrap().len() <= max_frame as usize, "layer {node}");
    }
}
