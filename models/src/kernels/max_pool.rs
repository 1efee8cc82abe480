//! 2×2 max-pooling with stride 1 (Tramèr & Boneh's CNN pools this way twice).

use super::{
    cast, f32_values, flex_tensor, from_primitive, is, primitive, unary_node, FlexAutodiff,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;
use std::sync::Arc;

/// 2×2 max-pooling, stride 1, no padding: `[N, C, H, W]` → `[N, C, H−1, W−1]`.
///
/// Equal to burn's `max_pool2d(x, [2, 2], [1, 1], [0, 0], [1, 1], false)`, values and
/// gradients (ties go to the first of the window in row-major order, as in burn). burn 0.21's
/// `flex` kernel for it is a generic 3-D loop that cost a third of a private step of the CNN;
/// this one is a plain pass over each plane.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{DType, Tensor};
/// let x = Tensor::<Flex, 4>::from_floats([[[[1.0, 5.0, 2.0], [3.0, 4.0, 0.0]]]], &Default::default());
/// let y = dp_models::kernels::max_pool::max_pool_2x2_stride1(x);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![5.0, 5.0]);
/// ```
pub fn max_pool_2x2_stride1<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if h >= 2 && w >= 2 {
        if is::<B, FlexAutodiff>() {
            let x = primitive(cast::<_, Tensor<FlexAutodiff, 4>>(x));
            return cast(from_primitive::<FlexAutodiff, 4>(tracked(x)));
        }
        if is::<B, Flex>() {
            let x = primitive(cast::<_, Tensor<Flex, 4>>(x));
            if let Some((y, _)) = forward(&x) {
                return cast(from_primitive::<Flex, 4>(y));
            }
            return burn_pool(cast(from_primitive::<Flex, 4>(x)));
        }
    }
    burn_pool(x)
}

fn burn_pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    max_pool2d(x, [2, 2], [1, 1], [0, 0], [1, 1], false)
}

/// Where each output took its value from, as an index into its input plane.
#[derive(Clone, Debug)]
struct Argmax {
    index: Arc<Vec<u32>>,
    input_shape: [usize; 4],
}

#[derive(Debug)]
struct MaxPool2x2;

impl Backward<Flex, 1> for MaxPool2x2 {
    type State = Argmax;

    fn backward(self, ops: Ops<Argmax, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let argmax = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| scatter(grad, &argmax));
    }
}

fn tracked(x: FloatTensor<FlexAutodiff>) -> FloatTensor<FlexAutodiff> {
    let fallback = |x| primitive(burn_pool(from_primitive::<FlexAutodiff, 4>(x)));
    let Some((y, argmax)) = forward(&x.primitive) else {
        return fallback(x);
    };
    unary_node(MaxPool2x2, &x, argmax, y)
}

/// The pooled tensor and its argmax; `None` if `x` is not f32.
fn forward(x: &FlexTensor) -> Option<(FlexTensor, Argmax)> {
    let shape = x.layout().shape();
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let values = f32_values(x)?;
    let (ho, wo) = (h - 1, w - 1);
    let mut out = vec![0.0f32; n * c * ho * wo];
    let mut index = vec![0u32; n * c * ho * wo];
    out.par_chunks_mut(ho * wo)
        .zip(index.par_chunks_mut(ho * wo))
        .zip(values.par_chunks(h * w))
        .for_each(|((out, index), plane)| pool_plane(plane, w, out, index));
    let argmax = Argmax {
        index: Arc::new(index),
        input_shape: [n, c, h, w],
    };
    Some((flex_tensor(out, vec![n, c, ho, wo]), argmax))
}

/// One `h × w` plane: maximum of each 2×2 window and its position (first maximum wins).
fn pool_plane(plane: &[f32], w: usize, out: &mut [f32], index: &mut [u32]) {
    let wo = w - 1;
    for (i, (out, index)) in out.chunks_mut(wo).zip(index.chunks_mut(wo)).enumerate() {
        let top = &plane[i * w..(i + 1) * w];
        let bottom = &plane[(i + 1) * w..(i + 2) * w];
        for j in 0..wo {
            let mut best = top[j];
            let mut at = i * w + j;
            for (v, k) in [
                (top[j + 1], at + 1),
                (bottom[j], at + w),
                (bottom[j + 1], at + w + 1),
            ] {
                if v > best {
                    best = v;
                    at = k;
                }
            }
            out[j] = best;
            index[j] = at as u32;
        }
    }
}

/// The input gradient: each output gradient added at its argmax.
fn scatter(grad: FlexTensor, argmax: &Argmax) -> FlexTensor {
    // The gradient of an f32 output is f32; cast anything else rather than fail.
    let grad = match grad.dtype() {
        DType::F32 => grad,
        _ => primitive(from_primitive::<Flex, 4>(grad).cast(DType::F32)),
    };
    let g = f32_values(&grad).unwrap_or_default();
    let [n, c, h, w] = argmax.input_shape;
    let per_out = (h - 1) * (w - 1);
    let mut input = vec![0.0f32; n * c * h * w];
    input
        .par_chunks_mut(h * w)
        .zip(g.par_chunks(per_out))
        .zip(argmax.index.par_chunks(per_out))
        .for_each(|((plane, g), index)| {
            for (&k, &v) in index.iter().zip(g) {
                plane[k as usize] += v;
            }
        });
    flex_tensor(input, vec![n, c, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    /// Values from {-2, …, 2}, so that most windows hold ties.
    fn input(shape: [usize; 4]) -> Tensor<Flex, 4> {
        Tensor::<Flex, 4>::random(shape, Distribution::Uniform(-2.5, 2.5), &Default::default())
            .round()
    }

    fn pooled_and_grad(
        x: &Tensor<Flex, 4>,
        weights: &Tensor<Flex, 4>,
        ours: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let xa = Tensor::<FlexAutodiff, 4>::from_inner(x.clone()).require_grad();
        let y = if ours {
            max_pool_2x2_stride1(xa.clone())
        } else {
            burn_pool(xa.clone())
        };
        let loss = (y.clone() * Tensor::from_inner(weights.clone())).sum();
        let grads = loss.backward();
        let g = xa
            .grad(&grads)
            .map(|g| g.into_data().to_vec::<f32>().unwrap());
        (y.inner().into_data().to_vec().unwrap(), g.unwrap())
    }

    #[test]
    fn values_and_gradients_equal_burns_max_pool_with_ties() {
        for shape in [[3, 2, 5, 7], [2, 16, 14, 14], [1, 1, 2, 2], [4, 3, 2, 9]] {
            let x = input(shape);
            let [n, c, h, w] = shape;
            let weights = Tensor::<Flex, 4>::random(
                [n, c, h - 1, w - 1],
                Distribution::Normal(0.0, 1.0),
                &Default::default(),
            );
            assert_eq!(
                pooled_and_grad(&x, &weights, true),
                pooled_and_grad(&x, &weights, false),
                "{shape:?}"
            );
            let inference: Vec<f32> = max_pool_2x2_stride1(x.clone())
                .into_data()
                .to_vec()
                .unwrap();
            let burn: Vec<f32> = burn_pool(x).into_data().to_vec().unwrap();
            assert_eq!(inference, burn, "{shape:?}");
        }
    }

    #[test]
    fn non_contiguous_input_is_read_in_logical_order() {
        let x = input([2, 3, 6, 5]);
        let transposed = x.clone().swap_dims(2, 3);
        let ours: Vec<f32> = max_pool_2x2_stride1(transposed.clone())
            .into_data()
            .to_vec()
            .unwrap();
        let burn: Vec<f32> = burn_pool(transposed).into_data().to_vec().unwrap();
        assert_eq!(ours, burn);
    }

    #[test]
    fn untracked_input_gives_untracked_output() {
        let x = Tensor::<FlexAutodiff, 4>::from_inner(input([2, 2, 4, 4]));
        let y = max_pool_2x2_stride1(x);
        assert!(!y.is_require_grad());
        assert_eq!(y.dims(), [2, 2, 3, 3]);
    }

    #[test]
    fn inputs_too_small_to_pool_go_to_burn() {
        let x = Tensor::<Flex, 4>::from_data(
            TensorData::new(vec![1.0f32, 2.0], [1, 1, 1, 2]),
            &Default::default(),
        );
        assert_eq!(max_pool_2x2_stride1(x.clone()).dims(), burn_pool(x).dims());
    }
}
