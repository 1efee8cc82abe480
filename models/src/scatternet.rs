//! Tramèr & Boneh 2021's ScatterNet models: scattering features (see [`crate::scattering`],
//! computed outside the model, once per image), normalized per example by a GroupNorm without
//! parameters, then a linear classifier or a small tanh CNN.
//!
//! Heads (their `models.py`):
//! - linear: one dense layer on the flattened features (81·7·7 = 3,969 inputs for 28×28
//!   grayscale images);
//! - CNN for 28×28 grayscale images (81 × 7 × 7 features): conv 16 3×3 stride 2 padding 1,
//!   tanh, conv 32 3×3 padding 1, tanh, linear 32, tanh, linear;
//! - CNN for 32×32 colour images (243 × 8 × 8): conv 64 3×3 padding 1, tanh, max-pool 2
//!   stride 2, conv 64 3×3 padding 1, tanh, linear.

use crate::error::Result;
use crate::kernels::tanh::tanh;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::module::max_pool2d;
use burn::tensor::Tensor;
use dp_core::layers::{Conv2d, Conv2dConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use dp_core::DpError;
use serde::{Deserialize, Serialize};

/// The classifier on the normalized features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScatterHead {
    /// A linear model.
    Linear,
    /// The CNN for features of 28×28 grayscale images (MNIST, Fashion-MNIST).
    CnnGray,
    /// The CNN for features of 32×32 colour images (CIFAR-10).
    CnnColor,
}

/// Configuration of a [`ScatterNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterNetConfig {
    /// `[K, H, W]` of the scattering features.
    pub features: [usize; 3],
    /// Groups of the feature GroupNorm (Tramèr & Boneh tried 9, 27 and 81).
    pub groups: usize,
    /// The head.
    pub head: ScatterHead,
    /// Classes.
    pub classes: usize,
}

impl ScatterNetConfig {
    /// A model on features `[K, H, W]`.
    pub fn new(features: [usize; 3], groups: usize, head: ScatterHead, classes: usize) -> Self {
        Self {
            features,
            groups,
            head,
            classes,
        }
    }

    /// The model, its layers initialized as dp-core's layers are.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<ScatterNet<B>> {
        let [k, h, w] = self.features;
        if self.classes == 0 {
            return Err(DpError::invalid("classes", "classes", 0, "≥ 1").into());
        }
        let need = |ok: bool, what: &str| -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(DpError::Shape(format!(
                    "the {:?} ScatterNet head needs features {what}, got {:?}",
                    self.head, self.features
                ))
                .into())
            }
        };
        need(k > 0 && h > 0 && w > 0, "with at least one value")?;
        let norm = GroupNormConfig::new(self.groups, k)
            .with_affine(false)
            .init(device)?;
        let conv = |c: [usize; 2], stride: usize| {
            Conv2dConfig::new(c, [3, 3])
                .with_stride([stride, stride])
                .with_padding([1, 1])
                .init(device)
        };
        let head = match self.head {
            ScatterHead::Linear => {
                Head::Linear(LinearConfig::new(k * h * w, self.classes).init(device)?)
            }
            ScatterHead::CnnGray => {
                need(h == 7 && w == 7, "of 7×7 (a 28×28 image, J = 2)")?;
                Head::CnnGray(GrayCnn {
                    conv1: conv([k, 16], 2)?,
                    conv2: conv([16, 32], 1)?,
                    fc1: LinearConfig::new(32 * 4 * 4, 32).init(device)?,
                    fc2: LinearConfig::new(32, self.classes).init(device)?,
                })
            }
            ScatterHead::CnnColor => {
                need(h == 8 && w == 8, "of 8×8 (a 32×32 image, J = 2)")?;
                Head::CnnColor(ColorCnn {
                    conv1: conv([k, 64], 1)?,
                    conv2: conv([64, 64], 1)?,
                    fc: LinearConfig::new(64 * 4 * 4, self.classes).init(device)?,
                })
            }
        };
        Ok(ScatterNet { norm, head })
    }
}

/// GroupNorm on scattering features, then a linear or CNN head.
#[derive(Module, Debug)]
pub struct ScatterNet<B: Backend> {
    /// Per-example normalization of the features (no parameters).
    pub norm: GroupNorm<B>,
    /// The classifier.
    pub head: Head<B>,
}

/// The classifier of a [`ScatterNet`].
// One per model, so the variants' sizes do not matter (burn's derive takes no Box).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head<B: Backend> {
    /// A linear model on the flattened features.
    Linear(Linear<B>),
    /// [`ScatterHead::CnnGray`].
    CnnGray(GrayCnn<B>),
    /// [`ScatterHead::CnnColor`].
    CnnColor(ColorCnn<B>),
}

/// The CNN head for features of 28×28 grayscale images.
#[derive(Module, Debug)]
pub struct GrayCnn<B: Backend> {
    /// K → 16, 3×3, stride 2, padding 1.
    pub conv1: Conv2d<B>,
    /// 16 → 32, 3×3, padding 1.
    pub conv2: Conv2d<B>,
    /// 512 → 32.
    pub fc1: Linear<B>,
    /// 32 → classes.
    pub fc2: Linear<B>,
}

/// The CNN head for features of 32×32 colour images.
#[derive(Module, Debug)]
pub struct ColorCnn<B: Backend> {
    /// K → 64, 3×3, padding 1.
    pub conv1: Conv2d<B>,
    /// 64 → 64, 3×3, padding 1 (after a 2×2 max-pool).
    pub conv2: Conv2d<B>,
    /// 1024 → classes.
    pub fc: Linear<B>,
}

fn flatten<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c * h * w])
}

impl<B: Backend> ScatterNet<B> {
    /// Logits `[N, classes]` of features `[N, K, H, W]`.
    pub fn forward(&self, features: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = self.norm.forward(features);
        match &self.head {
            Head::Linear(linear) => linear.forward(flatten(x)),
            Head::CnnGray(cnn) => {
                let x = tanh(cnn.conv1.forward(x));
                let x = flatten(tanh(cnn.conv2.forward(x)));
                cnn.fc2.forward(tanh(cnn.fc1.forward(x)))
            }
            Head::CnnColor(cnn) => {
                let x = tanh(cnn.conv1.forward(x));
                let x = max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
                cnn.fc.forward(flatten(tanh(cnn.conv2.forward(x))))
            }
        }
    }
}
