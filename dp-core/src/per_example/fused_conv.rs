//! im2col fused with its matrix product, example by example, on burn's CPU backend (`flex`).
//!
//! The first convolution of a small network (few input channels, a wide kernel: the tanh
//! CNN's 1 → 16, 8×8 has 64 values per position and 196 positions) has an im2col 16× larger
//! than its input: 12.8 MB for a micro-batch of 256, written once and read twice (by the
//! forward product and by the per-example gradients), and burn's batched matrix product
//! allocates and zero-fills its output on top. Here each example's im2col is built in a small
//! per-thread buffer that stays in the cache and multiplied at once (the `gemm` crate, which
//! burn's `flex` itself calls): the forward output with its bias, and the per-example weight
//! gradients P = g·im2col, each from the input alone.
//!
//! Only for f32 tensors, one group, and inputs, weights and biases outside any autodiff graph
//! (in a private forward the layers use detached parameters; the probe carries the gradient).
//! Every function returns `None` where it does not apply, and the caller takes the general
//! route.

use super::im2col::{patches_of_example, ConvGeometry};
use crate::flex::{f32_values, flex_tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// `dst [m, n] = lhs [m, k] · rhs [k, n]`, every matrix given by its row and column strides
/// (in elements), on one thread (the callers run examples in parallel).
///
/// # Safety
/// The pointers must address matrices of these shapes and strides: `dst` writable and not
/// overlapping the others.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul_into(
    [m, n, k]: [usize; 3],
    dst: *mut f32,
    [dst_rs, dst_cs]: [isize; 2],
    lhs: *const f32,
    [lhs_rs, lhs_cs]: [isize; 2],
    rhs: *const f32,
    [rhs_rs, rhs_cs]: [isize; 2],
) {
    // SAFETY: as promised by the caller; `read_dst = false` makes dst = 1·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The convolution `[N, C, H, W]` → `[N, C_out, Ho·Wo]` of a flex input with weight `w`
/// `[C_out, C, kh, kw]` and optional bias `[C_out]`, one group.
pub(crate) fn conv_forward(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    geo: &ConvGeometry,
) -> Option<FlexTensor> {
    if geo.groups != 1 {
        return None;
    }
    let (xs, ws) = (f32_values(x)?, f32_values(w)?);
    let bs = match bias {
        Some(b) => Some(f32_values(b)?),
        None => None,
    };
    let &[n, c, h, width] = x.layout().shape().as_slice() else {
        return None;
    };
    let &[c_out, c_w, kh, kw] = w.layout().shape().as_slice() else {
        return None;
    };
    let [ho, wo] = geo.output_size([h, width]);
    let (t, d) = (ho * wo, c * kh * kw);
    if c_w != c || geo.kernel != [kh, kw] || bs.as_ref().is_some_and(|b| b.len() != c_out) {
        return None;
    }
    let mut out = vec![0.0f32; n * c_out * t];
    if t > 0 && d > 0 && c_out > 0 {
        out.par_chunks_mut(c_out * t)
            .zip(xs.par_chunks(c * h * width))
            .for_each_init(
                || vec![0.0f32; t * d],
                |cols, (y, x)| {
                    cols.fill(0.0);
                    patches_of_example(x, [c, h, width], geo, cols);
                    // SAFETY: y is [c_out, t] row-major, w [c_out, d] row-major, and cols
                    // [t, d] row-major read as its transpose [d, t].
                    unsafe {
                        matmul_into(
                            [c_out, t, d],
                            y.as_mut_ptr(),
                            [t as isize, 1],
                            ws.as_ptr(),
                            [d as isize, 1],
                            cols.as_ptr(),
                            [1, d as isize],
                        );
                    }
                    if let Some(b) = &bs {
                        for (row, &b) in y.chunks_mut(t).zip(b.iter()) {
                            row.iter_mut().for_each(|v| *v += b);
                        }
                    }
                },
            );
    }
    Some(flex_tensor(out, vec![n, c_out, t]))
}

/// The per-example weight gradients `[E, 1, C_out, C·kh·kw]` of a one-group convolution with
/// input `[E·K, C, H, W]` and output gradients `g` `[E, 1, C_out, K·Ho·Wo]` (the K views of an
/// example side by side, as [`super::conv`] lays them out): for each example, g times the
/// im2col rows of its K views.
pub(crate) fn per_example_weight(
    x: &FlexTensor,
    g: &FlexTensor,
    geo: &ConvGeometry,
    views: usize,
) -> Option<FlexTensor> {
    if geo.groups != 1 || views == 0 {
        return None;
    }
    let (xs, gs) = (f32_values(x)?, f32_values(g)?);
    let &[rows, c, h, width] = x.layout().shape().as_slice() else {
        return None;
    };
    let &[e, 1, o, r] = g.layout().shape().as_slice() else {
        return None;
    };
    let [ho, wo] = geo.output_size([h, width]);
    let (t, d) = (ho * wo, c * geo.kernel[0] * geo.kernel[1]);
    if rows != e * views || r != views * t {
        return None;
    }
    let mut out = vec![0.0f32; e * o * d];
    if t > 0 && d > 0 && o > 0 {
        let example = c * h * width;
        out.par_chunks_mut(o * d)
            .zip(gs.par_chunks(o * r))
            .zip(xs.par_chunks(views * example))
            .for_each_init(
                || vec![0.0f32; r * d],
                |cols, ((p, g), x)| {
                    cols.fill(0.0);
                    for (view, rows) in x.chunks(example).zip(cols.chunks_mut(t * d)) {
                        patches_of_example(view, [c, h, width], geo, rows);
                    }
                    // SAFETY: p is [o, d] row-major, g [o, r] row-major, cols [r, d]
                    // row-major.
                    unsafe {
                        matmul_into(
                            [o, d, r],
                            p.as_mut_ptr(),
                            [d as isize, 1],
                            g.as_ptr(),
                            [r as isize, 1],
                            cols.as_ptr(),
                            [d as isize, 1],
                        );
                    }
                },
            );
    }
    Some(flex_tensor(out, vec![e, 1, o, d]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex::{from_primitive, primitive};
    use crate::layers::Conv2dConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::module::conv2d;
    use burn::tensor::{Distribution, Tensor};

    fn max_abs_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Against burn's convolution (outputs) and burn's autodiff run on each example alone
    /// (per-example weight gradients, with two views averaged as the caller lays them out),
    /// for padding, stride, dilation and asymmetric padding.
    #[test]
    fn forward_and_per_example_gradients_equal_burns() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        let configs = [
            Conv2dConfig::new([1, 16], [8, 8])
                .with_stride([2, 2])
                .with_padding([3, 3]),
            Conv2dConfig::new([3, 5], [3, 3]).with_padding([1, 1]),
            Conv2dConfig::new([2, 4], [3, 2])
                .with_stride([2, 1])
                .with_asymmetric_padding([0, 1], [2, 1])
                .with_dilation([1, 2]),
        ];
        for config in configs {
            let geo = config.geometry();
            let (e, views) = (3, 2);
            let x =
                Tensor::<Flex, 4>::random([e * views, config.channels[0], 11, 10], normal, &device);
            let w = Tensor::<Flex, 4>::random(config.weight_dims(), normal, &device);
            let b = Tensor::<Flex, 1>::random([config.channels[1]], normal, &device);
            let reference = conv2d(x.clone(), w.clone(), Some(b.clone()), geo.conv_options());
            let [_, c_out, ho, wo] = reference.dims();
            let fused = conv_forward(
                &primitive(x.clone()),
                &primitive(w.clone()),
                Some(&primitive(b.clone())),
                &geo,
            )
            .unwrap();
            let fused = from_primitive::<Flex, 3>(fused).reshape([e * views, c_out, ho, wo]);
            assert!(max_abs_diff(fused, reference.clone()) < 1e-4, "{config:?}");

            // Output gradients per row, and the per-example gradient they give each example.
            let g = Tensor::<Flex, 4>::random(reference.dims(), normal, &device);
            let t = ho * wo;
            let mut expected = Vec::new();
            for example in 0..e {
                let rows = example * views..(example + 1) * views;
                let wa = Tensor::<Autodiff<Flex>, 4>::from_inner(w.clone()).require_grad();
                let xa = Tensor::<Autodiff<Flex>, 4>::from_inner(x.clone().slice([rows.clone()]));
                let y = conv2d(xa, wa.clone(), None, geo.conv_options());
                let ga = Tensor::from_inner(g.clone().slice([rows]));
                let grads = (y * ga).sum().backward();
                expected.push(
                    wa.grad(&grads)
                        .unwrap()
                        .reshape([1, 1, c_out, config.fan_in()]),
                );
            }
            let expected = Tensor::cat(expected, 0);
            // The caller's layout: [E, 1, C_out, K·T], views side by side.
            let g_rows =
                g.reshape([e, views, c_out, t])
                    .swap_dims(1, 2)
                    .reshape([e, 1, c_out, views * t]);
            let p =
                per_example_weight(&primitive(x.clone()), &primitive(g_rows), &geo, views).unwrap();
            let p = from_primitive::<Flex, 4>(p);
            assert!(max_abs_diff(p, expected) < 1e-3, "{config:?}");
        }
    }

    /// Shapes it cannot take give `None` (the caller then takes the general route).
    #[test]
    fn refuses_what_it_does_not_cover() {
        let device = Default::default();
        let x = Tensor::<Flex, 4>::zeros([2, 4, 6, 6], &device);
        let w = Tensor::<Flex, 4>::zeros([4, 2, 3, 3], &device);
        let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).geometry();
        assert!(
            conv_forward(&primitive(x.clone()), &primitive(w.clone()), None, &grouped).is_none()
        );
        let one = Conv2dConfig::new([4, 4], [3, 3]).geometry();
        // Weight channels that do not match the input's.
        assert!(conv_forward(&primitive(x.clone()), &primitive(w), None, &one).is_none());
        // Output gradients for another number of rows.
        let g = Tensor::<Flex, 4>::zeros([3, 1, 4, 16], &device);
        assert!(per_example_weight(&primitive(x), &primitive(g), &one, 1).is_none());
    }
}
