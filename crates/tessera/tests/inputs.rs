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
