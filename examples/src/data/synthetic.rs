//! Small synthetic datasets written in the real file formats (CIFAR-10 binary, IDX), for
//! tests and smoke runs where the real data cannot be downloaded. Each class has its own mean
//! intensity, so a model can learn something from them.

use super::cifar::write_cifar10_batch;
use super::ImageSet;
use crate::error::{Result, TrainError};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;

fn images(n: usize, shape: [usize; 3], seed: u64) -> Result<ImageSet> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per: usize = shape.iter().product();
    let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10u8)).collect();
    let pixels: Vec<u8> = labels
        .iter()
        .flat_map(|&l| {
            let base = 20 + 22 * l as i32;
            (0..per)
                .map(|_| (base + rng.random_range(-20..=20)).clamp(0, 255) as u8)
                .collect::<Vec<_>>()
        })
        .collect();
    ImageSet::new(pixels, labels, shape, 10, Path::new("synthetic"))
}

/// Writes `data_batch_1.bin` … `data_batch_5.bin` (`per_file` images each) and
/// `test_batch.bin` (`test` images) into `dir`.
pub fn write_synthetic_cifar10(dir: &Path, per_file: usize, test: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    for i in 1..=5u64 {
        write_cifar10_batch(
            &dir.join(format!("data_batch_{i}.bin")),
            &images(per_file, [3, 32, 32], seed + i)?,
        )?;
    }
    write_cifar10_batch(
        &dir.join("test_batch.bin"),
        &images(test, [3, 32, 32], seed)?,
    )
}

fn write_idx(path: &Path, dims: &[usize], payload: &[u8]) -> Result<()> {
    let mut bytes = vec![0u8, 0, 8, dims.len() as u8];
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(payload);
    let file = std::fs::File::create(path).map_err(|e| TrainError::io(path, e))?;
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder
        .write_all(&bytes)
        .map_err(|e| TrainError::io(path, e))?;
    encoder.finish().map_err(|e| TrainError::io(path, e))?;
    Ok(())
}

/// Writes the four gzipped IDX files of a Fashion-MNIST-shaped dataset (1×28×28, 10
/// classes) with `train` and `test` images into `dir`.
pub fn write_synthetic_fashion_mnist(
    dir: &Path,
    train: usize,
    test: usize,
    seed: u64,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    for (prefix, n, s) in [("train", train, seed), ("t10k", test, seed + 1)] {
        let set = images(n, [1, 28, 28], s)?;
        write_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte.gz")),
            &[n, 28, 28],
            &set.pixels,
        )?;
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte.gz")),
            &[n],
            &set.labels,
        )?;
    }
    Ok(())
}

/// Writes an image folder (`dir/train/<class>/*`, `dir/test/<class>/*`) of `size`×`size` RGB
/// images, `train` and `test` per class: PNGs, and every third image a JPEG. Class `k` is
/// brighter in its `k`-th vertical band, so a model can learn something from them.
pub fn write_synthetic_image_folder(
    dir: &Path,
    classes: &[&str],
    train: usize,
    test: usize,
    size: u32,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(classes.len() as u64);
    for (split, per_class) in [("train", train), ("test", test)] {
        for (k, class) in classes.iter().enumerate() {
            let class_dir = dir.join(split).join(class);
            std::fs::create_dir_all(&class_dir).map_err(|e| TrainError::io(&class_dir, e))?;
            for i in 0..per_class {
                let band = (k as u32 * size) / classes.len() as u32;
                let width = (size / classes.len() as u32).max(1);
                let image = image::RgbImage::from_fn(size, size, |x, _| {
                    let lit = (band..band + width).contains(&x);
                    let base: i32 = if lit { 200 } else { 40 };
                    let v = (base + rng.random_range(-30..=30)).clamp(0, 255) as u8;
                    image::Rgb([v, v / 2 + 20, 255 - v])
                });
                let extension = if i % 3 == 2 { "jpg" } else { "png" };
                let path = class_dir.join(format!("{i:04}.{extension}"));
                image
                    .save(&path)
                    .map_err(|e| TrainError::malformed(&path, e.to_string()))?;
            }
        }
    }
    Ok(())
}
