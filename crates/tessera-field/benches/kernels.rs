//! Z_t convolution against f32 convolution on MiniONN-CIFAR's layer shapes (MAC/s, same run).
//! `tessera bench kernels` prints the same comparison as a table.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tessera_field::kernels::{ConvF32, ConvKernel, Epilogue, conv2d_zt, shapes};
use tessera_field::zt;

fn bench(c: &mut Criterion) {
    let threads = rayon::current_num_threads();
    for (name, g) in shapes::minionn_cifar() {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(g.macs() as u64));
        let w: Vec<i64> = (0..g.out_channels * g.terms()).map(|i| (i as i64 * 7919) % 4001 - 2000).collect();
        let x: Vec<u64> = (0..g.input.len()).map(|i| zt::mul(i as u64 + 1, 0x1234_5678_9abc)).collect();
        let kernel = ConvKernel::new(g, &w).unwrap();
        group.bench_function("Z_t", |b| b.iter(|| conv2d_zt(&kernel, &x, 1, threads)));
        let wf: Vec<f32> = w.iter().map(|&v| v as f32 / 4096.0).collect();
        let xf: Vec<f32> = (0..g.input.len()).map(|i| (i % 17) as f32 / 17.0).collect();
        let mut out = vec![0.0; g.output().unwrap().len()];
        let mut cols = Vec::new();
        let conv = ConvF32::new(g, 1, &wf);
        group.bench_function("f32", |b| b.iter(|| conv.run(&xf, 1, threads, &mut cols, &mut out, Epilogue::default())));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
