//! The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.

use super::{ImageSet, Split};
use crate::error::{Result, TrainError};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

fn maybe_gunzip<'a>(raw: &'a [u8], path: &Path) -> Result<std::borrow::Cow<'a, [u8]>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| TrainError::malformed(path, format!("bad gzip data: {e}")))?;
        Ok(out.into())
    } else {
        Ok(raw.into())
    }
}

/// Parses the header: magic 0x0000_08_0D (unsigned bytes, D dimensions), then D big-endian
/// u32 sizes; returns the sizes and the payload.
fn parse(path: &Path, bytes: &[u8], dims: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let header = 4 + 4 * dims;
    if bytes.len() < 4 {
        return Err(TrainError::malformed(
            path,
            format!("truncated header ({} bytes)", bytes.len()),
        ));
    }
    let word = |i: usize| {
        u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize
    };
    let magic = word(0);
    if magic != 0x0800 + dims {
        return Err(TrainError::malformed(
            path,
            format!(
                "magic 0x{magic:08x}, expected 0x{:08x} (unsigned bytes, {dims} dimensions)",
                0x0800 + dims
            ),
        ));
    }
    if bytes.len() < header {
        return Err(TrainError::malformed(
            path,
            format!("truncated header ({} bytes)", bytes.len()),
        ));
    }
    let sizes: Vec<usize> = (0..dims).map(|d| word(4 + 4 * d)).collect();
    let expected: usize = sizes.iter().product();
    let payload = &bytes[header..];
    if payload.len() != expected {
        return Err(TrainError::malformed(
            path,
            format!(
                "{} data bytes, the header promises {expected} ({sizes:?})",
                payload.len()
            ),
        ));
    }
    Ok((sizes, payload.to_vec()))
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
    let (sizes, data) = parse(source, &maybe_gunzip(bytes, source)?, 3)?;
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
    Ok(parse(source, &maybe_gunzip(bytes, source)?, 1)?.1)
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
    })
}
