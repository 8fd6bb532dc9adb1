//! One AFL target for each parser of untrusted bytes in `tessera::fuzzing`, chosen by
//! `TESSERA_FUZZ_TARGET` (onnx_model, frames, input_image):
//!
//! ```sh
//! cargo afl build --release
//! TESSERA_FUZZ_TARGET=frames cargo afl fuzz -i corpus/frames -o out/frames -V 600 target/release/tessera-fuzz
//! ```

fn main() {
    let target = std::env::var("TESSERA_FUZZ_TARGET").unwrap_or_default();
    let run: fn(&[u8]) = match target.as_str() {
        "onnx_model" => tessera::fuzzing::onnx_model,
        "frames" => tessera::fuzzing::frames,
        "input_image" => tessera::fuzzing::input_image,
        other => {
            eprintln!("TESSERA_FUZZ_TARGET must be onnx_model, frames or input_image, not `{other}`");
            std::process::exit(2);
        }
    };
    afl::fuzz!(|data: &[u8]| run(data));
}
