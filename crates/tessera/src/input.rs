//! Reading one input: PNG or JPEG images, or `.npy` arrays, into normalized model inputs.
//!
//! Pixels are scaled to `[0, 1]` and normalized per channel with the model's mean and standard
//! deviation. A `.npy` of `u8` holds pixels (`H×W`, `C×H×W` or `1×C×H×W`); a `.npy` of `f32`
//! holds values already normalized. Size and channel count must match the model exactly.

use std::path::Path;

use tessera_field::kernels::ImageShape;
use tessera_model::ModelMeta;

use crate::error::{Error, InputProblem, Result};

/// Largest input file accepted, in bytes.
pub const MAX_INPUT_BYTES: u64 = 64 << 20;

/// Reads a whole file after checking its size.
pub fn read_bounded(path: &Path, maximum: u64) -> Result<Vec<u8>> {
    let err = |p| Error::input(path, p);
    let len = std::fs::metadata(path).map_err(|e| err(InputProblem::Io(e.to_string())))?.len();
    if len == 0 {
        return Err(err(InputProblem::Empty));
    }
    if len > maximum {
        return Err(err(InputProblem::TooLarge { actual: len, maximum }));
    }
    std::fs::read(path).map_err(|e| err(InputProblem::Io(e.to_string())))
}

/// Scales `u8` pixels (`batch` images, NCHW) to `[0, 1]` and normalizes each channel.
pub fn normalize(pixels: &[u8], shape: ImageShape, meta: &ModelMeta) -> Vec<f32> {
    let plane = shape.plane();
    pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let c = i / plane % shape.c;
            let mean = meta.mean.get(c).copied().unwrap_or(0.0);
            let std = meta.std.get(c).copied().filter(|s| *s > 0.0).unwrap_or(1.0);
            (p as f32 / 255.0 - mean) / std
        })
        .collect()
}

/// One image as normalized model input (`shape.len()` values).
pub fn load_input(path: &Path, shape: ImageShape, meta: &ModelMeta) -> Result<Vec<f32>> {
    input_from_bytes(path, &read_bounded(path, MAX_INPUT_BYTES)?, shape, meta)
}

/// One image from the bytes of an `.npy`, PNG or JPEG file (`path` names it in errors).
pub fn input_from_bytes(path: &Path, bytes: &[u8], shape: ImageShape, meta: &ModelMeta) -> Result<Vec<f32>> {
    if bytes.starts_with(b"\x93NUMPY") {
        return read_npy(path, bytes, shape, meta);
    }
    let pixels = decode_image(path, bytes, shape)?;
    Ok(normalize(&pixels, shape, meta))
}

/// Decodes a PNG or JPEG into `C×H×W` pixels of the expected shape.
pub fn decode_image(path: &Path, bytes: &[u8], shape: ImageShape) -> Result<Vec<u8>> {
    let err = |p| Error::input(path, p);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(InputProblem::Corrupt(e.to_string())))?;
    if !matches!(reader.format(), Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)) {
        return Err(err(InputProblem::Corrupt("not a PNG or JPEG image".into())));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(4096);
    limits.max_image_height = Some(4096);
    limits.max_alloc = Some(256 << 20);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| err(InputProblem::Corrupt(e.to_string())))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if (h, w) != (shape.h, shape.w) {
        return Err(err(InputProblem::WrongSize {
            actual_h: h,
            actual_w: w,
            expected_h: shape.h,
            expected_w: shape.w,
        }));
    }
    let channels = if img.color().has_color() { 3 } else { 1 };
    if channels != shape.c {
        return Err(err(InputProblem::WrongChannels { actual: channels, expected: shape.c }));
    }
    Ok(if shape.c == 1 {
        img.into_luma8().into_raw()
    } else {
        let rgb = img.into_rgb8().into_raw();
        (0..3).flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>()).collect()
    })
}

/// Refuses `.npy` headers that are not the flat dictionary NumPy writes before handing them to
/// the parser: its Python-literal grammar backtracks exponentially on nested brackets (a
/// 140-byte header of repeated `{` took minutes under fuzzing).
fn check_npy_header(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    let (len, start) = match bytes.get(6) {
        Some(1) => (bytes.get(8..10).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize), 10usize),
        Some(2 | 3) => (bytes.get(8..12).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize), 12),
        _ => return Err("unknown .npy version"),
    };
    let header = len.and_then(|n| bytes.get(start..start.checked_add(n)?)).ok_or("truncated .npy header")?;
    let count = |c: u8| header.iter().filter(|&&b| b == c).count();
    if header.len() > 4096 || count(b'{') != 1 || count(b'}') != 1 || count(b'(') > 1 || count(b')') > 1 {
        return Err("an .npy header that is not a flat dictionary");
    }
    if count(b'[') + count(b']') > 0 {
        return Err("an .npy header with a structured dtype");
    }
    // The parser multiplies the dimensions unchecked: refuse a shape whose size overflows.
    let text = std::str::from_utf8(header).map_err(|_| "an .npy header that is not text")?;
    let dims = text.split_once('(').and_then(|(_, rest)| rest.split_once(')')).map_or("", |(d, _)| d);
    let mut size = 1u64;
    for d in dims.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = d.parse().map_err(|_| "an .npy shape that is not a tuple of sizes")?;
        size = size.checked_mul(d).ok_or("an .npy shape whose size overflows")?;
    }
    Ok(())
}

fn read_npy(path: &Path, bytes: &[u8], shape: ImageShape, meta: &ModelMeta) -> Result<Vec<f32>> {
    let (values, n) = read_npy_batch(path, bytes, shape, meta)?;
    if n != 1 {
        return Err(Error::input(
            path,
            InputProblem::Corrupt(format!(
                "{n} images where one {}×{}×{} image was expected",
                shape.c, shape.h, shape.w
            )),
        ));
    }
    Ok(values)
}

/// Images from an `.npy` array: one or more `C×H×W` images (`u8` pixels or normalized `f32`),
/// with their count.
fn read_npy_batch(path: &Path, bytes: &[u8], shape: ImageShape, meta: &ModelMeta) -> Result<(Vec<f32>, usize)> {
    let err = |p| Error::input(path, p);
    let corrupt = |e: std::io::Error| err(InputProblem::Corrupt(e.to_string()));
    check_npy_header(bytes).map_err(|reason| err(InputProblem::Corrupt(reason.into())))?;
    let npy = npyz::NpyFile::new(bytes).map_err(corrupt)?;
    let dims: Vec<u64> = npy.shape().to_vec();
    // A hostile header may declare dimensions whose product overflows.
    let n = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    let images = n.filter(|&n| n > 0 && n % shape.len() as u64 == 0).map(|n| (n / shape.len() as u64) as usize);
    let Some(images) = images else {
        return Err(err(InputProblem::Corrupt(format!(
            "array of shape {dims:?} is not {}×{}×{} images",
            shape.c, shape.h, shape.w
        ))));
    };
    let values = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Uint && t.size_field() == 1 => {
            let pixels: Vec<u8> = npy.into_vec().map_err(corrupt)?;
            normalize(&pixels, shape, meta)
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            let v: Vec<f32> = npy.into_vec().map_err(corrupt)?;
            if v.iter().any(|x| !x.is_finite()) {
                return Err(err(InputProblem::Corrupt("non-finite values".into())));
            }
            v
        }
        other => {
            return Err(err(InputProblem::Corrupt(format!("dtype {other:?} is neither u8 pixels nor f32 values"))));
        }
    };
    Ok((values, images))
}

/// Up to `limit` sample images as normalized model inputs, with their count, from what users
/// have: a folder of PNG or JPEG images (in name order; other files are skipped), or an `.npy`
/// batch (`N×C×H×W`, `u8` pixels or normalized `f32`).
pub fn load_samples(path: &Path, shape: ImageShape, meta: &ModelMeta, limit: usize) -> Result<(Vec<f32>, usize)> {
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| Error::input(path, InputProblem::Io(e.to_string())))?;
        let mut files: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| matches!(x.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            })
            .collect();
        files.sort();
        files.truncate(limit);
        if files.is_empty() {
            return Err(Error::input(path, InputProblem::Corrupt("no PNG or JPEG images in the folder".into())));
        }
        let mut values = Vec::with_capacity(files.len() * shape.len());
        for file in &files {
            values.extend(load_input(file, shape, meta)?);
        }
        return Ok((values, files.len()));
    }
    let bytes = read_bounded(path, crate::dataset::MAX_DATASET_BYTES)?;
    if !bytes.starts_with(b"\x93NUMPY") {
        return Err(Error::input(path, InputProblem::Corrupt("neither a folder of images nor an .npy batch".into())));
    }
    let (mut values, n) = read_npy_batch(path, &bytes, shape, meta)?;
    let kept = n.min(limit);
    values.truncate(kept * shape.len());
    Ok((values, kept))
}
