//! Dispatch to hand-written kernels on burn's CPU backend (`flex`).
//!
//! burn 0.21's `flex` backend runs a few operations far below what the hardware allows (a
//! gather, a generic 3-D pooling loop, leading-axis broadcasts). Code generic over the
//! backend can check with [`is`] whether it runs on [`Flex`] or [`FlexAutodiff`], move the
//! tensor to that concrete type with [`cast`], work on its memory ([`f32_values`],
//! [`flex_tensor`]) and move the result back. On every other backend such code calls the burn
//! operation, so nothing changes there.

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use std::any::{Any, TypeId};

/// The autodiff backend these kernels have a backward pass for.
pub type FlexAutodiff = Autodiff<Flex, NoCheckpointing>;

/// Whether `S` and `T` are the same type.
pub fn is<S: 'static, T: 'static>() -> bool {
    TypeId::of::<S>() == TypeId::of::<T>()
}

/// `value` as a `T`.
///
/// # Panics
/// Unless `S` and `T` are the same type: call it only where [`is::<S, T>()`](is) holds.
pub fn cast<S: 'static, T: 'static>(value: S) -> T {
    let mut slot = Some(value);
    match (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        Some(t) => t,
        None => unreachable!("cast between different types"),
    }
}

/// The f32 values of a flex tensor in row-major order (a view when it is contiguous).
pub fn f32_values(t: &FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    match t.as_slice::<f32>() {
        Some(s) => Some(std::borrow::Cow::Borrowed(s)),
        None => t
            .to_contiguous()
            .as_slice::<f32>()
            .map(|s| std::borrow::Cow::Owned(s.to_vec())),
    }
}

/// A flex tensor of `shape` holding `values`.
pub fn flex_tensor(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// The float primitive of a tensor.
pub fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// A tensor from its float primitive.
pub fn from_primitive<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}
