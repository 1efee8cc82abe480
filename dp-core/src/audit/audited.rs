//! A model trained alongside canaries: the model and the audit block side by side, one module
//! for the DP optimizer (so the block is clipped, noised and charged with the model).

use crate::layers::Linear;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// `model` and the audit block of [`super::canary_block`].
#[derive(Module, Debug)]
pub struct Audited<B: Backend, M: Module<B>> {
    /// The model being trained.
    pub model: M,
    /// The canaries' coordinates (see the [module docs](super)).
    pub block: Linear<B>,
}

impl<B: Backend, M: Module<B>> Audited<B, M> {
    /// Per-row losses of a micro-batch holding real examples and canaries: `real_losses` of
    /// the model (any finite value on canary rows), `is_real` 1 on real rows and 0 on canary
    /// rows, `canary_inputs` from [`super::canary_inputs`] (zero on real rows). A canary row's
    /// loss is the block's output, so its gradient is `M·e_j` on the block and zero on the
    /// model; a real row's gradient is the model's and zero on the block.
    pub fn losses(
        &self,
        real_losses: Tensor<B, 1>,
        is_real: Tensor<B, 1>,
        canary_inputs: Tensor<B, 2>,
    ) -> Tensor<B, 1> {
        real_losses * is_real + self.block.forward(canary_inputs).reshape([-1])
    }
}
