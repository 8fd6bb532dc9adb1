//! The fuzzing corpus (`fuzz/corpus/`, grown by the AFL targets in `fuzz/`) replayed through the
//! parsers of untrusted bytes, with truncations and byte flips of every entry: a short smoke run
//! of the fuzz targets on every `cargo test`. Each call must return; a panic fails the test.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn replay(target: &str, run: fn(&[u8]), mutations: usize) {
    let entries = corpus(target);
    assert!(!entries.is_empty(), "no corpus for {target}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7e55e7a);
    for (path, bytes) in entries {
        run(&bytes);
        for cut in (0..16).map(|i| bytes.len() * i / 16) {
            run(&bytes[..cut]);
        }
        for _ in 0..mutations {
            let mut m = bytes.clone();
            for _ in 0..rng.random_range(1..8) {
                if m.is_empty() {
                    break;
                }
                let i = rng.random_range(0..m.len());
                m[i] ^= 1 << rng.random_range(0..8);
            }
            run(&m);
        }
        let _ = path;
    }
}

#[test]
fn onnx_corpus() {
    replay("onnx_model", tessera::fuzzing::onnx_model, 8);
}

#[test]
fn frames_corpus() {
    replay("frames", tessera::fuzzing::frames, 64);
}

#[test]
fn input_image_corpus() {
    replay("input_image", tessera::fuzzing::input_image, 64);
}
