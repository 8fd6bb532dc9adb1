//! Bad inputs give typed errors naming the problem.

use std::path::{Path, PathBuf};

use tessera::dataset::Dataset;
use tessera::error::{Error, InputProblem};
use tessera::input::load_input;
use tessera_field::kernels::ImageShape;
use tessera_model::ModelMeta;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn problem(r: tessera::Result<impl std::fmt::Debug>) -> InputProblem {
    match r {
        Err(Error::Input { problem, .. }) => problem,
        other => panic!("expected an input error, got {other:?}"),
    }
}

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn image_errors() {
    let meta = ModelMeta::default();
    let mnist = ImageShape::new(1, 28, 28);
    let png = repo().join("examples/images/mnist-test00000-7.png");
    assert_eq!(load_input(&png, mnist, &meta).unwrap().len(), 784);
    assert!(matches!(
        problem(load_input(&png, ImageShape::new(1, 32, 32), &meta)),
        InputProblem::WrongSize { actual_h: 28, expected_h: 32, .. }
    ));
    assert!(matches!(
        problem(load_input(&png, ImageShape::new(3, 28, 28), &meta)),
        InputProblem::WrongChannels { actual: 1, expected: 3 }
    ));
    let cifar = repo().join("examples/images/cifar10-test00000-airplane.png");
    assert!(matches!(
        problem(load_input(&cifar, ImageShape::new(1, 32, 32), &meta)),
        InputProblem::WrongChannels { actual: 3, expected: 1 }
    ));
    assert_eq!(load_input(&cifar, ImageShape::new(3, 32, 32), &meta).unwrap().len(), 3072);
    let bytes = std::fs::read(&png).unwrap();
    assert!(matches!(
        problem(load_input(&temp("cut.png", &bytes[..bytes.len() / 2]), mnist, &meta)),
        InputProblem::Corrupt(_)
    ));
    assert!(matches!(
        problem(load_input(&temp("jpeg.jpg", b"\xff\xd8\xff\xe0garbage"), mnist, &meta)),
        InputProblem::Corrupt(_)
    ));
    assert!(matches!(problem(load_input(&temp("text.png", b"hello"), mnist, &meta)), InputProblem::Corrupt(_)));
    assert_eq!(problem(load_input(&temp("empty.png", b""), mnist, &meta)), InputProblem::Empty);
    assert!(matches!(problem(load_input(Path::new("/nonexistent/x.png"), mnist, &meta)), InputProblem::Io(_)));
}

#[test]
fn dataset_errors() {
    assert_eq!(Dataset::open(&repo().join("data/cifar10-test-200.bin")).unwrap().len(), 200);
    assert!(matches!(problem(Dataset::open(&temp("short.bin", &[0; 3000]))), InputProblem::Corrupt(_)));
    assert!(matches!(
        problem(Dataset::open(&temp("x-images.idx", &[0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28, 1, 2]))),
        InputProblem::Corrupt(_)
    ));
    assert!(matches!(
        problem(Dataset::open(&temp("y-images.idx", &[0, 0, 8, 1, 0, 0, 0, 1, 5]))),
        InputProblem::Corrupt(_) | InputProblem::Io(_)
    ));
    assert!(matches!(problem(Dataset::open(&temp("whatever.txt", b"x"))), InputProblem::Corrupt(_)));
}

/// A version-1 `.npy` header for a `u8` or `f32` array.
fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_inputs() {
    let meta = ModelMeta { mean: vec![0.5], std: vec![0.25], ..Default::default() };
    let s = ImageShape::new(1, 2, 2);
    let pixels = temp("p.npy", &npy("|u1", "(2, 2)", &[0, 255, 128, 64]));
    let x = load_input(&pixels, s, &meta).unwrap();
    assert!((x[0] + 2.0).abs() < 1e-6 && (x[1] - 2.0).abs() < 1e-6);
    let floats: Vec<u8> = [1.0f32, -1.0, 0.5, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(
        load_input(&temp("f.npy", &npy("<f4", "(1, 1, 2, 2)", &floats)), s, &meta).unwrap(),
        vec![1.0, -1.0, 0.5, 0.0]
    );
    assert!(matches!(
        problem(load_input(&temp("w.npy", &npy("|u1", "(3, 3)", &[0; 9])), s, &meta)),
        InputProblem::Corrupt(_)
    ));
    assert!(matches!(
        problem(load_input(&temp("d.npy", &npy("<f8", "(2, 2)", &[0; 32])), s, &meta)),
        InputProblem::Corrupt(_)
    ));
    let nan: Vec<u8> = [f32::NAN, 0.0, 0.0, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert!(matches!(
        problem(load_input(&temp("n.npy", &npy("<f4", "(2, 2)", &nan)), s, &meta)),
        InputProblem::Corrupt(_)
    ));
    assert!(matches!(
        problem(load_input(&temp("t.npy", &npy("|u1", "(2, 2)", &[1])), s, &meta)),
        InputProblem::Corrupt(_)
    ));
}
