//! The IDX and CIFAR-10 readers on files written here: round trips, gzip, and typed errors
//! naming the file for truncated, mislabelled or foreign files.

use examples::data::{
    parse_idx_images, read_cifar10, read_fashion_mnist, read_idx_images, write_cifar10_batch,
    ImageSet,
};
use examples::error::TrainError;
use std::io::Write;
use std::path::Path;

fn idx_images(n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend((0..n * h * w).map(|i| (i % 251) as u8));
    out
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn write_fmnist(dir: &Path, compressed: bool) {
    let files = [
        ("train-images-idx3-ubyte", idx_images(6, 28, 28)),
        ("train-labels-idx1-ubyte", idx_labels(&[0, 1, 2, 3, 4, 9])),
        ("t10k-images-idx3-ubyte", idx_images(2, 28, 28)),
        ("t10k-labels-idx1-ubyte", idx_labels(&[5, 6])),
    ];
    for (name, bytes) in files {
        if compressed {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn idx_files_are_read_raw_and_gzipped() {
    for compressed in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        write_fmnist(dir.path(), compressed);
        let split = read_fashion_mnist(dir.path()).unwrap();
        assert_eq!(split.train.len(), 6);
        assert_eq!(split.test.labels, vec![5, 6]);
        assert_eq!(split.train.shape, [1, 28, 28]);
        assert_eq!(split.train.image(1)[0], (784 % 251) as u8);
    }
}

#[test]
fn truncated_and_foreign_idx_files_are_malformed_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("images");
    let mut bytes = idx_images(3, 4, 4);
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&path, &bytes).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(
        matches!(&err, TrainError::Malformed { path: p, reason } if p == &path && reason.contains("promises")),
        "{err}"
    );

    std::fs::write(&path, idx_labels(&[1, 2])).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(err.to_string().contains("magic"), "{err}");

    std::fs::write(&path, [0x1f, 0x8b, 1, 2, 3]).unwrap();
    assert!(read_idx_images(&path)
        .unwrap_err()
        .to_string()
        .contains("gzip"));

    std::fs::write(&path, [0, 0]).unwrap();
    assert!(read_idx_images(&path)
        .unwrap_err()
        .to_string()
        .contains("truncated header"));
}

#[test]
fn fashion_mnist_with_mismatched_counts_or_missing_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write_fmnist(dir.path(), false);
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte"), idx_labels(&[1])).unwrap();
    let err = read_fashion_mnist(dir.path()).unwrap_err();
    assert!(err.to_string().contains("1 labels for 2 images"), "{err}");

    std::fs::write(
        dir.path().join("t10k-labels-idx1-ubyte"),
        idx_labels(&[1, 10]),
    )
    .unwrap();
    assert!(read_fashion_mnist(dir.path())
        .unwrap_err()
        .to_string()
        .contains("label 10"));

    let empty = tempfile::tempdir().unwrap();
    let err = read_fashion_mnist(empty.path()).unwrap_err();
    assert!(matches!(err, TrainError::MissingData { .. }));
    assert!(err.to_string().contains("dataset-fashion-mnist"));
}

fn cifar_set(n: usize, salt: u8) -> ImageSet {
    let pixels: Vec<u8> = (0..n * 3072)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(salt))
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    ImageSet::new(pixels, labels, [3, 32, 32], 10, Path::new("generated")).unwrap()
}

fn write_cifar(dir: &Path, per_file: usize) {
    for i in 1..=5 {
        write_cifar10_batch(
            &dir.join(format!("data_batch_{i}.bin")),
            &cifar_set(per_file, i as u8),
        )
        .unwrap();
    }
    write_cifar10_batch(&dir.join("test_batch.bin"), &cifar_set(per_file, 0)).unwrap();
}

#[test]
fn cifar10_binary_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 3);
    let split = read_cifar10(dir.path()).unwrap();
    assert_eq!(split.train.len(), 15);
    assert_eq!(split.test, cifar_set(3, 0));
    assert_eq!(split.train.image(3), cifar_set(3, 2).image(0));
    // The on-disk record: label byte, then 3,072 pixels.
    let raw = std::fs::read(dir.path().join("test_batch.bin")).unwrap();
    assert_eq!(raw.len(), 3 * 3073);
    assert_eq!(raw[3073], 1);
}

#[test]
fn truncated_or_mislabelled_cifar_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let path = dir.path().join("data_batch_3.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    let err = read_cifar10(dir.path()).unwrap_err();
    assert!(
        matches!(&err, TrainError::Malformed { path: p, .. } if p == &path),
        "{err}"
    );

    write_cifar(dir.path(), 2);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3073] = 11;
    std::fs::write(&path, &bytes).unwrap();
    assert!(read_cifar10(dir.path())
        .unwrap_err()
        .to_string()
        .contains("label 11"));

    std::fs::remove_file(dir.path().join("test_batch.bin")).unwrap();
    assert!(matches!(
        read_cifar10(dir.path()),
        Err(TrainError::MissingData { .. })
    ));
}

// Regression tests for inputs found by `scripts/fuzz.sh` (fuzz target in brackets).

/// [idx] fuzz/artifacts/idx/crash-432674aef46c708153113f5ae034ebf0b055f208 without its mode
/// byte: sizes 0x1f8b0100 × 0x300 × 0x09036360 overflow usize; the product panicked
/// ("attempt to multiply with overflow").
#[test]
fn idx_header_whose_sizes_overflow_is_malformed() {
    let bytes = [
        0x00, 0x00, 0x08, 0x03, 0x1f, 0x8b, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x09, 0x03, 0x63,
        0x60, 0xe0, 0x60, 0x64, 0x60, 0x60, 0x60, 0x66, 0xe0, 0x64, 0x01, 0x00, 0xd4,
    ];
    let source = Path::new("crash-4326");
    let err = parse_idx_images(&bytes, source).unwrap_err();
    assert!(
        matches!(&err, TrainError::Malformed { path, reason } if path == source && reason.contains("promises")),
        "{err}"
    );
    let err = parse_idx_images(&gzip(&bytes), source).unwrap_err();
    assert!(err.to_string().contains("promises"), "{err}");
}

#[test]
fn idx_headers_promising_more_than_4_gib_or_data_past_the_promise_are_malformed() {
    let source = Path::new("promise");
    // 2^16 × 2^16 × 2 bytes = 8 GiB: an error before any data is read.
    let mut huge = vec![0, 0, 8, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2];
    huge.extend([0; 64]);
    let err = parse_idx_images(&gzip(&huge), source).unwrap_err();
    assert!(
        err.to_string().contains("more than 4294967296 data bytes"),
        "{err}"
    );
    // A gzip stream inflating past the promised size is read only one byte past it.
    let mut long = idx_images(1, 2, 2);
    long.extend(std::iter::repeat_n(0, 1 << 20));
    let err = parse_idx_images(&gzip(&long), source).unwrap_err();
    assert!(err.to_string().contains("more than 4 data bytes"), "{err}");
}
