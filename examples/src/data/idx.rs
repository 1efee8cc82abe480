//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.

use super::{ImageSet, Split};
use crate::error::{Result, TrainError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The most data bytes a header may promise: 4 GiB, seven times EMNIST ByClass (0.55 GB, the
/// largest IDX dataset we know of), so that a corrupt header is an error, not an allocation.
const MAX_DATA_BYTES: u64 = 1 << 32;

/// Parses IDX `raw`, or its decompression if it starts with gzip's magic, with `dims`
/// dimensions; returns the sizes and the data.
fn parse(path: &Path, raw: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        parse_from(path, flate2::read::GzDecoder::new(raw), dims)
    } else {
        parse_from(path, raw, dims)
    }
}

/// Reads the header: magic 0x0000_08_0D (unsigned bytes, D dimensions), then D big-endian
/// u32 sizes; then the data they promise, and at most one byte more, so a decompression bomb
/// behind a header costs no more memory than the header's (bounded) promise.
fn parse_from(path: &Path, mut reader: impl Read, dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let gzip_error = |e: std::io::Error| TrainError::malformed(path, format!("bad gzip data: {e}"));
    let header_len = 4 + 4 * dims;
    let mut header = Vec::with_capacity(header_len);
    (&mut reader)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(gzip_error)?;
    let truncated =
        || TrainError::malformed(path, format!("truncated header ({} bytes)", header.len()));
    if header.len() < 4 {
        return Err(truncated());
    }
    let word =
        |i: usize| u32::from_be_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let magic = word(0) as usize;
    if magic != 0x0800 + dims {
        return Err(TrainError::malformed(
            path,
            format!(
                "magic 0x{magic:08x}, expected 0x{:08x} (unsigned bytes, {dims} dimensions)",
                0x0800 + dims
            ),
        ));
    }
    if header.len() < header_len {
        return Err(truncated());
    }
    let sizes: Vec<usize> = (0..dims).map(|d| word(4 + 4 * d) as usize).collect();
    let expected = sizes
        .iter()
        .try_fold(1u64, |n, &s| n.checked_mul(s as u64))
        .filter(|&n| n <= MAX_DATA_BYTES)
        .ok_or_else(|| {
            TrainError::malformed(
                path,
                format!("the header promises {sizes:?}: more than {MAX_DATA_BYTES} data bytes"),
            )
        })?;
    let mut data = Vec::new();
    reader
        .take(expected + 1)
        .read_to_end(&mut data)
        .map_err(gzip_error)?;
    if data.len() as u64 != expected {
        let found = if data.len() as u64 > expected {
            format!("more than {expected}")
        } else {
            data.len().to_string()
        };
        return Err(TrainError::malformed(
            path,
            format!("{found} data bytes, the header promises {expected} ({sizes:?})"),
        ));
    }
    Ok((sizes, data))
}

/// Parses the bytes of an IDX image file `[N, H, W]` (raw or gzip); errors name `source`.
///
/// ```
/// let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
/// bytes.extend([1, 2, 3, 4]);
/// let (pixels, dims) = examples::data::parse_idx_images(&bytes, "mem".as_ref()).unwrap();
/// assert_eq!((pixels.len(), dims), (4, [1, 2, 2]));
/// ```
pub fn parse_idx_images(bytes: &[u8], source: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let (sizes, data) = parse(source, bytes, 3)?;
    Ok((data, [sizes[0], sizes[1], sizes[2]]))
}

/// Parses the bytes of an IDX label file `[N]` (raw or gzip); errors name `source`.
///
/// ```
/// let bytes = [0, 0, 8, 1, 0, 0, 0, 2, 7, 9];
/// let labels = examples::data::parse_idx_labels(&bytes, "mem".as_ref()).unwrap();
/// assert_eq!(labels, [7, 9]);
/// ```
pub fn parse_idx_labels(bytes: &[u8], source: &Path) -> Result<Vec<u8>> {
    Ok(parse(source, bytes, 1)?.1)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| TrainError::io(path, e))
}

/// Reads an IDX image file `[N, H, W]` (raw or gzip).
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    parse_idx_images(&read(path)?, path)
}

/// Reads an IDX label file `[N]` (raw or gzip).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    parse_idx_labels(&read(path)?, path)
}

fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [format!("{stem}.gz"), stem.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
}

/// Fashion-MNIST's class names, by label (Xiao, Rasul & Vollgraf 2017).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

pub(super) fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Fashion-MNIST (60,000 training and 10,000 test images, 1×28×28, 10 classes) from `dir`
/// (files `train-images-idx3-ubyte[.gz]` etc.).
pub fn read_fashion_mnist(dir: &Path) -> Result<Split> {
    let missing = || {
        TrainError::MissingData {
        dataset: "Fashion-MNIST",
        dir: dir.to_path_buf(),
        hint: "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist) or pass --data-dir with the four IDX files".into(),
    }
    };
    let part = |images: &str, labels: &str| -> Result<ImageSet> {
        let image_path = find(dir, images).ok_or_else(missing)?;
        let label_path = find(dir, labels).ok_or_else(missing)?;
        let (pixels, [n, h, w]) = read_idx_images(&image_path)?;
        let labels = read_idx_labels(&label_path)?;
        if labels.len() != n {
            return Err(TrainError::malformed(
                &label_path,
                format!("{} labels for {n} images", labels.len()),
            ));
        }
        ImageSet::new(pixels, labels, [1, h, w], 10, &label_path)
    };
    Ok(Split {
        train: part("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
        test: part("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        class_names: names(&FASHION_MNIST_CLASSES),
        features: None,
    })
}
