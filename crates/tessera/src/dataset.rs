//! Labelled evaluation sets: IDX (MNIST, Fashion-MNIST; optionally gzipped), CIFAR-10 binary
//! records, and MedMNIST `.npz` archives (`test_images`, `test_labels`).

use std::io::Read;
use std::path::{Path, PathBuf};

use tessera_field::kernels::ImageShape;

use crate::error::{Error, InputProblem, Result};
use crate::input::read_bounded;

/// Largest dataset file accepted, in bytes.
pub const MAX_DATASET_BYTES: u64 = 512 << 20;

/// Images as `u8` pixels (NCHW) with one label each.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Shape of one image.
    pub shape: ImageShape,
    /// `len × shape.len()` pixels.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl Dataset {
    /// Opens a dataset by its file: `*.bin` (CIFAR-10 records), `*images*` IDX (labels in the file
    /// with `labels` for `images` and `idx1` for `idx3` in its name), or `*.npz` (MedMNIST).
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".bin") {
            Self::cifar(path)
        } else if name.ends_with(".npz") {
            Self::npz(path)
        } else if name.contains("images") {
            let labels = PathBuf::from(path.to_string_lossy().replace("images", "labels").replace("idx3", "idx1"));
            let (dims, pixels) = read_idx(path)?;
            let (ldims, labels) = read_idx(&labels)?;
            let shape = match dims[..] {
                [_, h, w] => ImageShape::new(1, h, w),
                [_, c, h, w] => ImageShape::new(c, h, w),
                _ => {
                    return Err(Error::input(path, InputProblem::Corrupt(format!("IDX dims {dims:?} are not images"))));
                }
            };
            if ldims.len() != 1 || ldims[0] != dims[0] {
                return Err(Error::input(
                    path,
                    InputProblem::LabelCount {
                        images: dims[0],
                        labels: ldims.iter().fold(1usize, |a, &d| a.saturating_mul(d)),
                    },
                ));
            }
            Ok(Self { shape, pixels, labels })
        } else {
            Err(Error::input(
                path,
                InputProblem::Corrupt("unknown dataset format (expected *.bin, *images*.idx[.gz] or *.npz)".into()),
            ))
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of images `range`.
    pub fn pixels(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.pixels[range.start * self.shape.len()..range.end * self.shape.len()]
    }

    /// `n` images drawn across the classes: the first image of every class (in label order),
    /// then every class's second, and so on, each class in file order. A set sorted by class
    /// gives every class its share; `n` above the set's size gives the whole set.
    pub fn stratified(&self, n: usize) -> Dataset {
        let indices = self.stratified_indices(n);
        let pixels = indices.iter().flat_map(|&i| self.pixels(i..i + 1).iter().copied()).collect();
        Dataset { shape: self.shape, pixels, labels: indices.iter().map(|&i| self.labels[i]).collect() }
    }

    /// The indices [`stratified`](Self::stratified) draws, in order.
    fn stratified_indices(&self, n: usize) -> Vec<usize> {
        let mut by_class: std::collections::BTreeMap<u8, std::collections::VecDeque<usize>> = Default::default();
        for (i, &label) in self.labels.iter().enumerate() {
            by_class.entry(label).or_default().push_back(i);
        }
        let mut picked = Vec::with_capacity(n.min(self.len()));
        while picked.len() < n.min(self.len()) {
            for queue in by_class.values_mut() {
                if let Some(i) = queue.pop_front().filter(|_| picked.len() < n) {
                    picked.push(i);
                }
            }
        }
        picked
    }

    fn cifar(path: &Path) -> Result<Self> {
        let bytes = read_bounded(path, MAX_DATASET_BYTES)?;
        const RECORD: usize = 1 + 3 * 32 * 32;
        if bytes.len() % RECORD != 0 {
            return Err(Error::input(
                path,
                InputProblem::Corrupt(format!(
                    "{} bytes is not a whole number of {RECORD}-byte CIFAR records",
                    bytes.len()
                )),
            ));
        }
        let labels = bytes.chunks(RECORD).map(|r| r[0]).collect();
        let pixels = bytes.chunks(RECORD).flat_map(|r| r[1..].iter().copied()).collect();
        Ok(Self { shape: ImageShape::new(3, 32, 32), pixels, labels })
    }

    fn npz(path: &Path) -> Result<Self> {
        let corrupt = |e: String| Error::input(path, InputProblem::Corrupt(e));
        let file = std::fs::File::open(path).map_err(|e| Error::input(path, InputProblem::Io(e.to_string())))?;
        let mut npz = zip::ZipArchive::new(file).map_err(|e| corrupt(e.to_string()))?;
        let mut array = |name: &str| -> Result<(Vec<u64>, Vec<u8>)> {
            let entry = npz.by_name(&format!("{name}.npy")).map_err(|e| corrupt(format!("`{name}`: {e}")))?;
            if entry.size() > MAX_DATASET_BYTES {
                return Err(Error::input(
                    path,
                    InputProblem::TooLarge { actual: entry.size(), maximum: MAX_DATASET_BYTES },
                ));
            }
            let npy = npyz::NpyFile::new(entry).map_err(|e| corrupt(e.to_string()))?;
            let shape = npy.shape().to_vec();
            // The header's shape decides the allocation: bound it first.
            let elements = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX);
            if elements > MAX_DATASET_BYTES {
                return Err(Error::input(
                    path,
                    InputProblem::TooLarge { actual: elements, maximum: MAX_DATASET_BYTES },
                ));
            }
            Ok((shape, npy.into_vec::<u8>().map_err(|e| corrupt(e.to_string()))?))
        };
        let (shape, pixels) = array("test_images")?;
        let (_, labels) = array("test_labels")?;
        let shape = match shape[..] {
            [_, h, w] => ImageShape::new(1, h as usize, w as usize),
            [_, h, w, 3] => {
                return Err(Error::input(
                    path,
                    InputProblem::Corrupt(format!("HWC colour images {h}×{w}×3 are not supported")),
                ));
            }
            _ => {
                return Err(Error::input(path, InputProblem::Corrupt(format!("array shape {shape:?} is not images"))));
            }
        };
        if labels.len() * shape.len() != pixels.len() {
            return Err(Error::input(
                path,
                InputProblem::LabelCount { images: pixels.len() / shape.len(), labels: labels.len() },
            ));
        }
        Ok(Self { shape, pixels, labels })
    }
}

/// Reads an IDX file (`u8` data), gzipped when its name ends in `.gz`.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = read_bounded(path, MAX_DATASET_BYTES)?;
    let corrupt = |m: String| Error::input(path, InputProblem::Corrupt(m));
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(MAX_DATASET_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(|e| corrupt(e.to_string()))?;
        if out.len() as u64 > MAX_DATASET_BYTES {
            return Err(Error::input(
                path,
                InputProblem::TooLarge { actual: out.len() as u64, maximum: MAX_DATASET_BYTES },
            ));
        }
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(corrupt("not an IDX file of unsigned bytes".into()));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || rank > 4 || bytes.len() < header {
        return Err(corrupt(format!("bad IDX rank {rank}")));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n =
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| corrupt("dimensions overflow".into()))?;
    if bytes.len() - header != n {
        return Err(corrupt(format!("{} data bytes for dims {dims:?}", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}
