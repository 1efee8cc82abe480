//! The weight-standardized convolution of NFNets and De et al. 2022.

use super::conv2d::{conv, record_conv, Conv2dConfig};
use crate::error::{DpError, Result};
use crate::per_example::im2col::ConvGeometry;
use crate::per_example::{ws_keeps_output, LayerData, WsIds, WsValues};
use crate::tape::layer_value;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// Configuration of a [`WsConv2d`]: a convolution configuration plus the ε of the
/// standardization.
#[derive(Clone, Debug, PartialEq)]
pub struct WsConv2dConfig {
    /// Geometry and channels.
    pub conv: Conv2dConfig,
    /// ε in w' = γ·(w − μ)/√(fan_in·var + ε).
    pub eps: f64,
}

impl WsConv2dConfig {
    /// A standardized convolution with ε = 1e-4 (haiku's NFNet default).
    pub fn new(conv: Conv2dConfig) -> Self {
        Self { conv, eps: 1e-4 }
    }

    /// Sets ε.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// A layer with standard-normal raw weights (their scale is standardized away), gain 1 and
    /// bias 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<WsConv2d<B>> {
        self.conv.validate()?;
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(DpError::invalid("eps", "ε", self.eps, ">= 0 and finite"));
        }
        let weight = Tensor::random(
            self.conv.weight_dims(),
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let c_out = self.conv.channels[1];
        let bias = self
            .conv
            .bias
            .then(|| Param::from_tensor(Tensor::zeros([c_out], device)));
        Ok(WsConv2d::from_parts(
            Param::from_tensor(weight),
            Param::from_tensor(Tensor::ones([c_out], device)),
            bias,
            &self.conv.geometry(),
            self.eps,
        ))
    }
}

/// A convolution whose weight is standardized per output channel before use (scaled weight
/// standardization, Brock et al. 2021; De et al. 2022):
/// w' = γ·(w − μ)/√(fan_in·var + ε), with μ and var the mean and variance of the channel's
/// fan_in raw weights and γ a learnable gain.
///
/// # Privacy
/// The optimizer updates the raw weight w and the gain γ, so per-example gradients are taken
/// with respect to them, through the standardization's Jacobian — not with respect to w'.
#[derive(Module, Debug)]
pub struct WsConv2d<B: Backend> {
    /// Raw weight `[C_out, C_in/groups, kh, kw]`.
    pub weight: Param<Tensor<B, 4>>,
    /// Gain γ `[C_out]`.
    pub gain: Param<Tensor<B, 1>>,
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
    /// ε of the standardization.
    pub eps: f64,
}

impl<B: Backend> WsConv2d<B> {
    pub(crate) fn from_parts(
        weight: Param<Tensor<B, 4>>,
        gain: Param<Tensor<B, 1>>,
        bias: Option<Param<Tensor<B, 1>>>,
        geo: &ConvGeometry,
        eps: f64,
    ) -> Self {
        Self {
            weight,
            gain,
            bias,
            stride: geo.stride,
            padding_start: geo.padding_start,
            padding_end: geo.padding_end,
            dilation: geo.dilation,
            groups: geo.groups,
            eps,
        }
    }

    fn geometry(&self) -> ConvGeometry {
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

    /// The standardized weight w'.
    pub fn standardized_weight(&self) -> Tensor<B, 4> {
        self.standardize(self.weight.val(), self.gain.val())
    }

    /// w' of raw weight `w` and gain `gain`.
    fn standardize(&self, w: Tensor<B, 4>, gain: Tensor<B, 1>) -> Tensor<B, 4> {
        let dims = w.dims();
        let flat = w.reshape([dims[0] as i64, -1]);
        let centered = flat.clone() - flat.mean_dim(1);
        let inv_scale = centered
            .clone()
            .square()
            .sum_dim(1)
            .add_scalar(self.eps)
            .sqrt()
            .recip();
        (centered * inv_scale * gain.reshape([dims[0], 1])).reshape(dims)
    }

    /// Applies the layer; in a private forward, also records what per-example gradients need.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let geo = self.geometry();
        let weight = self.standardize(layer_value(&self.weight), layer_value(&self.gain));
        let y = conv(x.clone(), weight, self.bias.as_ref().map(layer_value), &geo);
        let ids = (
            self.weight.id,
            self.gain.id,
            self.bias.as_ref().map(|b| b.id),
        );
        record_conv(y, |trainable, output| {
            let ids = WsIds {
                weight: Some(ids.0).filter(|id| trainable(*id)),
                gain: Some(ids.1).filter(|id| trainable(*id)),
                bias: ids.2.filter(|id| trainable(*id)),
            };
            let any = ids.weight.is_some() || ids.gain.is_some() || ids.bias.is_some();
            let [c_out, c_in, kh, kw] = self.weight.dims();
            let (d, o) = (c_in * kh * kw, c_out / self.groups);
            let output = ws_keeps_output(output.dims()[2], d, o).then_some(output);
            any.then(|| LayerData::WsConv {
                ids,
                input: x,
                output,
                geometry: geo,
                values: WsValues {
                    raw_weight: self.weight.val(),
                    gain: self.gain.val(),
                    bias: self.bias.as_ref().map(|b| b.val()),
                    eps: self.eps,
                },
            })
        })
    }
}
