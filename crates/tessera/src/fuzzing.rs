//! Entry points for fuzzing the parsers that read untrusted bytes: ONNX models, frames and
//! protocol payloads, input images. Each must return (with an error or a value) on every input,
//! never panic, hang or allocate without bound. The AFL targets in `fuzz/` call them, and a test
//! replays the committed corpus through them on every `cargo test`.

use std::path::Path;
use std::sync::OnceLock;

use tessera_field::kernels::{ImageShape, Window2d};
use tessera_he::{Ciphertext, Form, HeParams};
use tessera_model::ModelMeta;
use tessera_model::nonlinear::{NonlinearKind, NonlinearLayer};
use tessera_net::frame::{FrameHeader, HEADER_LEN};
use tessera_net::{Channel, PartyReport};
use tessera_suites::serpens_2;
use tessera_suites::serpens_n::{HolderInput, join_from_frame};

/// Imports `data` as an ONNX model and, if that works, runs the merging pass and quantizes it.
pub fn onnx_model(data: &[u8]) {
    let limits = tessera_onnx::Limits::default();
    let Ok(model) = tessera_onnx::import_bytes(data, &limits) else { return };
    if let (Ok((merged, _)), Ok(params)) =
        (tessera_model::passes::merge(&model), tessera_field::FixedPointParams::new(6, 8, 20))
    {
        let _ = tessera_model::fixed::FixedModel::new(&merged, params);
    }
}

/// Feeds `data` to a channel as the byte stream from a peer and receives frames until it
/// errs; then parses the bytes after the first header as every payload a server reads.
pub fn frames(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt =
        RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));
    rt.block_on(async {
        let (mut ours, theirs) = Channel::pair("us", "peer", std::time::Duration::from_millis(50), 1 << 16);
        let mut theirs = theirs;
        let bytes = data.to_vec();
        let writer = tokio::spawn(async move {
            let _ = theirs.send_raw_for_tests(&bytes).await;
            theirs.close().await;
        });
        while ours.recv_any().await.is_ok() {}
        let _ = writer.await;
    });
    let Some((head, payload)) = data.split_first_chunk::<HEADER_LEN>() else { return };
    let Ok(header) = FrameHeader::decode(head, 1 << 16) else { return };
    let _ = join_from_frame("peer", header, payload, 64);
    let _ = HolderInput::parse("peer", payload, 784, 64);
    let _ = PartyReport::list_from_bytes(payload);
    static HE: OnceLock<HeParams> = OnceLock::new();
    let he = HE.get_or_init(|| HeParams::standard().expect("the standard set"));
    let _ = serpens_2::join_from_frame(he, "peer", header, payload, 64);
    let _ = serpens_2::ServerInput::parse("peer", payload, 784, 64);
    let _ = serpens_2::Correlations::parse("peer", payload, 2, fuzz_layers(), 1, he.degree());
    let form = match header.kind {
        serpens_2::OWNED | serpens_2::SELECTED => Form::Seeded,
        serpens_2::MASKED | serpens_2::RESULT => Form::Returned,
        _ => return,
    };
    // A ciphertext has one exact size; pad or cut the payload to it to reach the checks.
    let mut bytes = payload.to_vec();
    bytes.resize(form.size(he), 0);
    let _ = Ciphertext::read(he, form, &bytes);
}

/// A ReLU and a max pool over 4 × 8 × 8 maps: the layers a fuzzed serpens-2 correlations
/// payload is read against.
fn fuzz_layers() -> &'static [NonlinearLayer] {
    static LAYERS: OnceLock<Vec<NonlinearLayer>> = OnceLock::new();
    LAYERS.get_or_init(|| {
        let (input, pooled) = (ImageShape::new(4, 8, 8), ImageShape::new(4, 4, 4));
        let pool = NonlinearKind::MaxPool { window: Window2d::square(2, 2), relu: true };
        vec![
            NonlinearLayer { node: 1, kind: NonlinearKind::Relu, input, output: input, shift: 8 },
            NonlinearLayer { node: 2, kind: pool, input, output: pooled, shift: 0 },
        ]
    })
}

/// Reads `data` as an input image (PNG, JPEG or `.npy`) for a 1×28×28 and a 3×32×32 model.
pub fn input_image(data: &[u8]) {
    let meta = ModelMeta::default();
    for shape in [ImageShape::new(1, 28, 28), ImageShape::new(3, 32, 32)] {
        let _ = crate::input::input_from_bytes(Path::new("fuzz-input"), data, shape, &meta);
    }
}
