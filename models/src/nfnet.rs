//! NFNets (Brock, De, Smith, Simonyan 2021, "High-performance large-scale image recognition
//! without normalization"), laid out like timm's `dm_nfnet_f0` … `dm_nfnet_f3` so their
//! checkpoints load (see [`crate::load`]): a four-convolution stem, four stages of bottleneck
//! blocks with grouped 3×3 convolutions (group size 128), squeeze-excite, SkipInit gains and
//! α/β signal-propagation scaling, all convolutions scaled weight-standardized with TensorFlow
//! "SAME" padding, GELU scaled by γ = 1.7015043497085571, a final 1×1 convolution to twice the
//! last width, global average pooling and a linear classifier.

use crate::error::Result;
use crate::padding::{same_output, same_padding};
use burn::module::Module;
use burn::tensor::activation::{gelu, relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::module::avg_pool2d;
use burn::tensor::{Distribution, Tensor};
use dp_core::layers::{
    Conv2d, Conv2dConfig, Linear, LinearConfig, ScalarGain, WsConv2d, WsConv2dConfig,
};
use dp_core::DpError;

/// γ of GELU: the factor that keeps a unit-Gaussian input's output at unit variance
/// (Brock et al. 2021, Appendix; timm `_nonlin_gamma`).
pub const GELU_GAMMA: f64 = 1.7015043497085571;

/// Configuration of an [`NfNet`].
#[derive(Clone, Debug, PartialEq)]
pub struct NfNetConfig {
    /// Blocks per stage.
    pub depths: [usize; 4],
    /// Output channels per stage.
    pub channels: [usize; 4],
    /// Stem output channels.
    pub stem_channels: usize,
    /// Channels per group of the 3×3 convolutions.
    pub group_size: usize,
    /// Bottleneck width over output width.
    pub bottle_ratio: f64,
    /// α: residual branch scale.
    pub alpha: f64,
    /// Squeeze-excite hidden width over block width.
    pub se_ratio: f64,
    /// Channels of the final 1×1 convolution.
    pub num_features: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height and width (for SAME padding).
    pub input_size: usize,
    /// Largest stochastic-depth rate (last block), linear from 0 over the blocks.
    pub drop_path_rate: f64,
    /// ε of the weight standardization, per unit of fan-in variance (timm's `std_conv_eps`).
    pub std_conv_eps: f64,
}

impl NfNetConfig {
    fn dm(multiplier: usize, input_size: usize) -> Self {
        Self {
            depths: [1, 2, 6, 3].map(|d| d * multiplier),
            channels: [256, 512, 1536, 1536],
            stem_channels: 128,
            group_size: 128,
            bottle_ratio: 0.5,
            alpha: 0.2,
            se_ratio: 0.5,
            num_features: 3072,
            num_classes: 1000,
            in_channels: 3,
            input_size,
            drop_path_rate: 0.0,
            std_conv_eps: 1e-5,
        }
    }

    /// NFNet-F0 at its training resolution 192.
    pub fn f0() -> Self {
        Self::dm(1, 192)
    }
    /// NFNet-F1 at 224.
    pub fn f1() -> Self {
        Self::dm(2, 224)
    }
    /// NFNet-F2 at 256.
    pub fn f2() -> Self {
        Self::dm(3, 256)
    }
    /// NFNet-F3 at 320.
    pub fn f3() -> Self {
        Self::dm(4, 320)
    }

    /// A tiny NFNet with every component of the real ones, for tests and benchmarks: widths
    /// (32, 64, 96, 128), group size 16, 10 classes, 32×32 inputs.
    pub fn tiny() -> Self {
        Self {
            depths: [1, 1, 2, 1],
            channels: [32, 64, 96, 128],
            stem_channels: 16,
            group_size: 16,
            num_features: 256,
            num_classes: 10,
            input_size: 32,
            ..Self::dm(1, 32)
        }
    }

    /// Sets the number of classes (a new classifier head).
    pub fn with_num_classes(mut self, classes: usize) -> Self {
        self.num_classes = classes;
        self
    }

    /// Sets the input resolution.
    pub fn with_input_size(mut self, size: usize) -> Self {
        self.input_size = size;
        self
    }

    /// Builds the network.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<NfNet<B>> {
        if self.depths.contains(&0)
            || self.group_size == 0
            || self.num_classes == 0
            || self.input_size < 4
        {
            return Err(DpError::invalid(
                "NfNetConfig",
                "·",
                format!("{self:?}"),
                "non-zero depths, group size and classes, input ≥ 4",
            )
            .into());
        }
        let builder = Builder {
            config: self,
            device,
        };
        let mut size = self.input_size;
        let stem = builder.stem(&mut size)?;
        let total: usize = self.depths.iter().sum();
        let mut stages = Vec::new();
        let mut c_in = self.stem_channels;
        let mut index = 0;
        // The expected variance of a block's input carries across stages; it resets after each
        // stage's first block (the shortcut there re-normalizes), as in timm and Brock et al.
        let mut expected_var = 1.0f64;
        for (stage, (&depth, &c_out)) in self.depths.iter().zip(&self.channels).enumerate() {
            let c_out = make_divisible(c_out as f64, 8, 0.9);
            let stride = if stage == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for b in 0..depth {
                let s = if b == 0 { stride } else { 1 };
                let beta = 1.0 / expected_var.sqrt();
                let rate = if total > 1 {
                    self.drop_path_rate * index as f64 / (total - 1) as f64
                } else {
                    0.0
                };
                blocks.push(builder.block(c_in, c_out, s, beta, rate, &mut size)?);
                if b == 0 {
                    expected_var = 1.0;
                }
                expected_var += self.alpha * self.alpha;
                c_in = c_out;
                index += 1;
            }
            stages.push(blocks);
        }
        let num_features = make_divisible(self.num_features as f64, 8, 0.9);
        Ok(NfNet {
            stem,
            stages,
            final_conv: builder.ws(c_in, num_features, 1, 1, 1, size, 1.0)?,
            head: Head {
                fc: LinearConfig::new(num_features, self.num_classes).init(device)?,
            },
        })
    }
}

/// timm's `make_divisible`: round `v` to a multiple of `divisor`, not below 90% (or
/// `round_limit`) of `v`.
pub fn make_divisible(v: f64, divisor: usize, round_limit: f64) -> usize {
    let d = divisor as f64;
    let mut new = (((v + d / 2.0) / d).floor() * d).max(d);
    if new < round_limit * v {
        new += d;
    }
    new as usize
}

struct Builder<'a, B: Backend> {
    config: &'a NfNetConfig,
    device: &'a B::Device,
}

impl<B: Backend> Builder<'_, B> {
    #[allow(clippy::too_many_arguments)]
    fn ws(
        &self,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        groups: usize,
        size: usize,
        gain: f32,
    ) -> Result<WsConv2d<B>> {
        let (a, b) = same_padding(size, kernel, stride, 1);
        let conv = Conv2dConfig::new([c_in, c_out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_asymmetric_padding([a, a], [b, b]);
        let fan_in = c_in / groups * kernel * kernel;
        let mut layer = WsConv2dConfig::new(conv)
            .with_eps(self.config.std_conv_eps * fan_in as f64)
            .init::<B>(self.device)?;
        if gain != 1.0 {
            layer.gain = layer.gain.map(|g| g.mul_scalar(gain));
        }
        Ok(layer)
    }

    fn stem(&self, size: &mut usize) -> Result<Stem<B>> {
        let c = self.config.stem_channels;
        let chs = [c / 8, c / 4, c / 2, c];
        let strides = [2, 1, 1, 2];
        let mut c_in = self.config.in_channels;
        let mut convs = Vec::new();
        for (&c_out, &s) in chs.iter().zip(&strides) {
            convs.push(self.ws(c_in, c_out, 3, s, 1, *size, 1.0)?);
            *size = same_output(*size, s);
            c_in = c_out;
        }
        let mut it = convs.into_iter();
        let mut next = || it.next().ok_or_else(|| DpError::Shape("stem".into()));
        Ok(Stem {
            conv1: next()?,
            conv2: next()?,
            conv3: next()?,
            conv4: next()?,
        })
    }

    fn block(
        &self,
        c_in: usize,
        c_out: usize,
        stride: usize,
        beta: f64,
        drop_path: f64,
        size: &mut usize,
    ) -> Result<NfBlock<B>> {
        let cfg = self.config;
        let mut mid = make_divisible(c_out as f64 * cfg.bottle_ratio, 8, 0.9);
        let groups = (mid / cfg.group_size).max(1);
        if cfg.group_size.is_multiple_of(8) {
            mid = cfg.group_size * groups;
        }
        let downsample = (c_in != c_out || stride != 1)
            .then(|| {
                Ok::<_, crate::ModelError>(Downsample {
                    conv: self.ws(c_in, c_out, 1, 1, 1, same_output(*size, stride), 1.0)?,
                    stride,
                })
            })
            .transpose()?;
        let conv1 = self.ws(c_in, mid, 1, 1, 1, *size, 1.0)?;
        let conv2 = self.ws(mid, mid, 3, stride, groups, *size, 1.0)?;
        *size = same_output(*size, stride);
        let conv2b = self.ws(mid, mid, 3, 1, groups, *size, 1.0)?;
        let conv3 = self.ws(mid, c_out, 1, 1, 1, *size, 1.0)?;
        let hidden = make_divisible(c_out as f64 * cfg.se_ratio, 8, 0.0);
        let se_conv = |a, b| Conv2dConfig::new([a, b], [1, 1]).init::<B>(self.device);
        Ok(NfBlock {
            downsample,
            conv1,
            conv2,
            conv2b,
            conv3,
            attn_last: SqueezeExcite {
                fc1: se_conv(c_out, hidden)?,
                fc2: se_conv(hidden, c_out)?,
            },
            skipinit_gain: ScalarGain::new(0.0, self.device),
            alpha: cfg.alpha,
            beta,
            drop_path,
        })
    }
}

/// γ-scaled GELU.
fn act<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    gelu(x).mul_scalar(GELU_GAMMA)
}

/// The "deep quad" stem: four 3×3 convolutions, strides 2, 1, 1, 2.
#[derive(Module, Debug)]
pub struct Stem<B: Backend> {
    /// in → c/8, stride 2.
    pub conv1: WsConv2d<B>,
    /// c/8 → c/4.
    pub conv2: WsConv2d<B>,
    /// c/4 → c/2.
    pub conv3: WsConv2d<B>,
    /// c/2 → c, stride 2.
    pub conv4: WsConv2d<B>,
}

impl<B: Backend> Stem<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = act(self.conv1.forward(x));
        let x = act(self.conv2.forward(x));
        let x = act(self.conv3.forward(x));
        self.conv4.forward(x)
    }
}

/// Average-pool then 1×1 convolution on the shortcut when shape changes.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// 1×1 convolution.
    pub conv: WsConv2d<B>,
    /// Pooling stride (1: no pooling).
    pub stride: usize,
}

impl<B: Backend> Downsample<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let x = if self.stride > 1 {
            shortcut_pool(x, self.stride)
        } else {
            x
        };
        self.conv.forward(x)
    }
}

/// timm's shortcut pooling: 2×2 average, ceil mode, padding not counted. Along a side of one
/// pixel the window holds that pixel alone, so the kernel is 1 there: burn's generic pooling
/// (wgpu, CUDA) computes its output size as `size − (kernel − 1) − 1`, which underflows for a
/// side shorter than the kernel (flex does not; NFNet-tiny at 16×16 reaches 1×1).
fn shortcut_pool<B: Backend>(x: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    let kernel = [h.clamp(1, 2), w.clamp(1, 2)];
    avg_pool2d(x, kernel, [stride, stride], [0, 0], false, true)
}

/// Squeeze-excite: channel gates from the globally pooled features.
#[derive(Module, Debug)]
pub struct SqueezeExcite<B: Backend> {
    /// Channels → hidden (1×1 convolution with bias).
    pub fc1: Conv2d<B>,
    /// Hidden → channels.
    pub fc2: Conv2d<B>,
}

impl<B: Backend> SqueezeExcite<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let pooled = x.clone().mean_dim(3).mean_dim(2);
        let gate = sigmoid(self.fc2.forward(relu(self.fc1.forward(pooled))));
        x * gate
    }
}

/// An NFNet bottleneck block: x + α·g·SE(conv3(φ(conv2b(φ(conv2(φ(conv1(φ(x)·β)))))))).
#[derive(Module, Debug)]
pub struct NfBlock<B: Backend> {
    /// Shortcut projection when the shape changes.
    pub downsample: Option<Downsample<B>>,
    /// 1×1 to the bottleneck.
    pub conv1: WsConv2d<B>,
    /// Grouped 3×3 (carries the stride).
    pub conv2: WsConv2d<B>,
    /// Grouped 3×3.
    pub conv2b: WsConv2d<B>,
    /// 1×1 from the bottleneck.
    pub conv3: WsConv2d<B>,
    /// Squeeze-excite.
    pub attn_last: SqueezeExcite<B>,
    /// SkipInit gain (starts at 0).
    pub skipinit_gain: ScalarGain<B>,
    /// α.
    pub alpha: f64,
    /// β = 1/expected std of the input.
    pub beta: f64,
    /// Stochastic-depth rate of this block.
    pub drop_path: f64,
}

impl<B: Backend> NfBlock<B> {
    fn forward(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 4> {
        let out = act(x.clone()).mul_scalar(self.beta);
        let shortcut = match &self.downsample {
            Some(d) => d.forward(out.clone()),
            None => x,
        };
        let out = self.conv1.forward(out);
        let out = self.conv2.forward(act(out));
        let out = self.conv2b.forward(act(out));
        let out = self.conv3.forward(act(out));
        let mut out = self.attn_last.forward(out).mul_scalar(2.0);
        if train && self.drop_path > 0.0 {
            // Per-example stochastic depth (the mask is data-independent randomness).
            let keep = 1.0 - self.drop_path;
            let n = out.dims()[0];
            let mask =
                Tensor::<B, 4>::random([n, 1, 1, 1], Distribution::Bernoulli(keep), &out.device());
            out = out * mask.div_scalar(keep);
        }
        self.skipinit_gain.forward(out).mul_scalar(self.alpha) + shortcut
    }
}

/// The classifier: global average pooling then a linear layer.
#[derive(Module, Debug)]
pub struct Head<B: Backend> {
    /// Linear classifier `[features, classes]`.
    pub fc: Linear<B>,
}

/// A normalizer-free network.
#[derive(Module, Debug)]
pub struct NfNet<B: Backend> {
    /// Stem.
    pub stem: Stem<B>,
    /// Stages of blocks.
    pub stages: Vec<Vec<NfBlock<B>>>,
    /// Final 1×1 convolution.
    pub final_conv: WsConv2d<B>,
    /// Classifier.
    pub head: Head<B>,
}

impl<B: Backend> NfNet<B> {
    fn run(&self, x: Tensor<B, 4>, train: bool) -> Tensor<B, 2> {
        let mut h = self.stem.forward(x);
        for block in self.stages.iter().flatten() {
            h = block.forward(h, train);
        }
        let h = act(self.final_conv.forward(h));
        let [n, c, _, _] = h.dims();
        self.head
            .fc
            .forward(h.mean_dim(3).mean_dim(2).reshape([n, c]))
    }

    /// Logits for evaluation (no stochastic depth).
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.run(x, false)
    }

    /// Logits for training: per-example stochastic depth where configured.
    pub fn forward_train(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.run(x, true)
    }
}

#[cfg(test)]
mod tests {
    use super::shortcut_pool;
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData};

    /// timm's AvgPool2d(2, stride 2, ceil_mode=True, count_include_pad=False), by hand: on a
    /// 3×3 input the windows at the edge hold only the pixels inside; on 1×1 the pixel alone.
    #[test]
    fn shortcut_pooling_counts_only_pixels_inside_and_accepts_one_pixel() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new((0..9).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 3, 3]),
            &device,
        );
        let y: Vec<f32> = shortcut_pool(x, 2).into_data().to_vec().unwrap();
        assert_eq!(y, vec![2.0, 3.5, 6.5, 8.0]);
        let one = Tensor::<Flex, 4>::from_floats([[[[1.5]]]], &device);
        let y: Vec<f32> = shortcut_pool(one, 2).into_data().to_vec().unwrap();
        assert_eq!(y, vec![1.5]);
    }
}
