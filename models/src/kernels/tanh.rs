//! tanh with a fused forward and backward pass.

use super::{
    cast, f32_values, flex_tensor, from_primitive, is, primitive, unary_node, FlexAutodiff,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// tanh(x), as 1 − 2/(e^{2x} + 1).
///
/// On `flex` one pass forward and one pass backward (g·(1 − y²) from the saved output); burn
/// 0.21's own `tanh` there is libm's `tanhf` on one thread, recomputed in the backward pass.
/// Elsewhere it is burn's tanh. Absolute error within a few float ulps of 1.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// let x = Tensor::<Flex, 1>::from_floats([-30.0, -0.5, 0.0, 0.25, 4.0], &Default::default());
/// let y: Vec<f32> = dp_models::kernels::tanh::tanh(x).into_data().to_vec().unwrap();
/// let exact = [-1.0f32, -0.5f32.tanh(), 0.0, 0.25f32.tanh(), 4.0f32.tanh()];
/// assert!(y.iter().zip(exact).all(|(a, b)| (a - b).abs() < 1e-6));
/// ```
pub fn tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if is::<B, FlexAutodiff>() {
        let x = primitive(cast::<_, Tensor<FlexAutodiff, D>>(x));
        return cast(from_primitive::<FlexAutodiff, D>(tracked::<D>(x)));
    }
    if is::<B, Flex>() {
        let x = primitive(cast::<_, Tensor<Flex, D>>(x));
        return cast(from_primitive::<Flex, D>(forward(&x).unwrap_or_else(
            || primitive(burn_tanh(from_primitive::<Flex, D>(x))),
        )));
    }
    burn_tanh(x)
}

fn burn_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::tanh(x)
}

#[derive(Debug)]
struct Tanh;

impl Backward<Flex, 1> for Tanh {
    /// The output y.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| derivative(grad, &y));
    }
}

fn tracked<const D: usize>(x: FloatTensor<FlexAutodiff>) -> FloatTensor<FlexAutodiff> {
    let Some(y) = forward(&x.primitive) else {
        return primitive(burn_tanh(from_primitive::<FlexAutodiff, D>(x)));
    };
    unary_node(Tanh, &x, y.clone(), y)
}

/// tanh of an f32 tensor (`None` if not f32).
fn forward(x: &FlexTensor) -> Option<FlexTensor> {
    let values = f32_values(x)?;
    let mut y = vec![0.0f32; values.len()];
    y.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(y, x)| {
            for (y, &x) in y.iter_mut().zip(x) {
                *y = 1.0 - 2.0 / ((2.0 * x).exp() + 1.0);
            }
        });
    Some(flex_tensor(y, x.layout().shape().to_vec()))
}

/// g·(1 − y²).
fn derivative(grad: FlexTensor, y: &FlexTensor) -> FlexTensor {
    let grad = match grad.dtype() {
        DType::F32 => grad,
        _ => primitive(from_primitive::<Flex, 1>(grad).cast(DType::F32)),
    };
    let (g, y_values) = (
        f32_values(&grad).unwrap_or_default(),
        f32_values(y).unwrap_or_default(),
    );
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(y_values.par_chunks(CHUNK)))
        .for_each(|(out, (g, y))| {
            for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                *o = g * (1.0 - y * y);
            }
        });
    flex_tensor(out, y.layout().shape().to_vec())
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor};

    type AB = Autodiff<Flex>;

    #[test]
    fn values_and_gradients_equal_burns_tanh() {
        let device = Default::default();
        let x = Tensor::<Flex, 1>::random([10_000], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<Flex, 1>::random([10_000], Distribution::Normal(0.0, 1.0), &device);
        let run = |fast: bool| {
            let xa = Tensor::<AB, 1>::from_inner(x.clone()).require_grad();
            let y = if fast {
                super::tanh(xa.clone())
            } else {
                burn::tensor::activation::tanh(xa.clone())
            };
            let loss = (y.clone() * Tensor::from_inner(w.clone())).sum();
            let grads = loss.backward();
            let g = xa
                .grad(&grads)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            (y.inner().into_data().to_vec::<f32>().unwrap(), g)
        };
        let (fast_y, fast_g) = run(true);
        let (y, g) = run(false);
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        assert!(worst(&fast_y, &y) < 5e-7, "values: {}", worst(&fast_y, &y));
        assert!(
            worst(&fast_g, &g) < 5e-6,
            "gradients: {}",
            worst(&fast_g, &g)
        );
    }
}
