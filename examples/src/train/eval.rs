//! Batches as tensors, and test-set evaluation.

use super::classifier::Classifier;
use crate::augment::Augment;
use crate::data::Split;
use crate::error::Result;
use crate::features::{batch_rows, Part};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use dp_core::loss::cross_entropy_per_row;
use dp_models::finetune::upsample;

/// A batch as tensors on `device` (upsampled to `resolution` if set).
pub fn tensors<B: Backend>(
    pixels: Vec<f32>,
    labels: Vec<i64>,
    shape: [usize; 3],
    resolution: Option<usize>,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let n = labels.len();
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(pixels, [n, shape[0], shape[1], shape[2]]),
        device,
    );
    let x = match resolution {
        Some(size) => upsample(x, size),
        None => x,
    };
    (x, Tensor::from_data(TensorData::new(labels, [n]), device))
}

/// Test accuracy and mean loss of `model` on the test set of `split` (which the caller has
/// checked is not empty), read as the model reads it (pixels or fixed features).
pub fn evaluate<B: Backend, M: Classifier<B>>(
    model: &M,
    split: &Split,
    augment: &Augment,
    resolution: Option<usize>,
    device: &B::Device,
) -> Result<(f64, f64)> {
    let (mut correct, mut loss) = (0usize, 0f64);
    let set = &split.test;
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(500) {
        let (values, labels, shape) = batch_rows(split, Part::Test, chunk, augment, 0, 0)?;
        let (x, y) = tensors::<B>(values, labels, shape, resolution, device);
        let logits = model.logits(x);
        loss += cross_entropy_per_row(logits.clone(), y.clone())
            .sum()
            .into_scalar()
            .elem::<f64>();
        let predicted = logits.argmax(1).reshape([chunk.len()]);
        correct += predicted.equal(y).int().sum().into_scalar().elem::<i64>() as usize;
    }
    let n = set.len().max(1) as f64;
    Ok((correct as f64 / n, loss / n))
}
