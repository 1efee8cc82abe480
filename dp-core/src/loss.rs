//! Per-example losses (the private step needs one loss per row, never a batch mean).

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

/// Cross-entropy of each row: −log softmax(logits)\[target\], shape `[N]`.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::{Int, Tensor};
/// let device = Default::default();
/// let logits = Tensor::<Flex, 2>::from_floats([[0.0, 0.0], [10.0, 0.0]], &device);
/// let targets = Tensor::<Flex, 1, Int>::from_ints([1, 0], &device);
/// let loss = dp_core::loss::cross_entropy_per_row(logits, targets).into_data().to_vec::<f32>().unwrap();
/// assert!((loss[0] - 2f32.ln()).abs() < 1e-6 && loss[1] < 1e-4);
/// ```
pub fn cross_entropy_per_row<B: Backend>(
    logits: Tensor<B, 2>,
    targets: Tensor<B, 1, Int>,
) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg()
}
