//! Image classification datasets in memory: pixels as bytes, labels, and readers for the
//! IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary formats and for folders of PNG and JPEG
//! images.

mod cifar;
mod folder;
mod idx;
mod synthetic;

pub use cifar::{parse_cifar10_batch, read_cifar10, write_cifar10_batch, CIFAR10_CLASSES};
pub use folder::{
    load_image, read_image_folder, read_image_folder_split, write_image_folder_split, InputShape,
    MAX_CLASSES,
};
pub use idx::{
    parse_idx_images, parse_idx_labels, read_fashion_mnist, read_idx_images, read_idx_labels,
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR,
};
pub use synthetic::{
    write_synthetic_cifar10, write_synthetic_fashion_mnist, write_synthetic_image_folder,
};

use crate::error::{Result, TrainError};

/// Images `[N, C, H, W]` as bytes, with labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Pixels, row-major `[N, C, H, W]`.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl ImageSet {
    /// Checks that sizes agree and labels are below `classes`.
    pub fn new(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        shape: [usize; 3],
        classes: usize,
        source: &std::path::Path,
    ) -> Result<Self> {
        let per = shape.iter().product::<usize>();
        if per == 0 || pixels.len() != labels.len() * per {
            return Err(TrainError::malformed(
                source,
                format!(
                    "{} pixels for {} images of {shape:?}",
                    pixels.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(TrainError::malformed(
                source,
                format!("label {bad} ≥ {classes} classes"),
            ));
        }
        Ok(Self {
            pixels,
            labels,
            shape,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.shape.iter().product::<usize>();
        &self.pixels[i * per..(i + 1) * per]
    }

    /// The first `n` images (for quick runs).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.len());
        let per = self.shape.iter().product::<usize>();
        Self {
            pixels: self.pixels[..n * per].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
            classes: self.classes,
        }
    }
}

/// A train/test split.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training images.
    pub train: ImageSet,
    /// Test images.
    pub test: ImageSet,
    /// The name of each class, by label.
    pub class_names: Vec<String>,
    /// Fixed features of every image, for a model that reads them instead of pixels
    /// ([`crate::features`]).
    pub features: Option<std::sync::Arc<crate::features::Features>>,
}
