//! Convolutions as [`Dense`] layers: im2col rows grouped by example and group.

use super::dense::{use_ghost_norm, Dense};
use super::examples;
use super::fused_conv;
use super::im2col::{im2col, ConvGeometry};
use crate::error::{DpError, Result};
use crate::flex::{cast, from_primitive, is, primitive};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Largest number of activation values materialized at once when per-example gradients are
/// formed explicitly (im2col is done in chunks of examples below this size).
const CHUNK_VALUES: usize = 1 << 20;

/// Examples per chunk when a convolution's per-example gradients are formed explicitly:
/// `examples` examples of `views` views, `positions` output positions and `d` inputs per
/// group, `groups` groups. At least 1, at most `examples`.
pub(crate) fn chunk_examples(
    examples: usize,
    views: usize,
    positions: usize,
    d: usize,
    groups: usize,
) -> usize {
    (CHUNK_VALUES / (views * positions * d * groups).max(1)).clamp(1, examples.max(1))
}

/// Probe layout `[N, C_out, T]` → `[E, G, o, K·T]` (views of an example side by side).
pub(super) fn channel_rows<B: Backend>(
    t: Tensor<B, 3>,
    views: usize,
    groups: usize,
) -> Result<Tensor<B, 4>> {
    let [n, c_out, len] = t.dims();
    let e = examples(n, views)?;
    let o = c_out / groups;
    Ok(if views == 1 {
        t.reshape([e, groups, o, len])
    } else {
        t.reshape([e, views, c_out, len])
            .swap_dims(1, 2)
            .reshape([e, groups, o, views * len])
    })
}

/// A convolution's input and output gradient (probe layout) as a [`Dense`] layer. When the
/// per-example gradients will be formed explicitly, im2col runs in chunks of examples and only
/// the per-example gradients are kept; otherwise the im2col rows are kept for the ghost norm
/// and the book-keeping sum. `cols`, the im2col of `input` when the forward pass made it, is
/// used instead of recomputing it.
pub(super) fn conv_dense<B: Backend>(
    input: Tensor<B, 4>,
    cols: Option<Tensor<B, 3>>,
    g: Tensor<B, 3>,
    geometry: &ConvGeometry,
    views: usize,
) -> Result<Dense<B>> {
    let [n, _, t] = g.dims();
    let e = examples(n, views)?;
    let groups = geometry.groups;
    let o = g.dims()[1] / groups;
    let d = input.dims()[1] / groups * geometry.kernel[0] * geometry.kernel[1];
    let g = channel_rows(g, views, groups)?.div_scalar(views as f64);
    let geometry = *geometry;
    let rows = move |cols: Tensor<B, 3>, examples: usize| -> Result<Tensor<B, 4>> {
        if cols.dims()[1] != t {
            return Err(DpError::Shape(format!(
                "im2col gave {} positions, the output has {t}",
                cols.dims()[1]
            )));
        }
        Ok(if groups == 1 {
            cols.reshape([examples, 1, views * t, d])
        } else {
            cols.reshape([examples, views * t, groups, d])
                .swap_dims(1, 2)
        })
    };
    if use_ghost_norm(views * t, d, o) {
        let a = rows(cols.unwrap_or_else(|| im2col(input.clone(), &geometry)), e)?;
        // After the norms only the (smaller) input is kept; im2col is redone for the sum.
        let rebuild = Box::new(move || rows(im2col(input.clone(), &geometry), e));
        return Ok(Dense::rebuildable(a, g, rebuild));
    }
    if cols.is_none() {
        if let Some(p) = fused_per_example_weight(&input, &g, &geometry, views) {
            return Ok(Dense::from_explicit(p, g));
        }
    }
    let chunk = chunk_examples(e, views, t, d, groups);
    let mut parts = Vec::with_capacity(e.div_ceil(chunk));
    let mut start = 0;
    while start < e {
        let len = chunk.min(e - start);
        let part = match &cols {
            Some(cols) => cols.clone().narrow(0, start * views, len * views),
            None => im2col(
                input.clone().narrow(0, start * views, len * views),
                &geometry,
            ),
        };
        parts.push(g.clone().narrow(0, start, len).matmul(rows(part, len)?));
        start += len;
    }
    Ok(Dense::from_explicit(Tensor::cat(parts, 0), g))
}

/// On flex, the per-example weight gradients `[E, 1, o, d]` with each example's im2col built
/// in the cache (see [`fused_conv`]); `None` elsewhere.
fn fused_per_example_weight<B: Backend>(
    input: &Tensor<B, 4>,
    g: &Tensor<B, 4>,
    geometry: &ConvGeometry,
    views: usize,
) -> Option<Tensor<B, 4>> {
    if !is::<B, Flex>() {
        return None;
    }
    let x = primitive(cast::<_, Tensor<Flex, 4>>(input.clone()));
    let g = primitive(cast::<_, Tensor<Flex, 4>>(g.clone()));
    let p = fused_conv::per_example_weight(&x, &g, geometry, views)?;
    Some(cast(from_primitive::<Flex, 4>(p)))
}

/// `[G, o, d]` → rows per output channel `[C_out, d]`.
pub(super) fn channels_first<B: Backend>(w: Tensor<B, 3>) -> Tensor<B, 2> {
    let [groups, o, d] = w.dims();
    w.reshape([groups * o, d])
}
