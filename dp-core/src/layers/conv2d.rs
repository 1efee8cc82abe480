//! A 2-D convolution that records per-example gradient data in a private forward.

use crate::error::{DpError, Result};
use crate::flex::{cast, from_primitive, is, primitive, FlexAutodiff};
use crate::per_example::fused_conv;
use crate::per_example::im2col::{im2col, is_tracked, ConvGeometry};
use crate::per_example::LayerData;
use crate::tape::{layer_value, with_tape};
use burn::backend::Flex;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::conv2d;
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
        let (y, cols) = conv_keeping_cols(
            x.clone(),
            layer_value(&self.weight),
            self.bias.as_ref().map(layer_value),
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
                cols,
                geometry: geo,
                weight_dims: self.weight.dims(),
            })
        })
    }
}

/// Largest input channel count for which a convolution of an input that needs no gradient
/// runs as im2col + matrix product (burn 0.21 `flex`'s direct kernel for few channels is
/// 3–4× slower than that; with more channels its own im2col path is as fast).
const IM2COL_MAX_IN_CHANNELS: usize = 4;

/// Largest kernel area per output position (kh·kw / (sh·sw)) for which a convolution of an
/// input inside flex's autodiff graph runs as im2col + matrix product: its im2col is then at
/// most this many times the input, and flex's own convolution (a 3-D kernel over a copy of
/// the input, with a transposed convolution backward) took a third of the small CNN's private
/// step. Wider kernels (3×3 stride 1: 9) keep burn's convolution, whose memory stays flat.
const IM2COL_MAX_EXPANSION: usize = 4;

/// Whether [`conv_keeping_cols`] takes the im2col route for `x`.
fn im2col_route<B: Backend>(x: &Tensor<B, 4>, geo: &ConvGeometry) -> bool {
    if geo.groups != 1 {
        return false;
    }
    if !is_tracked(x) {
        return x.dims()[1] <= IM2COL_MAX_IN_CHANNELS;
    }
    let area = geo.kernel[0] * geo.kernel[1];
    is::<B, FlexAutodiff>() && area <= IM2COL_MAX_EXPANSION * geo.stride[0] * geo.stride[1]
}

/// The convolution with this crate's geometry.
pub(crate) fn conv<B: Backend>(
    x: Tensor<B, 4>,
    w: Tensor<B, 4>,
    b: Option<Tensor<B, 1>>,
    geo: &ConvGeometry,
) -> Tensor<B, 4> {
    conv_keeping_cols(x, w, b, geo).0
}

/// The convolution, and the im2col of `x` when it was computed on the way: burn's
/// convolution, or im2col + one batched matrix product (see [`im2col_route`]) for the first
/// layer of a network (an input without gradient, few channels, one group) and, on flex's
/// autodiff, for later layers whose im2col is at most [`IM2COL_MAX_EXPANSION`] times their
/// input. The per-example gradients reuse that im2col.
fn conv_keeping_cols<B: Backend>(
    x: Tensor<B, 4>,
    w: Tensor<B, 4>,
    b: Option<Tensor<B, 1>>,
    geo: &ConvGeometry,
) -> (Tensor<B, 4>, Option<Tensor<B, 3>>) {
    if let Some(y) = fused_forward(&x, &w, b.as_ref(), geo) {
        return (y, None);
    }
    if im2col_route(&x, geo) {
        let [_, _, h, width] = x.dims();
        let cols = im2col(x, geo);
        let y = conv_from_cols(cols.clone(), w, b, geo.output_size([h, width]));
        return (y, Some(cols));
    }
    (conv2d(x, w, b, geo.conv_options()), None)
}

/// On flex, a first layer (an input with few channels, outside the autodiff graph, as are
/// the weight and bias) as im2col fused with its product, example by example (see
/// [`fused_conv`]): its im2col is never materialized, and the per-example gradients build it
/// again in the same way. `None` elsewhere.
fn fused_forward<B: Backend>(
    x: &Tensor<B, 4>,
    w: &Tensor<B, 4>,
    b: Option<&Tensor<B, 1>>,
    geo: &ConvGeometry,
) -> Option<Tensor<B, 4>> {
    let untracked = !is_tracked(x) && !is_tracked(w) && !b.is_some_and(is_tracked);
    if !untracked || x.dims()[1] > IM2COL_MAX_IN_CHANNELS {
        return None;
    }
    let inner = |t: Tensor<B, 4>| -> Tensor<Flex, 4> {
        if is::<B, Flex>() {
            cast(t)
        } else {
            cast::<_, Tensor<FlexAutodiff, 4>>(t).inner()
        }
    };
    if !is::<B, Flex>() && !is::<B, FlexAutodiff>() {
        return None;
    }
    let [n, _, h, width] = x.dims();
    let c_out = w.dims()[0];
    let bias = b.map(|b| primitive(inner(b.clone().reshape([1, 1, 1, c_out]))));
    let y = fused_conv::conv_forward(
        &primitive(inner(x.clone())),
        &primitive(inner(w.clone())),
        bias.as_ref(),
        geo,
    )?;
    let [ho, wo] = geo.output_size([h, width]);
    let y = from_primitive::<Flex, 3>(y).reshape([n, c_out, ho, wo]);
    Some(if is::<B, Flex>() {
        cast(y)
    } else {
        cast(Tensor::<FlexAutodiff, 4>::from_inner(y))
    })
}

/// y = W·colsᵀ per example, `[N, C_out, Ho, Wo]`, from im2col rows `[N, Ho·Wo, C·kh·kw]`.
fn conv_from_cols<B: Backend>(
    cols: Tensor<B, 3>,
    w: Tensor<B, 4>,
    b: Option<Tensor<B, 1>>,
    [ho, wo]: [usize; 2],
) -> Tensor<B, 4> {
    let n = cols.dims()[0];
    let [c_out, c_in, kh, kw] = w.dims();
    let y = w
        .reshape([1, c_out, c_in * kh * kw])
        .matmul(cols.swap_dims(1, 2));
    match b {
        // As one column per (example, channel): burn 0.21 `flex` adds a column fast, but
        // broadcasts along a leading axis ([1, C, 1, 1]) element by element, 40× slower.
        Some(b) => (y.reshape([n * c_out, ho * wo])
            + b.reshape([1, c_out])
                .repeat_dim(0, n)
                .reshape([n * c_out, 1]))
        .reshape([n, c_out, ho, wo]),
        None => y.reshape([n, c_out, ho, wo]),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type AB = Autodiff<Flex>;

    fn max_abs_diff(a: Tensor<Flex, 4>, b: Tensor<Flex, 4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The im2col route (first layers) equals burn's convolution: outputs and the gradients
    /// of weight and bias, for every geometry option.
    #[test]
    fn im2col_route_equals_burns_convolution() {
        let device = Default::default();
        let geometries = [
            Conv2dConfig::new([1, 16], [8, 8])
                .with_stride([2, 2])
                .with_padding([3, 3]),
            Conv2dConfig::new([3, 5], [3, 3]).with_padding([1, 1]),
            Conv2dConfig::new([2, 4], [3, 2])
                .with_stride([2, 1])
                .with_asymmetric_padding([0, 1], [2, 1])
                .with_dilation([1, 2]),
            Conv2dConfig::new([4, 3], [1, 1]).with_bias(false),
            // The CNN's second layer: a tracked input takes the im2col route too.
            Conv2dConfig::new([16, 32], [4, 4]).with_stride([2, 2]),
        ];
        for config in geometries {
            let x = Tensor::<Flex, 4>::random(
                [3, config.channels[0], 11, 10],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let layer = config.init::<AB>(&device).unwrap();
            let geo = layer.geometry();
            let run = |im2col_route: bool, tracked: bool| {
                let w = layer.weight.val();
                let b = layer.bias.as_ref().map(|b| b.val());
                let x = Tensor::<AB, 4>::from_inner(x.clone());
                // A tracked input (a later layer's) takes im2col's own backward pass, col2im.
                let x = if tracked { x.require_grad() } else { x };
                let y = if im2col_route {
                    let [_, _, h, width] = x.dims();
                    conv_from_cols(
                        im2col(x.clone(), &geo),
                        w.clone(),
                        b.clone(),
                        geo.output_size([h, width]),
                    )
                } else {
                    conv2d(x.clone(), w.clone(), b.clone(), geo.conv_options())
                };
                let weights = y.clone().inner().ones_like().cumsum(3).sin();
                let grads = (y.clone() * Tensor::from_inner(weights)).sum().backward();
                let gw = w.grad(&grads).unwrap();
                let gb = b.and_then(|b| b.grad(&grads)).map(|g| g.sum());
                let gx = x.grad(&grads);
                (y.inner(), gw, gb.map(|g| g.into_scalar()), gx)
            };
            for tracked in [false, true] {
                let (y, gw, gb, gx) = run(true, tracked);
                let (y_ref, gw_ref, gb_ref, gx_ref) = run(false, tracked);
                assert!(max_abs_diff(y, y_ref) < 1e-4, "{config:?}");
                assert!(max_abs_diff(gw, gw_ref) < 1e-3, "{config:?}");
                match (gb, gb_ref) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-3 * b.abs().max(1.0)),
                    (None, None) => {}
                    _ => panic!("bias gradient on one route only"),
                }
                match (gx, gx_ref) {
                    (Some(a), Some(b)) => assert!(max_abs_diff(a, b) < 1e-3, "{config:?}"),
                    (None, None) => assert!(!tracked),
                    _ => panic!("input gradient on one route only"),
                }
            }
            // The layer itself takes the im2col route for a data input.
            assert!(!Tensor::<AB, 4>::from_inner(x).is_require_grad());
        }
    }
}
