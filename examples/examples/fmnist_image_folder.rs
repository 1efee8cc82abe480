//! Writes Fashion-MNIST (or its first images) as an image folder of PNGs,
//! `OUT/train/<class>/*.png` and `OUT/test/<class>/*.png`, to try `dp-train --dataset
//! image-folder` on real images:
//!
//! `cargo run --release -p examples --example fmnist_image_folder -- OUT [TRAIN [TEST]]`
//!
//! Class folders are Fashion-MNIST's class names ('/' becomes '-': `T-shirt-top`).

use examples::data::{read_fashion_mnist, write_image_folder_split, FASHION_MNIST_DIR};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .ok_or("usage: fmnist_image_folder OUT [TRAIN [TEST]]")?,
    );
    let count = |i: usize| -> Result<Option<usize>, std::num::ParseIntError> {
        args.get(i).map(|v| v.parse()).transpose()
    };
    let (train, test) = (count(1)?, count(2)?);
    let split = read_fashion_mnist(FASHION_MNIST_DIR.as_ref())?;
    let names: Vec<String> = split
        .class_names
        .iter()
        .map(|n| n.replace('/', "-"))
        .collect();
    let train_set = split.train.take(train.unwrap_or(split.train.len()));
    let test_set = split.test.take(test.unwrap_or(split.test.len()));
    write_image_folder_split(&train_set, &names, &out, "train")?;
    write_image_folder_split(&test_set, &names, &out, "test")?;
    eprintln!(
        "wrote {} training and {} test images to {}",
        train_set.len(),
        test_set.len(),
        out.display()
    );
    Ok(())
}
