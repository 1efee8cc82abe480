//! Dispatch to hand-written kernels on burn's CPU backend (`flex`).
//!
//! burn 0.21's `flex` backend runs a few operations far below what the hardware allows (a
//! gather, a generic 3-D pooling loop, leading-axis broadcasts). Code generic over the
//! backend can check with [`is`] whether it runs on [`Flex`] or [`FlexAutodiff`], move the
//! tensor to that concrete type with [`cast`], work on its memory ([`f32_values`],
//! [`flex_tensor`]) and move the result back. On every other backend such code calls the burn
//! operation, so nothing changes there.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::backend::Backend;
//! use burn::tensor::Tensor;
//! use dp_core::flex::{cast, f32_values, flex_tensor, from_primitive, is, primitive};
//!
//! /// 2·x: by hand on flex, by burn elsewhere.
//! fn double<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
//!     if is::<B, Flex>() {
//!         let x = primitive(cast::<_, Tensor<Flex, 2>>(x));
//!         if let Some(values) = f32_values(&x) {
//!             let doubled = values.iter().map(|v| 2.0 * v).collect();
//!             let shape = x.layout().shape().to_vec();
//!             return cast(from_primitive::<Flex, 2>(flex_tensor(doubled, shape)));
//!         }
//!         return cast(from_primitive::<Flex, 2>(x).mul_scalar(2.0));
//!     }
//!     x.mul_scalar(2.0)
//! }
//!
//! let x = Tensor::<Flex, 2>::from_floats([[1.0, -2.0], [0.5, 3.0]], &Default::default());
//! let y: Vec<f32> = double(x.swap_dims(0, 1)).into_data().to_vec().unwrap();
//! assert_eq!(y, vec![2.0, 1.0, -4.0, 6.0]);
//! ```

use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_flex::FlexTensor;
use std::any::{Any, TypeId};

/// burn's autodiff over flex, as dp-core trains on the CPU (no checkpointing).
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
