//! im2col: the patches a convolution sees, as rows of a matrix.
//!
//! Built as one gather (`select`) from the zero-padded input with a precomputed index per
//! (output position, input channel, kernel row, kernel column). burn's `unfold4d` is a
//! convolution with a one-hot kernel (cost O(C²k⁴) per position); a strided `unfold` +
//! `permute` view was 2.5–5× slower than the gather on the CPU backend.

use crate::flex::{cast, f32_values, flex_tensor, from_primitive, is, primitive, FlexAutodiff};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{PadMode, PaddedConvOptions};
use burn::tensor::DType;
use burn::tensor::{Int, Tensor, TensorData};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConvGeometry {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Zero padding before (top, left).
    pub padding_start: [usize; 2],
    /// Zero padding after (bottom, right).
    pub padding_end: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvGeometry {
    /// burn's options for a convolution of this geometry.
    pub fn conv_options(&self) -> PaddedConvOptions<2> {
        PaddedConvOptions::asymmetric(
            self.stride,
            self.padding_start,
            self.padding_end,
            self.dilation,
            self.groups,
        )
    }

    /// Output spatial size for an input of `[h, w]`.
    pub fn output_size(&self, input: [usize; 2]) -> [usize; 2] {
        let mut out = [0; 2];
        for i in 0..2 {
            let padded = input[i] + self.padding_start[i] + self.padding_end[i];
            let reach = self.dilation[i] * (self.kernel[i] - 1) + 1;
            out[i] = if padded >= reach {
                (padded - reach) / self.stride[i] + 1
            } else {
                0
            };
        }
        out
    }
}

type IndexKey = (ConvGeometry, [usize; 3]);

/// Gather indices into the padded `[C, Hp, Wp]` input, cached per geometry and input shape.
fn gather_indices(geo: &ConvGeometry, [c, h, w]: [usize; 3]) -> Arc<Vec<i64>> {
    static CACHE: OnceLock<Mutex<HashMap<IndexKey, Arc<Vec<i64>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (*geo, [c, h, w]);
    if let Some(hit) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return hit;
    }
    let hp = h + geo.padding_start[0] + geo.padding_end[0];
    let wp = w + geo.padding_start[1] + geo.padding_end[1];
    let [ho, wo] = geo.output_size([h, w]);
    let [kh, kw] = geo.kernel;
    let mut indices = Vec::with_capacity(ho * wo * c * kh * kw);
    for oi in 0..ho {
        for oj in 0..wo {
            for ci in 0..c {
                for ki in 0..kh {
                    for kj in 0..kw {
                        let row = oi * geo.stride[0] + ki * geo.dilation[0];
                        let col = oj * geo.stride[1] + kj * geo.dilation[1];
                        indices.push((ci * hp * wp + row * wp + col) as i64);
                    }
                }
            }
        }
    }
    let indices = Arc::new(indices);
    if let Ok(mut map) = cache.lock() {
        map.insert(key, indices.clone());
    }
    indices
}

/// Whether `x` takes part in an autodiff graph: a leaf that requires grad, or computed from
/// one. burn's `is_require_grad` answers only the first (a layer input computed by earlier
/// layers says `false`), so on flex's autodiff the node's requirement is read directly. On
/// other backends this is `is_require_grad`: their im2col is a differentiable gather, so the
/// answer only picks a route there, it never cuts the graph.
pub(crate) fn is_tracked<B: Backend, const D: usize>(x: &Tensor<B, D>) -> bool {
    if x.is_require_grad() {
        return true;
    }
    if is::<B, FlexAutodiff>() {
        let x: Tensor<FlexAutodiff, D> = cast(x.clone());
        return !primitive(x).node.requirement.is_none();
    }
    false
}

/// `[N, C, H, W]` → `[N, Ho·Wo, C·kh·kw]`, features ordered (channel, row, column) like the
/// flattened weight `[C_out, C_in/groups, kh, kw]`.
///
/// On burn's CPU backend a direct copy loop (several times faster than burn's gather there);
/// for an input inside the autodiff graph (see [`is_tracked`]) its backward pass is col2im.
/// Elsewhere, and for other float types, one gather.
pub(crate) fn im2col<B: Backend>(x: Tensor<B, 4>, geo: &ConvGeometry) -> Tensor<B, 3> {
    if is::<B, Flex>() {
        let x: Tensor<Flex, 4> = cast(x);
        return cast(im2col_flex(x, geo));
    }
    if is::<B, FlexAutodiff>() {
        let x: Tensor<FlexAutodiff, 4> = cast(x);
        return cast(if is_tracked(&x) {
            im2col_tracked(x, geo)
        } else {
            Tensor::from_inner(im2col_flex(x.inner(), geo))
        });
    }
    im2col_gather(x, geo)
}

/// im2col by copying from the f32 values of a flex tensor (gather for other float types).
fn im2col_flex(x: Tensor<Flex, 4>, geo: &ConvGeometry) -> Tensor<Flex, 3> {
    let [n, c, h, w] = x.dims();
    let x = primitive(x);
    let Some(values) = f32_values(&x) else {
        return im2col_gather(from_primitive(x), geo);
    };
    let [ho, wo] = geo.output_size([h, w]);
    let [kh, kw] = geo.kernel;
    let d = c * kh * kw;
    let mut out = vec![0.0f32; n * ho * wo * d];
    if d > 0 && ho * wo > 0 {
        out.par_chunks_mut(ho * wo * d)
            .zip(values.par_chunks(c * h * w))
            .for_each(|(out, x)| patches_of_example(x, [c, h, w], geo, out));
    }
    from_primitive(flex_tensor(out, vec![n, ho * wo, d]))
}

/// im2col of an input in flex's autodiff graph: the copy loop forward, and as its backward
/// pass col2im (each row's gradient added back to the pixels it was copied from, example by
/// example in parallel), where the gather's backward is a slow scatter on flex.
fn im2col_tracked(x: Tensor<FlexAutodiff, 4>, geo: &ConvGeometry) -> Tensor<FlexAutodiff, 3> {
    if x.dtype() != DType::F32 {
        return im2col_gather(x, geo);
    }
    let [_, c, h, w] = x.dims();
    let cols = im2col_flex(x.clone().inner(), geo);
    let x = primitive(x);
    let op = Col2im {
        geometry: *geo,
        input: [c, h, w],
    };
    let out = op
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateless(primitive(cols));
    from_primitive(out)
}

/// The backward pass of [`im2col_tracked`].
#[derive(Debug)]
struct Col2im {
    geometry: ConvGeometry,
    /// `[C, H, W]` of one example.
    input: [usize; 3],
}

impl Backward<Flex, 1> for Col2im {
    type State = ();

    fn backward(self, ops: Ops<(), 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| {
            col2im(&grad, self.input, &self.geometry)
        });
    }
}

/// `[N, Ho·Wo, C·kh·kw]` → `[N, C, H, W]`: the sum of every row value into the pixel
/// im2col copied it from (padding dropped). The gradient is read through its strides: the
/// matrix product's backward pass hands it over transposed.
fn col2im(grad: &FlexTensor, [c, h, w]: [usize; 3], geo: &ConvGeometry) -> FlexTensor {
    let mut grad = match grad.dtype() {
        DType::F32 => grad.clone(),
        _ => primitive(from_primitive::<Flex, 3>(grad.clone()).cast(DType::F32)),
    };
    if grad.layout().strides().iter().any(|s| *s < 0) {
        grad = grad.to_contiguous();
    }
    let n = grad.layout().shape()[0];
    let strides: Vec<usize> = grad
        .layout()
        .strides()
        .iter()
        .map(|s| *s as usize)
        .collect();
    let (row_stride, value_stride) = (strides[1], strides[2]);
    let offset = grad.layout().start_offset();
    let values: &[f32] = grad.storage();
    let [ho, wo] = geo.output_size([h, w]);
    let [kh, kw] = geo.kernel;
    let mut out = vec![0.0f32; n * c * h * w];
    if c * kh * kw > 0 && ho * wo > 0 && c * h * w > 0 {
        out.par_chunks_mut(c * h * w)
            .enumerate()
            .for_each(|(example, x)| {
                let base = offset + example * strides[0];
                for oi in 0..ho {
                    for oj in 0..wo {
                        let row = base + (oi * wo + oj) * row_stride;
                        for ci in 0..c {
                            let plane = &mut x[ci * h * w..(ci + 1) * h * w];
                            for ki in 0..kh {
                                let Some(r) = (oi * geo.stride[0] + ki * geo.dilation[0])
                                    .checked_sub(geo.padding_start[0])
                                    .filter(|r| *r < h)
                                else {
                                    continue;
                                };
                                let first = (ci * kh + ki) * kw;
                                for kj in 0..kw {
                                    let col = (oj * geo.stride[1] + kj * geo.dilation[1])
                                        .checked_sub(geo.padding_start[1]);
                                    if let Some(col) = col.filter(|col| *col < w) {
                                        plane[r * w + col] +=
                                            values[row + (first + kj) * value_stride];
                                    }
                                }
                            }
                        }
                    }
                }
            });
    }
    flex_tensor(out, vec![n, c, h, w])
}

/// The im2col rows of one example `[C, H, W]` into `out` `[Ho·Wo, C·kh·kw]` (zeroed).
pub(crate) fn patches_of_example(
    x: &[f32],
    [c, h, w]: [usize; 3],
    geo: &ConvGeometry,
    out: &mut [f32],
) {
    let [ho, wo] = geo.output_size([h, w]);
    let [kh, kw] = geo.kernel;
    let d = c * kh * kw;
    // For each output column, the kernel columns that fall inside the input: (first kj,
    // first input column, count) when they are contiguous (dilation 1), else every pair.
    let spans: Vec<Vec<(usize, usize)>> = (0..wo)
        .map(|oj| {
            (0..kw)
                .filter_map(|kj| {
                    let col = (oj * geo.stride[1] + kj * geo.dilation[1])
                        .checked_sub(geo.padding_start[1])?;
                    (col < w).then_some((kj, col))
                })
                .collect()
        })
        .collect();
    let contiguous = geo.dilation[1] == 1;
    for oi in 0..ho {
        let rows: Vec<(usize, usize)> = (0..kh)
            .filter_map(|ki| {
                let r = (oi * geo.stride[0] + ki * geo.dilation[0])
                    .checked_sub(geo.padding_start[0])?;
                (r < h).then_some((ki, r))
            })
            .collect();
        for (oj, span) in spans.iter().enumerate() {
            let row = &mut out[(oi * wo + oj) * d..(oi * wo + oj + 1) * d];
            let (Some(&(kj0, col0)), n) = (span.first(), span.len()) else {
                continue;
            };
            for ci in 0..c {
                let plane = &x[ci * h * w..(ci + 1) * h * w];
                for &(ki, r) in &rows {
                    let dst = &mut row[(ci * kh + ki) * kw..(ci * kh + ki + 1) * kw];
                    let line = &plane[r * w..(r + 1) * w];
                    if contiguous {
                        copy_span(&mut dst[kj0..kj0 + n], &line[col0..col0 + n]);
                    } else {
                        for &(kj, col) in span {
                            dst[kj] = line[col];
                        }
                    }
                }
            }
        }
    }
}

/// `dst = src` for slices of equal length; the short lengths of kernel rows get fixed-size
/// copies (a `memcpy` call per 3–8 values cost more than the copy itself).
#[inline]
fn copy_span(dst: &mut [f32], src: &[f32]) {
    macro_rules! fixed {
        ($($n:literal)*) => {
            match dst.len() {
                $($n => dst[..$n].copy_from_slice(&src[..$n]),)*
                _ => dst.copy_from_slice(src),
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8);
}

/// im2col as one gather from the zero-padded input (any backend; differentiable).
fn im2col_gather<B: Backend>(x: Tensor<B, 4>, geo: &ConvGeometry) -> Tensor<B, 3> {
    let [n, c, h, w] = x.dims();
    let [ph0, pw0] = geo.padding_start;
    let [ph1, pw1] = geo.padding_end;
    let x = if ph0 + ph1 + pw0 + pw1 > 0 {
        x.pad((pw0, pw1, ph0, ph1), PadMode::Constant(0.0))
    } else {
        x
    };
    let [_, _, hp, wp] = x.dims();
    let [ho, wo] = geo.output_size([h, w]);
    let indices = gather_indices(geo, [c, h, w]);
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(indices.to_vec(), [indices.len()]),
        &x.device(),
    );
    x.reshape([n, c * hp * wp]).select(1, index).reshape([
        n,
        ho * wo,
        c * geo.kernel[0] * geo.kernel[1],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::module::conv2d;
    use burn::tensor::Distribution;

    /// im2col · flattened weight must equal burn's own convolution.
    fn check(geo: ConvGeometry, input: [usize; 4], out_channels: usize) {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::random(input, Distribution::Normal(0.0, 1.0), &device);
        let cg = input[1] / geo.groups;
        let w = Tensor::<Flex, 4>::random(
            [out_channels, cg, geo.kernel[0], geo.kernel[1]],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        let expected = conv2d(x.clone(), w.clone(), None, geo.conv_options());
        let cols = im2col(x.clone(), &geo); // [N, T, C·k·k]
                                            // The copy loop (flex, no gradient) and the gather (any backend) agree exactly.
        let gathered = im2col_gather(x.clone(), &geo);
        let tracked = Tensor::<FlexAutodiff, 4>::from_inner(x).require_grad();
        let tracked = im2col(tracked, &geo).inner();
        for other in [gathered, tracked] {
            assert_eq!(cols.to_data(), other.to_data(), "{geo:?}");
        }
        let [n, t, _] = cols.dims();
        let d = cg * geo.kernel[0] * geo.kernel[1];
        let og = out_channels / geo.groups;
        let cols = cols
            .reshape([n, t, geo.groups, d])
            .permute([2, 0, 1, 3])
            .reshape([geo.groups, n * t, d]);
        let wf = w.reshape([geo.groups, og, d]).swap_dims(1, 2); // [G, d, og]
        let out = cols.matmul(wf); // [G, N·T, og]
        let [ho, wo] = geo.output_size([input[2], input[3]]);
        assert_eq!(t, ho * wo);
        let got = out
            .reshape([geo.groups, n, ho, wo, og])
            .permute([1, 0, 4, 2, 3])
            .reshape([n, out_channels, ho, wo]);
        assert_eq!(got.dims(), expected.dims());
        let diff: f32 = (got - expected).abs().max().into_scalar();
        assert!(diff < 1e-4, "{geo:?}: max difference {diff}");
    }

    #[test]
    fn im2col_reproduces_convolution_for_every_option() {
        let base = ConvGeometry {
            kernel: [3, 3],
            stride: [1, 1],
            padding_start: [0, 0],
            padding_end: [0, 0],
            dilation: [1, 1],
            groups: 1,
        };
        check(base, [2, 3, 7, 6], 4);
        check(
            ConvGeometry {
                stride: [2, 1],
                ..base
            },
            [2, 3, 9, 8],
            5,
        );
        check(
            ConvGeometry {
                padding_start: [1, 2],
                padding_end: [1, 0],
                ..base
            },
            [1, 2, 5, 5],
            3,
        );
        check(
            ConvGeometry {
                dilation: [2, 3],
                ..base
            },
            [2, 2, 9, 10],
            2,
        );
        check(ConvGeometry { groups: 2, ..base }, [2, 4, 6, 6], 6);
        check(
            ConvGeometry {
                kernel: [8, 8],
                stride: [2, 2],
                padding_start: [3, 3],
                padding_end: [3, 3],
                ..base
            },
            [2, 1, 28, 28],
            4,
        );
        check(
            ConvGeometry {
                kernel: [1, 1],
                stride: [2, 2],
                ..base
            },
            [2, 3, 6, 6],
            2,
        );
    }
}
