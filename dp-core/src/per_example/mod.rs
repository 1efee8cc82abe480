//! Per-example gradient norms and clipped sums of the DP-aware layers, from the layer
//! inputs and the output gradients that one backward pass provides (see [`crate::tape`]).
//!
//! With K augmented views per example the views of example e are the rows eK … eK+K−1, and
//! the example's gradient is the mean of its views' gradients (De et al. 2022): the output
//! gradients are divided by K and the views of an example are summed like positions.

mod dense;
pub(crate) mod im2col;

use crate::error::{DpError, Result};
use burn::module::ParamId;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use dense::{use_ghost_norm, Dense};
use im2col::{im2col, ConvGeometry};

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
    /// y = x·W + b; input `[N, T, d_in]`, probe `[N, T, d_out]`.
    Linear {
        weight: Option<ParamId>,
        bias: Option<ParamId>,
        input: Tensor<B, 3>,
    },
    /// 2-D convolution; input `[N, C, H, W]`, probe `[N, C_out, Ho·Wo]`.
    Conv {
        weight: Option<ParamId>,
        bias: Option<ParamId>,
        input: Tensor<B, 4>,
        geometry: ConvGeometry,
        weight_dims: [usize; 4],
    },
    /// Weight-standardized convolution w' = γ·(w − μ)/√(‖w − μ‖² + eps) per output channel.
    WsConv {
        weight: Option<ParamId>,
        gain: Option<ParamId>,
        bias: Option<ParamId>,
        input: Tensor<B, 4>,
        geometry: ConvGeometry,
        raw_weight: Tensor<B, 4>,
        gain_value: Tensor<B, 1>,
        eps: f64,
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

impl<AB: AutodiffBackend> LayerData<AB> {
    /// The same data on the inner backend, outside the autodiff graph.
    pub(crate) fn into_inner(self) -> LayerData<AB::InnerBackend> {
        match self {
            Self::Linear {
                weight,
                bias,
                input,
            } => LayerData::Linear {
                weight,
                bias,
                input: input.inner(),
            },
            Self::Conv {
                weight,
                bias,
                input,
                geometry,
                weight_dims,
            } => LayerData::Conv {
                weight,
                bias,
                input: input.inner(),
                geometry,
                weight_dims,
            },
            Self::WsConv {
                weight,
                gain,
                bias,
                input,
                geometry,
                raw_weight,
                gain_value,
                eps,
            } => LayerData::WsConv {
                weight,
                gain,
                bias,
                input: input.inner(),
                geometry,
                raw_weight: raw_weight.inner(),
                gain_value: gain_value.inner(),
                eps,
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

impl<B: Backend> LayerData<B> {
    /// The trainable parameters of the layer.
    pub(crate) fn param_ids(&self) -> Vec<ParamId> {
        let ids = match self {
            Self::Linear { weight, bias, .. } | Self::Conv { weight, bias, .. } => {
                vec![*weight, *bias]
            }
            Self::WsConv {
                weight, gain, bias, ..
            } => vec![*weight, *gain, *bias],
            Self::Affine { scale, shift, .. } => vec![*scale, *shift],
            Self::Gain { gain, .. } => vec![Some(*gain)],
        };
        ids.into_iter().flatten().collect()
    }
}

/// Weight-standardization constants of one layer.
pub(crate) struct Standardization<B: Backend> {
    /// w − μ, `[C_out, d]`.
    centered: Tensor<B, 2>,
    /// 1/√(‖w − μ‖² + eps), `[C_out, 1]`.
    inv_scale: Tensor<B, 2>,
    /// γ, `[C_out, 1]`.
    gain: Tensor<B, 2>,
}

/// A layer with its output gradient, ready for norms and clipped sums.
pub(crate) enum Prepared<B: Backend> {
    Dense {
        dense: Dense<B>,
        weight: Option<(ParamId, Vec<usize>)>,
        bias: Option<ParamId>,
        /// `[G, d, o]` → parameter layout.
        conv: bool,
    },
    Ws {
        dense: Dense<B>,
        ws: Standardization<B>,
        weight: Option<(ParamId, Vec<usize>)>,
        gain: Option<ParamId>,
        bias: Option<ParamId>,
    },
    /// Per-example gradients `[E, ·]` of small parameters, computed outright.
    Explicit(Vec<(ParamId, Tensor<B, 2>)>),
}

/// Groups rows by example: `[N, ...]` with N = E·K.
fn examples(n: usize, views: usize) -> Result<usize> {
    if views == 0 || !n.is_multiple_of(views) {
        return Err(DpError::Shape(format!(
            "{n} rows are not a whole number of examples with augmult K = {views}"
        )));
    }
    Ok(n / views)
}

impl<B: Backend> LayerData<B> {
    /// Combines the layer's data with its output gradient (probe layout) for `views` views per
    /// example.
    pub(crate) fn prepare(self, g: Tensor<B, 3>, views: usize) -> Result<Prepared<B>> {
        let k = views as f64;
        match self {
            Self::Linear {
                weight,
                bias,
                input,
            } => {
                let [n, t, d_in] = input.dims();
                let d_out = g.dims()[2];
                let e = examples(n, views)?;
                let a = input.reshape([e, 1, views * t, d_in]);
                let g = g
                    .reshape([e, 1, views * t, d_out])
                    .swap_dims(2, 3)
                    .div_scalar(k);
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
                geometry,
                weight_dims,
            } => {
                let dense = conv_dense(input, g, &geometry, views, false)?;
                let weight = weight.map(|id| (id, weight_dims.to_vec()));
                Ok(Prepared::Dense {
                    dense,
                    weight,
                    bias,
                    conv: true,
                })
            }
            Self::WsConv {
                weight,
                gain,
                bias,
                input,
                geometry,
                raw_weight,
                gain_value,
                eps,
            } => {
                let dense = conv_dense(input, g, &geometry, views, true)?;
                let dims = raw_weight.dims();
                let flat = raw_weight.reshape([dims[0] as i64, -1]);
                let centered = flat.clone() - flat.mean_dim(1);
                let inv_scale = centered
                    .clone()
                    .square()
                    .sum_dim(1)
                    .add_scalar(eps)
                    .sqrt()
                    .recip();
                let ws = Standardization {
                    centered,
                    inv_scale,
                    gain: gain_value.reshape([dims[0], 1]),
                };
                let weight = weight.map(|id| (id, dims.to_vec()));
                Ok(Prepared::Ws {
                    dense,
                    ws,
                    weight,
                    gain,
                    bias,
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

/// Largest number of activation values materialized at once when per-example gradients are
/// formed explicitly (im2col is done in chunks of examples below this size).
const CHUNK_VALUES: usize = 1 << 20;

/// Convolution data as a [`Dense`] layer. When the per-example gradients will be formed
/// explicitly (or `explicit` asks for them, as weight standardization does), im2col runs in
/// chunks of examples and only the per-example gradients are kept; otherwise the im2col rows
/// are kept for the ghost norm and the book-keeping sum.
fn conv_dense<B: Backend>(
    input: Tensor<B, 4>,
    g: Tensor<B, 3>,
    geometry: &ConvGeometry,
    views: usize,
    explicit: bool,
) -> Result<Dense<B>> {
    let [n, c_out, t] = g.dims();
    let e = examples(n, views)?;
    let groups = geometry.groups;
    let o = c_out / groups;
    let d = input.dims()[1] / groups * geometry.kernel[0] * geometry.kernel[1];
    // Probe layout [N, C_out, T] → [E, G, o, K·T].
    let g = if views == 1 {
        g.reshape([e, groups, o, t])
    } else {
        g.reshape([e, views, groups * o, t])
            .swap_dims(1, 2)
            .reshape([e, groups, o, views * t])
    }
    .div_scalar(views as f64);
    let rows = |cols: Tensor<B, 3>, examples: usize| {
        if groups == 1 {
            cols.reshape([examples, 1, views * t, d])
        } else {
            cols.reshape([examples, views * t, groups, d])
                .swap_dims(1, 2)
        }
    };
    if !explicit && use_ghost_norm(views * t, d, o) {
        let cols = im2col(input, geometry);
        if cols.dims()[1] != t {
            return Err(DpError::Shape(format!(
                "im2col gave {} positions, the output has {t}",
                cols.dims()[1]
            )));
        }
        return Ok(Dense::new(rows(cols, e), g));
    }
    let chunk = (CHUNK_VALUES / (views * t * d * groups).max(1)).clamp(1, e);
    let mut parts = Vec::with_capacity(e.div_ceil(chunk));
    let mut start = 0;
    while start < e {
        let len = chunk.min(e - start);
        let cols = im2col(
            input.clone().narrow(0, start * views, len * views),
            geometry,
        );
        if cols.dims()[1] != t {
            return Err(DpError::Shape(format!(
                "im2col gave {} positions, the output has {t}",
                cols.dims()[1]
            )));
        }
        parts.push(g.clone().narrow(0, start, len).matmul(rows(cols, len)));
        start += len;
    }
    Ok(Dense::from_explicit(Tensor::cat(parts, 0), g))
}

/// `[G, o, d]` → rows per output channel `[C_out, d]`.
fn channels_first<B: Backend>(w: Tensor<B, 3>) -> Tensor<B, 2> {
    let [groups, o, d] = w.dims();
    w.reshape([groups * o, d])
}

impl<B: Backend> Prepared<B> {
    /// The squared norm of each example's gradient over the layer's trainable parameters.
    pub(crate) fn squared_norms(&mut self) -> Tensor<B, 1> {
        match self {
            Self::Dense {
                dense,
                weight,
                bias,
                ..
            } => {
                let e = dense.examples();
                let mut total = Tensor::zeros([e], &dense.device());
                if weight.is_some() {
                    total = total + dense.weight_norms_sq();
                }
                if bias.is_some() {
                    total = total + dense.bias_norms_sq();
                }
                total
            }
            Self::Ws {
                dense,
                ws,
                weight,
                gain,
                bias,
            } => {
                let e = dense.examples();
                let mut total = Tensor::zeros([e], &dense.device());
                let per_example = dense.per_example_weight(); // [E, G, o, d]
                let [_, groups, o, d] = per_example.dims();
                let p = per_example.reshape([e, groups * o, d]); // [E, C_out, d]
                let u = ws.centered.clone().unsqueeze::<3>(); // [1, C_out, d]
                let projection = (p.clone() * u.clone()).sum_dim(2); // [E, C_out, 1]
                let r = ws.inv_scale.clone().unsqueeze::<3>(); // [1, C_out, 1]
                if weight.is_some() {
                    let mean = p.clone().mean_dim(2);
                    let h = p - mean - u * r.clone().square() * projection.clone();
                    let scale = (ws.gain.clone().unsqueeze::<3>() * r.clone()).square();
                    total = total
                        + (h.square() * scale)
                            .reshape([e as i64, -1])
                            .sum_dim(1)
                            .reshape([e]);
                }
                if gain.is_some() {
                    total = total
                        + (projection * r)
                            .square()
                            .reshape([e as i64, -1])
                            .sum_dim(1)
                            .reshape([e]);
                }
                if bias.is_some() {
                    total = total + dense.bias_norms_sq();
                }
                total
            }
            Self::Explicit(grads) => {
                let mut iter = grads.iter();
                let Some((_, first)) = iter.next() else {
                    return Tensor::zeros([0], &Default::default());
                };
                let e = first.dims()[0];
                grads
                    .iter()
                    .fold(Tensor::zeros([e], &first.device()), |acc, (_, g)| {
                        acc + g.clone().square().sum_dim(1).reshape([e])
                    })
            }
        }
    }

    /// Σₑ scaleₑ·(gradient of example e), per parameter.
    pub(crate) fn weighted_sums(&self, scale: Tensor<B, 1>) -> ParamGrads<B> {
        let mut out = Vec::new();
        match self {
            Self::Dense {
                dense,
                weight,
                bias,
                conv,
            } => {
                if let Some((id, dims)) = weight {
                    let sum = dense.weight_sum(scale.clone());
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
                    out.push((*id, FlatGrad::new(dense.bias_sum(scale))));
                }
            }
            Self::Ws {
                dense,
                ws,
                weight,
                gain,
                bias,
            } => {
                let s = channels_first(dense.weight_sum(scale.clone())); // [C_out, d]
                let projection = (s.clone() * ws.centered.clone()).sum_dim(1); // [C_out, 1]
                if let Some((id, dims)) = weight {
                    let r = ws.inv_scale.clone();
                    let h = s.clone()
                        - s.mean_dim(1)
                        - ws.centered.clone() * r.clone().square() * projection.clone();
                    let dw = h * (ws.gain.clone() * r);
                    out.push((
                        *id,
                        FlatGrad {
                            values: dw.reshape([-1]),
                            dims: dims.clone(),
                        },
                    ));
                }
                if let Some(id) = gain {
                    out.push((
                        *id,
                        FlatGrad::new((projection * ws.inv_scale.clone()).reshape([-1])),
                    ));
                }
                if let Some(id) = bias {
                    out.push((*id, FlatGrad::new(dense.bias_sum(scale))));
                }
            }
            Self::Explicit(grads) => {
                for (id, g) in grads {
                    let e = g.dims()[0];
                    let sum = (g.clone() * scale.clone().reshape([e, 1])).sum_dim(0);
                    out.push((*id, FlatGrad::new(sum.reshape([-1]))));
                }
            }
        }
        out
    }
}
