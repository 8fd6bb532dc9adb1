//! Criterion benchmarks: garbling and evaluating ReLU circuits, the hash, and OT extension.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera_gc::block::{Block, Delta};
use tessera_gc::evaluate::Evaluator;
use tessera_gc::garble::{Garbler, LANES};
use tessera_gc::hash::Tccr;
use tessera_gc::ot::{base, extension};
use tessera_gc::{Modulus, Nonlinear, ZtCircuit};

fn garbling(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let z = ZtCircuit::new(Nonlinear::Relu, Modulus::tessera()).unwrap();
    let circuit = z.circuit();
    let hash = Tccr::random(&mut rng);
    let delta = Delta::random(&mut rng);
    let (ni, no, ands) = (circuit.inputs(), circuit.outputs().len(), circuit.and_gates());
    let zero: Vec<Block> = (0..LANES * ni).map(|_| Block::random(&mut rng)).collect();
    let mut tables = vec![Block::ZERO; LANES * 2 * ands];
    let mut out = vec![Block::ZERO; LANES * no];
    let mut group = c.benchmark_group("relu-circuit");
    group.throughput(Throughput::Elements((LANES * ands) as u64));
    let mut g = Garbler::new(circuit, &hash, &delta);
    group
        .bench_function("garble 16 ReLUs (AND gates)", |b| b.iter(|| g.garble(0, LANES, &zero, &mut tables, &mut out)));
    let mut e = Evaluator::new(circuit, &hash);
    group
        .bench_function("evaluate 16 ReLUs (AND gates)", |b| b.iter(|| e.evaluate(0, LANES, &zero, &tables, &mut out)));
    group.finish();

    let mut blocks: Vec<Block> = (0..64).map(|_| Block::random(&mut rng)).collect();
    let tweaks: Vec<u128> = (0..64).collect();
    let mut group = c.benchmark_group("hash");
    group.throughput(Throughput::Elements(64));
    group.bench_function("tccr 64 blocks", |b| b.iter(|| hash.hash_many(&mut blocks, &tweaks)));
    group.finish();
}

fn ot(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let delta = Delta::random(&mut rng);
    let (bs, s) = base::BaseSender::new(&mut rng);
    let choices: Vec<bool> = (0..extension::KAPPA).map(|i| delta.bit(i)).collect();
    let (msg, keys) = base::receive(&choices, &s, &mut rng).unwrap();
    let pairs = bs.finish(&msg, extension::KAPPA).unwrap();
    let mut rx = extension::ExtReceiver::new(&pairs);
    let mut tx = extension::ExtSender::new(&delta, &keys);
    let words = 512;
    let choice_words: Vec<Block> = (0..words).map(|_| Block::random(&mut rng)).collect();
    let (mut col, mut t, mut q) = (Vec::new(), Vec::new(), Vec::new());
    let mut group = c.benchmark_group("ot-extension");
    group.throughput(Throughput::Elements(128 * words as u64));
    group.bench_function("receiver 65536 OTs", |b| {
        b.iter(|| {
            col.clear();
            t.clear();
            rx.extend(&choice_words, &mut col, &mut t);
        })
    });
    group.bench_function("sender 65536 OTs", |b| {
        b.iter(|| {
            q.clear();
            tx.extend(words, &col, &mut q).unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, garbling, ot);
criterion_main!(benches);
