//! Per-example gradient norms and clipped sums of the DP-aware layers, from the layer
//! inputs and the output gradients that one backward pass provides (see [`crate::tape`]).
//!
//! With K augmented views per example the views of example e are the rows eK … eK+K−1, and
//! the example's gradient is the mean of its views' gradients (De et al. 2022): the output
//! gradients are divided by K and the views of an example are summed like positions.

mod conv;
mod dense;
mod describe;
pub(crate) mod fused_conv;
pub(crate) mod im2col;
mod standardized;

use crate::error::{DpError, Result};
use burn::module::ParamId;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
pub(crate) use conv::chunk_examples;
use conv::{channel_rows, channels_first, conv_dense};
use dense::Dense;
use im2col::ConvGeometry;
use standardized::{Standardization, Stats};

/// A flattened gradient with the shape of its parameter.
#[derive(Clone, Debug)]
pub(crate) struct FlatGrad<B: Backend> {
    pub values: Tensor<B, 1>,
    pub dims: Vec<usize>,
}

impl<B: Backend> FlatGrad<B> {
    fn new<const D: usize>(tensor: Tensor<B, D>) -> Self {
        let dims = tensor.dims().to_vec();
        Self {
            values: tensor.reshape([-1]),
            dims,
        }
    }
}

/// Gradients of several parameters.
pub(crate) type ParamGrads<B> = Vec<(ParamId, FlatGrad<B>)>;

/// What a DP-aware layer leaves on the tape. `None` ids are frozen parameters.
#[derive(Clone, Debug)]
pub(crate) enum LayerData<B: Backend> {
    /// y = x·W + b; input `[N, T, d_in]`, probe `[N, T, d_out]`; `shape` is the input's
    /// shape as the layer got it (for error messages).
    Linear {
        weight: Option<ParamId>,
        bias: Option<ParamId>,
        input: Tensor<B, 3>,
        shape: Vec<usize>,
    },
    /// 2-D convolution; input `[N, C, H, W]`, probe `[N, C_out, Ho·Wo]`.
    Conv {
        weight: Option<ParamId>,
        bias: Option<ParamId>,
        input: Tensor<B, 4>,
        /// im2col of `input` `[N, Ho·Wo, C·kh·kw]`, when the forward pass computed it.
        cols: Option<Tensor<B, 3>>,
        geometry: ConvGeometry,
        weight_dims: [usize; 4],
    },
    /// Weight-standardized convolution (see [`standardized`]); `output` is the layer output
    /// in probe layout `[N, C_out, Ho·Wo]`, kept only where the ghost norm will be used
    /// ([`ws_keeps_output`]).
    WsConv {
        ids: WsIds,
        input: Tensor<B, 4>,
        output: Option<Tensor<B, 3>>,
        geometry: ConvGeometry,
        values: WsValues<B>,
    },
    /// y = γ ⊙ x̂ + β per channel (GroupNorm); x̂ and probe `[N, C, S]`.
    Affine {
        scale: Option<ParamId>,
        shift: Option<ParamId>,
        normalized: Tensor<B, 3>,
    },
    /// y = α·x with a scalar α; input and probe `[N, 1, F]`.
    Gain { gain: ParamId, input: Tensor<B, 3> },
}

/// The trainable parameters of a weight-standardized convolution.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WsIds {
    pub weight: Option<ParamId>,
    pub gain: Option<ParamId>,
    pub bias: Option<ParamId>,
}

/// The parameter values a weight-standardized convolution's gradients depend on.
#[derive(Clone, Debug)]
pub(crate) struct WsValues<B: Backend> {
    pub raw_weight: Tensor<B, 4>,
    pub gain: Tensor<B, 1>,
    pub bias: Option<Tensor<B, 1>>,
    pub eps: f64,
}

impl<AB: AutodiffBackend> LayerData<AB> {
    /// The same data on the inner backend, outside the autodiff graph.
    pub(crate) fn into_inner(self) -> LayerData<AB::InnerBackend> {
        match self {
            Self::Linear {
                weight,
                bias,
                input,
                shape,
            } => LayerData::Linear {
                weight,
                bias,
                input: input.inner(),
                shape,
            },
            Self::Conv {
                weight,
                bias,
                input,
                cols,
                geometry,
                weight_dims,
            } => LayerData::Conv {
                weight,
                bias,
                input: input.inner(),
                cols: cols.map(|c| c.inner()),
                geometry,
                weight_dims,
            },
            Self::WsConv {
                ids,
                input,
                output,
                geometry,
                values,
            } => LayerData::WsConv {
                ids,
                input: input.inner(),
                output: output.map(|o| o.inner()),
                geometry,
                values: WsValues {
                    raw_weight: values.raw_weight.inner(),
                    gain: values.gain.inner(),
                    bias: values.bias.map(|b| b.inner()),
                    eps: values.eps,
                },
            },
            Self::Affine {
                scale,
                shift,
                normalized,
            } => LayerData::Affine {
                scale,
                shift,
                normalized: normalized.inner(),
            },
            Self::Gain { gain, input } => LayerData::Gain {
                gain,
                input: input.inner(),
            },
        }
    }
}

/// A layer with its output gradient, ready for norms and clipped sums.
pub(crate) enum Prepared<B: Backend> {
    Dense {
        dense: Dense<B>,
        weight: Option<(ParamId, Vec<usize>)>,
        bias: Option<ParamId>,
        conv: bool,
    },
    Ws {
        dense: Dense<B>,
        ws: Standardization<B>,
        stats: Stats<B>,
        ids: WsIds,
        weight_dims: Vec<usize>,
    },
    /// Per-example gradients `[E, ·]` of small parameters, computed outright.
    Explicit(Vec<(ParamId, Tensor<B, 2>)>),
}

/// Whether a weight-standardized convolution with `positions` output positions, `d` inputs
/// and `o` outputs per group keeps its output: only where its norms take the ghost route (the
/// output then gives u·G' cheaply; otherwise P does, and the output need not be kept).
pub(crate) fn ws_keeps_output(positions: usize, d: usize, o: usize) -> bool {
    dense::use_ghost_norm(positions, d, o)
}

/// Groups rows by example: `[N, ...]` with N = E·K.
pub(super) fn examples(n: usize, views: usize) -> Result<usize> {
    if views == 0 || !n.is_multiple_of(views) {
        return Err(DpError::Shape(format!(
            "{n} rows are not a whole number of examples with augmult K = {views}"
        )));
    }
    Ok(n / views)
}

impl<B: Backend> LayerData<B> {
    /// The trainable parameters of the layer.
    pub(crate) fn param_ids(&self) -> Vec<ParamId> {
        let ids = match self {
            Self::Linear { weight, bias, .. } | Self::Conv { weight, bias, .. } => {
                vec![*weight, *bias]
            }
            Self::WsConv { ids, .. } => vec![ids.weight, ids.gain, ids.bias],
            Self::Affine { scale, shift, .. } => vec![*scale, *shift],
            Self::Gain { gain, .. } => vec![Some(*gain)],
        };
        ids.into_iter().flatten().collect()
    }

    /// Combines the layer's data with its output gradient (probe layout) for `views` views per
    /// example. `exact` makes weight-standardized layers form their per-example gradients
    /// instead of taking the Gram route's shortcuts (for a micro-batch whose doubts were
    /// raised; see [`Prepared::doubts`]).
    pub(crate) fn prepare(self, g: Tensor<B, 3>, views: usize, exact: bool) -> Result<Prepared<B>> {
        match self {
            Self::Linear {
                weight,
                bias,
                input,
                ..
            } => {
                let [n, t, d_in] = input.dims();
                let d_out = g.dims()[2];
                let e = examples(n, views)?;
                let a = input.reshape([e, 1, views * t, d_in]);
                let g = g
                    .reshape([e, 1, views * t, d_out])
                    .swap_dims(2, 3)
                    .div_scalar(views as f64);
                let weight = weight.map(|id| (id, vec![d_in, d_out]));
                Ok(Prepared::Dense {
                    dense: Dense::new(a, g),
                    weight,
                    bias,
                    conv: false,
                })
            }
            Self::Conv {
                weight,
                bias,
                input,
                cols,
                geometry,
                weight_dims,
            } => {
                let dense = conv_dense(input, cols, g, &geometry, views)?;
                let weight = weight.map(|id| (id, weight_dims.to_vec()));
                Ok(Prepared::Dense {
                    dense,
                    weight,
                    bias,
                    conv: true,
                })
            }
            Self::WsConv {
                ids,
                input,
                output,
                geometry,
                values,
            } => {
                let mut dense = conv_dense(input, None, g, &geometry, views)?;
                let weight_dims = values.raw_weight.dims().to_vec();
                let ws = Standardization::new(values.raw_weight, values.gain, values.eps);
                let output = output
                    .filter(|_| !exact)
                    .map(|o| channel_rows(o, views, geometry.groups))
                    .transpose()?;
                let stats = ws.stats(&mut dense, output, values.bias)?;
                Ok(Prepared::Ws {
                    dense,
                    ws,
                    stats,
                    ids,
                    weight_dims,
                })
            }
            Self::Affine {
                scale,
                shift,
                normalized,
            } => {
                let [n, c, _] = normalized.dims();
                let e = examples(n, views)?;
                let per_view = |t: Tensor<B, 3>| {
                    t.sum_dim(2)
                        .reshape([e, views, c])
                        .mean_dim(1)
                        .reshape([e, c])
                };
                let mut grads = Vec::new();
                if let Some(id) = scale {
                    grads.push((id, per_view(g.clone() * normalized)));
                }
                if let Some(id) = shift {
                    grads.push((id, per_view(g)));
                }
                Ok(Prepared::Explicit(grads))
            }
            Self::Gain { gain, input } => {
                let n = input.dims()[0];
                let e = examples(n, views)?;
                let per_view = (g * input).reshape([n as i64, -1]).sum_dim(1);
                Ok(Prepared::Explicit(vec![(
                    gain,
                    per_view.reshape([e, views]).mean_dim(1),
                )]))
            }
        }
    }
}

impl<B: Backend> Prepared<B> {
    /// The squared norm of each example's gradient over the layer's trainable parameters.
    pub(crate) fn squared_norms(&mut self) -> Result<Tensor<B, 1>> {
        Ok(match self {
            Self::Dense {
                dense,
                weight,
                bias,
                ..
            } => {
                let mut total = Tensor::zeros([dense.examples()], &dense.device());
                if weight.is_some() {
                    total = total + dense.weight_norms_sq()?;
                }
                if bias.is_some() {
                    total = total + dense.bias_norms_sq()?;
                }
                total
            }
            Self::Ws {
                dense,
                ws,
                stats,
                ids,
                ..
            } => {
                let mut total = Tensor::zeros([dense.examples()], &dense.device());
                if ids.weight.is_some() {
                    total = total + ws.weight_norms_sq(stats, dense)?;
                }
                if ids.gain.is_some() {
                    total = total + ws.gain_norms_sq(stats);
                }
                if ids.bias.is_some() {
                    total = total + dense.bias_norms_sq()?;
                }
                total
            }
            Self::Explicit(grads) => {
                let Some((_, first)) = grads.first() else {
                    return Err(DpError::Shape(
                        "a layer with no trainable parameter was recorded".into(),
                    ));
                };
                let (e, device) = (first.dims()[0], first.device());
                grads
                    .iter()
                    .fold(Tensor::zeros([e], &device), |acc, (_, g)| {
                        acc + g.clone().square().sum_dim(1).reshape([e])
                    })
            }
        })
    }

    /// One-element tensors, positive where this layer's norms may be inaccurate and the
    /// micro-batch must be recomputed with `exact` (after [`Prepared::squared_norms`]).
    pub(crate) fn doubts(&self) -> Vec<Tensor<B, 1>> {
        match self {
            Self::Ws { stats, .. } => stats.doubts.clone(),
            _ => Vec::new(),
        }
    }

    /// Releases what the weighted sums do not need (call after [`Prepared::squared_norms`]).
    pub(crate) fn compact(&mut self) -> Result<()> {
        match self {
            Self::Dense { dense, .. } | Self::Ws { dense, .. } => dense.compact(),
            Self::Explicit(_) => Ok(()),
        }
    }

    /// Σₑ scaleₑ·(gradient of example e), per parameter.
    pub(crate) fn weighted_sums(&self, scale: Tensor<B, 1>) -> Result<ParamGrads<B>> {
        let mut out = Vec::new();
        match self {
            Self::Dense {
                dense,
                weight,
                bias,
                conv,
            } => {
                if let Some((id, dims)) = weight {
                    let sum = dense.weight_sum(scale.clone())?;
                    let sum = if *conv {
                        channels_first(sum)
                    } else {
                        let [_, o, d] = sum.dims();
                        sum.reshape([o, d]).transpose()
                    };
                    out.push((
                        *id,
                        FlatGrad {
                            values: sum.reshape([-1]),
                            dims: dims.clone(),
                        },
                    ));
                }
                if let Some(id) = bias {
                    out.push((*id, FlatGrad::new(dense.bias_sum(scale)?)));
                }
            }
            Self::Ws {
                dense,
                ws,
                ids,
                weight_dims,
                ..
            } => {
                let (dw, dgain) =
                    ws.raw_gradients(channels_first(dense.weight_sum(scale.clone())?));
                if let Some(id) = ids.weight {
                    out.push((
                        id,
                        FlatGrad {
                            values: dw.reshape([-1]),
                            dims: weight_dims.clone(),
                        },
                    ));
                }
                if let Some(id) = ids.gain {
                    out.push((id, FlatGrad::new(dgain)));
                }
                if let Some(id) = ids.bias {
                    out.push((id, FlatGrad::new(dense.bias_sum(scale)?)));
                }
            }
            Self::Explicit(grads) => {
                for (id, g) in grads {
                    let e = g.dims()[0];
                    let sum = scale.clone().reshape([1, e]).matmul(g.clone());
                    out.push((*id, FlatGrad::new(sum.reshape([-1]))));
                }
            }
        }
        Ok(out)
    }
}
