//! A 2-D convolution that records per-example gradient data in a private forward.

use crate::error::{DpError, Result};
use crate::per_example::im2col::ConvGeometry;
use crate::per_example::LayerData;
use crate::tape::with_tape;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
use burn::tensor::ops::PaddedConvOptions;
use burn::tensor::{Distribution, Tensor};

/// Configuration of a [`Conv2d`] layer (shared by [`crate::layers::WsConv2d`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2dConfig {
    /// `[in, out]` channels.
    pub channels: [usize; 2],
    /// `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// Zero padding before: `[top, left]`.
    pub padding: [usize; 2],
    /// Zero padding after: `[bottom, right]`; `None` = same as before.
    pub padding_end: Option<[usize; 2]>,
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups; both channel counts must be divisible by it.
    pub groups: usize,
    /// Whether to add a bias.
    pub bias: bool,
}

impl Conv2dConfig {
    /// Stride 1, no padding, no dilation, one group, with bias.
    pub fn new(channels: [usize; 2], kernel_size: [usize; 2]) -> Self {
        Self {
            channels,
            kernel_size,
            stride: [1, 1],
            padding: [0, 0],
            padding_end: None,
            dilation: [1, 1],
            groups: 1,
            bias: true,
        }
    }

    /// Sets the stride.
    pub fn with_stride(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// Sets symmetric zero padding.
    pub fn with_padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self.padding_end = None;
        self
    }

    /// Sets asymmetric zero padding (TensorFlow "SAME" padding needs it).
    pub fn with_asymmetric_padding(mut self, start: [usize; 2], end: [usize; 2]) -> Self {
        self.padding = start;
        self.padding_end = Some(end);
        self
    }

    /// Sets the dilation.
    pub fn with_dilation(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets the number of groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Checks the configuration (burn itself panics on bad ones).
    pub fn validate(&self) -> Result<()> {
        let [c_in, c_out] = self.channels;
        let positive = |name: &'static str, v: [usize; 2]| {
            if v[0] == 0 || v[1] == 0 {
                Err(DpError::invalid(name, "·", format!("{v:?}"), ">= 1"))
            } else {
                Ok(())
            }
        };
        positive("channels", self.channels)?;
        positive("kernel_size", self.kernel_size)?;
        positive("stride", self.stride)?;
        positive("dilation", self.dilation)?;
        if self.groups == 0 || c_in % self.groups != 0 || c_out % self.groups != 0 {
            return Err(DpError::invalid(
                "groups",
                "G",
                self.groups,
                "≥ 1 and a divisor of both channel counts",
            ));
        }
        Ok(())
    }

    pub(crate) fn geometry(&self) -> ConvGeometry {
        ConvGeometry {
            kernel: self.kernel_size,
            stride: self.stride,
            padding_start: self.padding,
            padding_end: self.padding_end.unwrap_or(self.padding),
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    pub(crate) fn fan_in(&self) -> usize {
        self.channels[0] / self.groups * self.kernel_size[0] * self.kernel_size[1]
    }

    pub(crate) fn weight_dims(&self) -> [usize; 4] {
        let [c_in, c_out] = self.channels;
        [
            c_out,
            c_in / self.groups,
            self.kernel_size[0],
            self.kernel_size[1],
        ]
    }

    /// A layer with weights uniform in ±1/√fan_in (PyTorch's default), bias likewise.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Conv2d<B>> {
        self.validate()?;
        let bound = 1.0 / (self.fan_in() as f64).sqrt();
        let uniform = Distribution::Uniform(-bound, bound);
        let weight = Param::from_tensor(Tensor::random(self.weight_dims(), uniform, device));
        let bias = self
            .bias
            .then(|| Param::from_tensor(Tensor::random([self.channels[1]], uniform, device)));
        Ok(Conv2d::from_parts(weight, bias, &self.geometry()))
    }
}

/// A 2-D convolution over `[N, C, H, W]` inputs, weight `[C_out, C_in/groups, kh, kw]`.
#[derive(Module, Debug)]
pub struct Conv2d<B: Backend> {
    /// `[C_out, C_in/groups, kh, kw]`.
    pub weight: Param<Tensor<B, 4>>,
    /// `[C_out]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// `[sh, sw]`.
    pub stride: [usize; 2],
    /// `[top, left]`.
    pub padding_start: [usize; 2],
    /// `[bottom, right]`.
    pub padding_end: [usize; 2],
    /// `[dh, dw]`.
    pub dilation: [usize; 2],
    /// Groups.
    pub groups: usize,
}

impl<B: Backend> Conv2d<B> {
    pub(crate) fn from_parts(
        weight: Param<Tensor<B, 4>>,
        bias: Option<Param<Tensor<B, 1>>>,
        geo: &ConvGeometry,
    ) -> Self {
        Self {
            weight,
            bias,
            stride: geo.stride,
            padding_start: geo.padding_start,
            padding_end: geo.padding_end,
            dilation: geo.dilation,
            groups: geo.groups,
        }
    }

    pub(crate) fn geometry(&self) -> ConvGeometry {
        let dims = self.weight.dims();
        ConvGeometry {
            kernel: [dims[2], dims[3]],
            stride: self.stride,
            padding_start: self.padding_start,
            padding_end: self.padding_end,
            dilation: self.dilation,
            groups: self.groups,
        }
    }

    /// Applies the convolution; in a private forward, also records its input.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let geo = self.geometry();
        let y = conv(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            &geo,
        );
        let weight = self.weight.id;
        let bias = self.bias.as_ref().map(|b| b.id);
        record_conv(y, |trainable, _output| {
            let weight = Some(weight).filter(|id| trainable(*id));
            let bias = bias.filter(|id| trainable(*id));
            (weight.is_some() || bias.is_some()).then(|| LayerData::Conv {
                weight,
                bias,
                input: x,
                geometry: geo,
                weight_dims: self.weight.dims(),
            })
        })
    }
}

/// burn's convolution with this crate's geometry.
pub(crate) fn conv<B: Backend>(
    x: Tensor<B, 4>,
    w: Tensor<B, 4>,
    b: Option<Tensor<B, 1>>,
    geo: &ConvGeometry,
) -> Tensor<B, 4> {
    let options = PaddedConvOptions::asymmetric(
        geo.stride,
        geo.padding_start,
        geo.padding_end,
        geo.dilation,
        geo.groups,
    );
    conv2d(x, w, b, options)
}

/// In a private forward, probes a convolution output `[N, C, H, W]` (as `[N, C, H·W]`).
pub(crate) fn record_conv<B: Backend>(
    y: Tensor<B, 4>,
    data: impl FnOnce(&dyn Fn(burn::module::ParamId) -> bool, Tensor<B, 3>) -> Option<LayerData<B>>,
) -> Tensor<B, 4> {
    let dims = y.dims();
    let probed = with_tape::<B, _>(|tape| {
        let output = y.clone().reshape([dims[0], dims[1], dims[2] * dims[3]]);
        let data = data(&|id| tape.is_trainable(id), output.clone())?;
        Some(tape.probe(output, data))
    });
    match probed.flatten() {
        Some(out) => out.reshape(dims),
        None => y,
    }
}
