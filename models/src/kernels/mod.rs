//! Hand-written CPU kernels, with their own backward pass, for the few operations where burn
//! 0.21's `flex` backend is slow enough to dominate a private step of the small CNN.
//!
//! Each public function here is generic over the backend and computes exactly what the burn
//! operation it replaces computes. On `Flex` (inference) and `Autodiff<Flex>` (training) it
//! runs its own kernel over the tensor's memory; on every other backend (CUDA, or `Flex`
//! with a non-f32 float type) it calls the burn operation. The dispatch is by type identity,
//! so nothing changes for code that does not use these backends.

pub mod max_pool;
pub mod tanh;

pub(crate) use dp_core::flex::{
    cast, f32_values, flex_tensor, from_primitive, is, primitive, FlexAutodiff,
};

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::ops::{Backward, OpsKind};
use burn::backend::Flex;
use burn::tensor::ops::FloatTensor;
use burn_flex::FlexTensor;

/// `y`, computed from `x` by `op`, as an autodiff tensor: tracked (with `state` kept for
/// `op`'s backward pass) when `x` is.
pub(crate) fn unary_node<O: Backward<Flex, 1>>(
    op: O,
    x: &FloatTensor<FlexAutodiff>,
    state: O::State,
    y: FlexTensor,
) -> FloatTensor<FlexAutodiff> {
    match op
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, y),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
