//! Private fine-tuning surgery: a new classifier head, frozen early layers, upsampled inputs.
//!
//! Frozen parameters do not require grad, so dp-core computes no per-example gradients for
//! them, adds no noise to them and they cost no privacy budget.

use crate::error::Result;
use crate::nfnet::{Head, NfNet};
use crate::wrn::WideResNet;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;
use dp_core::layers::{Linear, LinearConfig};

/// A zero-initialized linear classifier (the usual start for private fine-tuning: the first
/// noisy steps do not fight a random head).
fn zero_head<B: Backend>(features: usize, classes: usize, device: &B::Device) -> Result<Linear<B>> {
    let mut head = LinearConfig::new(features, classes).init::<B>(device)?;
    head.weight = Param::from_tensor(Tensor::zeros([features, classes], device));
    head.bias = Some(Param::from_tensor(Tensor::zeros([classes], device)));
    Ok(head)
}

/// `model` with a new, zero-initialized head for `classes` classes.
pub fn replace_nfnet_head<B: Backend>(
    mut model: NfNet<B>,
    classes: usize,
    device: &B::Device,
) -> Result<NfNet<B>> {
    let features = model.head.fc.weight.dims()[0];
    model.head = Head {
        fc: zero_head(features, classes, device)?,
    };
    Ok(model)
}

/// `model` with a new, zero-initialized head for `classes` classes.
pub fn replace_wrn_head<B: Backend>(
    mut model: WideResNet<B>,
    classes: usize,
    device: &B::Device,
) -> Result<WideResNet<B>> {
    let features = model.head.weight.dims()[0];
    model.head = zero_head(features, classes, device)?;
    Ok(model)
}

/// Freezes everything but the last `trainable_stages` stages (with the final 1×1 convolution
/// when at least one stage trains) and, if `train_head`, the classifier.
pub fn freeze_nfnet<B: Backend>(
    mut model: NfNet<B>,
    trainable_stages: usize,
    train_head: bool,
) -> NfNet<B> {
    let frozen = model.stages.len().saturating_sub(trainable_stages);
    model.stem = model.stem.no_grad();
    for stage in model.stages.iter_mut().take(frozen) {
        *stage = stage.iter().map(|b| b.clone().no_grad()).collect();
    }
    if trainable_stages == 0 {
        model.final_conv = model.final_conv.no_grad();
    }
    if !train_head {
        model.head = model.head.no_grad();
    }
    model
}

/// Freezes everything but the last `trainable_stages` of the three stages (the final norm
/// trains with the last stage) and, if `train_head`, the classifier.
pub fn freeze_wrn<B: Backend>(
    mut model: WideResNet<B>,
    trainable_stages: usize,
    train_head: bool,
) -> WideResNet<B> {
    let per_stage = model.blocks.len() / 3;
    let frozen = 3usize.saturating_sub(trainable_stages) * per_stage;
    model.stem = model.stem.no_grad();
    for block in model.blocks.iter_mut().take(frozen) {
        *block = block.clone().no_grad();
    }
    if trainable_stages == 0 {
        model.final_norm = model.final_norm.no_grad();
    }
    if !train_head {
        model.head = model.head.no_grad();
    }
    model
}

/// Bilinearly resizes images `[N, C, H, W]` to `size × size` (e.g. CIFAR's 32 to a pretrained
/// network's resolution).
pub fn upsample<B: Backend>(x: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if h == size && w == size {
        return x;
    }
    interpolate(
        x,
        [size, size],
        InterpolateOptions::new(InterpolateMode::Bilinear),
    )
}
