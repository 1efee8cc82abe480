//! Wide residual networks as De et al. 2022 trained them privately on CIFAR-10 (jax_privacy's
//! `WideResNet`): a 3×3 convolution to 16 channels, three stages of (depth − 4)/6
//! pre-activation blocks of widths 16k, 32k, 64k and strides 1, 2, 2, each block
//! activation → GroupNorm → weight-standardized 3×3 convolution, twice, with a projection
//! shortcut (activation → GroupNorm → 1×1 weight-standardized convolution) on the first block
//! of every stage; then activation → GroupNorm → global mean → linear. TensorFlow "SAME"
//! padding. No BatchNorm anywhere.
//!
//! Parameter names (also the safetensors layout read by [`crate::load`]): `stem.{weight,gain,
//! bias}`, `blocks.{i}.{norm1,norm2}.{gamma,beta}`, `blocks.{i}.{conv1,conv2}.{weight,gain,
//! bias}`, `blocks.{i}.shortcut.norm.{gamma,beta}`, `blocks.{i}.shortcut.conv.{weight,gain,
//! bias}`, `final_norm.{gamma,beta}`, `head.{weight,bias}` with the head weight
//! `[features, classes]`.

use crate::error::Result;
use crate::padding::{same_output, same_padding};
use burn::module::Module;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dp_core::layers::{
    Conv2dConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, WsConv2d, WsConv2dConfig,
};
use dp_core::DpError;

/// Configuration of a [`WideResNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct WideResNetConfig {
    /// d: 6n + 4 layers.
    pub depth: usize,
    /// k: width multiplier.
    pub width: usize,
    /// Output classes.
    pub num_classes: usize,
    /// GroupNorm groups (16 in De et al.).
    pub groups: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width (for SAME padding).
    pub input_size: usize,
    /// ε of the weight standardization.
    pub ws_eps: f64,
}

impl WideResNetConfig {
    /// WRN-depth-width for 3×32×32 inputs, GroupNorm with 16 groups.
    pub fn new(depth: usize, width: usize, num_classes: usize) -> Self {
        Self {
            depth,
            width,
            num_classes,
            groups: 16,
            in_channels: 3,
            input_size: 32,
            ws_eps: 1e-4,
        }
    }

    /// Sets the number of GroupNorm groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the input resolution.
    pub fn with_input_size(mut self, input_size: usize) -> Self {
        self.input_size = input_size;
        self
    }

    /// Blocks per stage, (d − 4)/6.
    pub fn blocks_per_stage(&self) -> Result<usize> {
        if self.depth < 10 || !(self.depth - 4).is_multiple_of(6) {
            return Err(DpError::invalid(
                "depth",
                "d",
                self.depth,
                "of the form 6n + 4 with n ≥ 1",
            )
            .into());
        }
        Ok((self.depth - 4) / 6)
    }

    /// Builds the network.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::module::Module;
    /// let wrn = dp_models::WideResNetConfig::new(16, 4, 10).init::<Flex>(&Default::default())?;
    /// assert_eq!(wrn.num_params(), 2_753_818); // ≈ 2.7M (Zagoruyko & Komodakis 2016, Table 1)
    /// # Ok::<(), dp_models::ModelError>(())
    /// ```
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<WideResNet<B>> {
        let n = self.blocks_per_stage()?;
        if self.width == 0 || self.num_classes == 0 || self.input_size == 0 {
            return Err(DpError::invalid(
                "width, num_classes, input_size",
                "·",
                format!("{}, {}, {}", self.width, self.num_classes, self.input_size),
                ">= 1",
            )
            .into());
        }
        let conv = |c_in: usize, c_out: usize, kernel: usize, stride: usize, size: usize| {
            let (a, b) = same_padding(size, kernel, stride, 1);
            let config = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
                .with_stride([stride, stride])
                .with_asymmetric_padding([a, a], [b, b]);
            WsConv2dConfig::new(config)
                .with_eps(self.ws_eps)
                .init::<B>(device)
        };
        let norm = |c: usize| GroupNormConfig::new(self.groups.min(c), c).init::<B>(device);
        let mut size = self.input_size;
        let stem = conv(self.in_channels, 16, 3, 1, size)?;
        let mut blocks = Vec::new();
        let mut c_in = 16;
        for (stage, stride) in [1usize, 2, 2].into_iter().enumerate() {
            let width = (16 * self.width) << stage;
            for i in 0..n {
                let s = if i == 0 { stride } else { 1 };
                let shortcut = if i == 0 {
                    Some(Shortcut {
                        norm: norm(c_in)?,
                        conv: conv(c_in, width, 1, s, size)?,
                    })
                } else {
                    None
                };
                let conv1 = conv(c_in, width, 3, s, size)?;
                size = same_output(size, s);
                blocks.push(WrnBlock {
                    shortcut,
                    norm1: norm(c_in)?,
                    conv1,
                    norm2: norm(width)?,
                    conv2: conv(width, width, 3, 1, size)?,
                });
                c_in = width;
            }
        }
        Ok(WideResNet {
            stem,
            blocks,
            final_norm: norm(c_in)?,
            head: LinearConfig::new(c_in, self.num_classes).init(device)?,
        })
    }
}

/// The projection shortcut of the first block of a stage.
#[derive(Module, Debug)]
pub struct Shortcut<B: Backend> {
    /// GroupNorm of the activated input.
    pub norm: GroupNorm<B>,
    /// 1×1 weight-standardized convolution.
    pub conv: WsConv2d<B>,
}

/// One pre-activation residual block.
#[derive(Module, Debug)]
pub struct WrnBlock<B: Backend> {
    /// Projection shortcut (first block of a stage), identity otherwise.
    pub shortcut: Option<Shortcut<B>>,
    /// Norm before the first convolution.
    pub norm1: GroupNorm<B>,
    /// First 3×3 convolution (carries the stage's stride).
    pub conv1: WsConv2d<B>,
    /// Norm before the second convolution.
    pub norm2: GroupNorm<B>,
    /// Second 3×3 convolution.
    pub conv2: WsConv2d<B>,
}

impl<B: Backend> WrnBlock<B> {
    /// x + f(x).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let skip = match &self.shortcut {
            Some(s) => s.conv.forward(s.norm.forward(relu(x.clone()))),
            None => x.clone(),
        };
        let h = self.conv1.forward(self.norm1.forward(relu(x)));
        let h = self.conv2.forward(self.norm2.forward(relu(h)));
        h + skip
    }
}

/// A wide residual network (Zagoruyko & Komodakis 2016) with GroupNorm and weight
/// standardization (De et al. 2022).
#[derive(Module, Debug)]
pub struct WideResNet<B: Backend> {
    /// 3×3 convolution to 16 channels.
    pub stem: WsConv2d<B>,
    /// The residual blocks of the three stages, in order.
    pub blocks: Vec<WrnBlock<B>>,
    /// Norm before pooling.
    pub final_norm: GroupNorm<B>,
    /// Classifier.
    pub head: Linear<B>,
}

impl<B: Backend> WideResNet<B> {
    /// Pooled features `[N, 64k]` of images `[N, C, H, W]`.
    pub fn features(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = self.stem.forward(x);
        for block in &self.blocks {
            h = block.forward(h);
        }
        let h = self.final_norm.forward(relu(h));
        let [n, c, _, _] = h.dims();
        h.mean_dim(3).mean_dim(2).reshape([n, c])
    }

    /// Logits `[N, classes]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.features(x))
    }
}
