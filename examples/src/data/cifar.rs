//! CIFAR-10's binary format (Krizhevsky 2009): records of one label byte then 3,072 pixel
//! bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32×32), 10,000 per file, in
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`.

use super::{ImageSet, Split};
use crate::error::{Result, TrainError};
use std::path::Path;

const RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10's class names, by label (Krizhevsky 2009, `batches.meta.txt`).
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn read_batch(path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    split_records(&bytes, path)
}

/// Splits a batch file's bytes into pixels and labels.
fn split_records(bytes: &[u8], path: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(TrainError::malformed(path, format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or not CIFAR-10)", bytes.len())));
    }
    let mut pixels = Vec::with_capacity(bytes.len());
    let mut labels = Vec::with_capacity(bytes.len() / RECORD);
    for record in bytes.chunks_exact(RECORD) {
        if record[0] > 9 {
            return Err(TrainError::malformed(
                path,
                format!("label {} in a 10-class file", record[0]),
            ));
        }
        labels.push(record[0]);
        pixels.extend_from_slice(&record[1..]);
    }
    Ok((pixels, labels))
}

/// Parses the bytes of one CIFAR-10 binary batch file; errors name `source`.
///
/// ```
/// let mut record = vec![7u8];
/// record.extend(std::iter::repeat(128).take(3072));
/// let set = examples::data::parse_cifar10_batch(&record, "mem".as_ref()).unwrap();
/// assert_eq!((set.len(), set.labels[0], set.shape), (1, 7, [3, 32, 32]));
/// ```
pub fn parse_cifar10_batch(bytes: &[u8], source: &Path) -> Result<ImageSet> {
    let (pixels, labels) = split_records(bytes, source)?;
    ImageSet::new(pixels, labels, [3, 32, 32], 10, source)
}

/// CIFAR-10 from `dir` (the `cifar-10-batches-bin` folder).
pub fn read_cifar10(dir: &Path) -> Result<Split> {
    if !dir.join("test_batch.bin").exists() {
        return Err(TrainError::MissingData {
            dataset: "CIFAR-10",
            dir: dir.to_path_buf(),
            hint: "pass --data-dir with data_batch_1.bin … data_batch_5.bin and test_batch.bin (the binary version)".into(),
        });
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for i in 1..=5 {
        let path = dir.join(format!("data_batch_{i}.bin"));
        let (p, l) = read_batch(&path)?;
        pixels.extend(p);
        labels.extend(l);
    }
    let test_path = dir.join("test_batch.bin");
    let (tp, tl) = read_batch(&test_path)?;
    Ok(Split {
        train: ImageSet::new(pixels, labels, [3, 32, 32], 10, dir)?,
        test: ImageSet::new(tp, tl, [3, 32, 32], 10, &test_path)?,
        class_names: super::idx::names(&CIFAR10_CLASSES),
        features: None,
    })
}

/// Writes `images` (3×32×32) as one CIFAR-10 binary batch file (used to make test data).
pub fn write_cifar10_batch(path: &Path, images: &ImageSet) -> Result<()> {
    if images.shape != [3, 32, 32] {
        return Err(TrainError::Usage(format!(
            "CIFAR-10 images are 3×32×32, not {:?}",
            images.shape
        )));
    }
    let mut out = Vec::with_capacity(images.len() * RECORD);
    for i in 0..images.len() {
        out.push(images.labels[i]);
        out.extend_from_slice(images.image(i));
    }
    std::fs::write(path, out).map_err(|e| TrainError::io(path, e))
}
