//! Prints the garbled-circuit and OT numbers of `docs/gc.md`:
//! `cargo run --release -p tessera-gc --example gc_bench [-- RELUS]` (default 2^16).
//!
//! Everything runs on one thread: the garbling and evaluation rates are per core, and the layer
//! times are the sum of both parties' work (plus in-memory transport).

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use tessera_gc::block::{Block, Delta};
use tessera_gc::evaluate::Evaluator;
use tessera_gc::garble::{Garbler, LANES};
use tessera_gc::hash::Tccr;
use tessera_gc::ot::{base, extension};
use tessera_gc::{Layer, MAX_FRAME, Modulus, Nonlinear, ZtCircuit};
use tessera_net::{Channel, SessionId};

/// Runs `f` until at least `min` has passed; returns the mean time per call.
fn time(min: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let (start, mut n) = (Instant::now(), 0u32);
    while start.elapsed() < min {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let relus: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1 << 16);
    let mut rng = ChaCha20Rng::from_os_rng();
    let m = Modulus::tessera();
    for op in
        [Nonlinear::Relu, Nonlinear::ReluTrunc { shift: 16 }, Nonlinear::MaxPool { window: 4, relu: false, shift: 0 }]
    {
        println!("circuit {op:?}: {} AND gates", ZtCircuit::new(op, m).unwrap().and_gates());
    }

    // Garbling and evaluation, one core, ReLU circuits in lanes.
    let z = ZtCircuit::new(Nonlinear::Relu, m).unwrap();
    let c = z.circuit();
    let hash = Tccr::random(&mut rng);
    let delta = Delta::random(&mut rng);
    let batch = 4096;
    let (ni, no, ands) = (c.inputs(), c.outputs().len(), c.and_gates());
    let zero: Vec<Block> = (0..batch * ni).map(|_| Block::random(&mut rng)).collect();
    let mut tables = vec![Block::ZERO; batch * 2 * ands];
    let mut out = vec![Block::ZERO; batch * no];
    let mut g = Garbler::new(c, &hash, &delta);
    let per = time(Duration::from_secs(2), || {
        for s in (0..batch).step_by(LANES) {
            g.garble(
                s as u64,
                LANES,
                &zero[s * ni..(s + LANES) * ni],
                &mut tables[s * 2 * ands..(s + LANES) * 2 * ands],
                &mut out[s * no..(s + LANES) * no],
            );
        }
    });
    let garble_rate = (batch * ands) as f64 / per.as_secs_f64();
    let mut e = Evaluator::new(c, &hash);
    let per = time(Duration::from_secs(2), || {
        for s in (0..batch).step_by(LANES) {
            e.evaluate(
                s as u64,
                LANES,
                &zero[s * ni..(s + LANES) * ni],
                &tables[s * 2 * ands..(s + LANES) * 2 * ands],
                &mut out[s * no..(s + LANES) * no],
            );
        }
    });
    let eval_rate = (batch * ands) as f64 / per.as_secs_f64();
    println!(
        "garbling: {:.1} M AND/s per core; evaluation: {:.1} M AND/s per core; {} bytes per AND",
        garble_rate / 1e6,
        eval_rate / 1e6,
        16 * tables.len() / (batch * ands)
    );

    // Base OT and OT extension.
    let per = time(Duration::from_secs(1), || {
        let (bs, s) = base::BaseSender::new(&mut rng);
        let choices: Vec<bool> = (0..extension::KAPPA).map(|i| delta.bit(i)).collect();
        let (msg, _) = base::receive(&choices, &s, &mut rng).unwrap();
        bs.finish(&msg, extension::KAPPA).unwrap();
    });
    println!("128 base OTs (both sides): {:.1} ms", per.as_secs_f64() * 1e3);
    let (bs, s) = base::BaseSender::new(&mut rng);
    let choices: Vec<bool> = (0..extension::KAPPA).map(|i| delta.bit(i)).collect();
    let (msg, keys) = base::receive(&choices, &s, &mut rng).unwrap();
    let pairs = bs.finish(&msg, extension::KAPPA).unwrap();
    let mut rx = extension::ExtReceiver::new(&pairs);
    let mut tx = extension::ExtSender::new(&delta, &keys);
    let words = 1 << 13; // 2^20 OTs
    let choice_words: Vec<Block> = (0..words).map(|_| Block::random(&mut rng)).collect();
    let (mut col, mut t, mut q) = (Vec::new(), Vec::new(), Vec::new());
    let per_rx = time(Duration::from_secs(2), || {
        col.clear();
        t.clear();
        rx.extend(&choice_words, &mut col, &mut t);
    });
    let per_tx = time(Duration::from_secs(2), || {
        q.clear();
        tx.extend(words, &col, &mut q).unwrap();
    });
    let chi = Block::random(&mut rng);
    let per_check = time(Duration::from_secs(1), || {
        extension::kos_verify(chi, &delta, &q, extension::kos_prove(chi, &choice_words, &t)).unwrap_or(());
    });
    let ots = (128 * words) as f64;
    println!(
        "OT extension: receiver {:.1} M OT/s, sender {:.1} M OT/s, KOS check (both) {:.1} M OT/s; both sides on one core {:.1} M OT/s",
        ots / per_rx.as_secs_f64() / 1e6,
        ots / per_tx.as_secs_f64() / 1e6,
        ots / per_check.as_secs_f64() / 1e6,
        ots / (per_rx + per_tx + per_check).as_secs_f64() / 1e6
    );

    // One layer over in-memory channels.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for op in [Nonlinear::Relu, Nonlinear::MaxPool { window: 4, relu: false, shift: 0 }] {
        let n = if op == Nonlinear::Relu { relus } else { relus / 4 };
        let layer = Layer::new(op, m, n).unwrap();
        let a: Vec<u64> = (0..layer.values()).map(|_| m.random(&mut rng)).collect();
        let b: Vec<u64> = (0..layer.values()).map(|_| m.random(&mut rng)).collect();
        rt.block_on(async {
            let (mut gc, mut ec) = Channel::pair("garbler", "evaluator", Duration::from_secs(120), MAX_FRAME);
            let session = SessionId::random();
            let (mut rg, mut re) = (ChaCha20Rng::from_os_rng(), ChaCha20Rng::from_os_rng());
            let start = Instant::now();
            let (go, eo) = tokio::join!(
                tessera_gc::garbler_offline(&mut gc, session, 0, layer.clone(), &mut rg),
                tessera_gc::evaluator_offline(&mut ec, session, 0, layer.clone(), &mut re)
            );
            let offline = start.elapsed();
            let after = ec.meter();
            let start = Instant::now();
            let (gr, er) = tokio::join!(
                tessera_gc::garbler_online(&mut gc, session, 0, go.unwrap(), b.clone()),
                tessera_gc::evaluator_online(&mut ec, session, 0, eo.unwrap(), &a)
            );
            let online = start.elapsed();
            let r = gr.unwrap();
            let out = er.unwrap();
            let total = ec.meter();
            let online_meter = total.since(&after);
            let off_bytes = after.bytes_sent + after.bytes_received;
            let on_bytes = online_meter.bytes_sent + online_meter.bytes_received;
            let ok = (0..n).all(|i| m.add(out[i], r[i]) == layer.circuit().reference(&(0..layer.circuit().values()).map(|j| m.add(a[i * layer.circuit().values() + j], b[i * layer.circuit().values() + j])).collect::<Vec<_>>()));
            println!(
                "layer of {n} {op:?}: offline {:.2} s ({:.1} µs/instance), online {:.2} s ({:.2} µs/instance); bytes per instance offline {}, online {}, total {} (frames included); correct: {ok}",
                offline.as_secs_f64(),
                offline.as_secs_f64() * 1e6 / n as f64,
                online.as_secs_f64(),
                online.as_secs_f64() * 1e6 / n as f64,
                off_bytes / n as u64,
                on_bytes / n as u64,
                (off_bytes + on_bytes) / n as u64
            );
        });
    }
}
