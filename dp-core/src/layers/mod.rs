//! DP-aware layers: plain burn modules that, inside a private forward, record what the
//! one-backward per-example gradient computation needs.
//!
//! # Privacy
//! Inside a private forward each layer reads its input's leading dimension as the micro-batch
//! rows, and uses its trainable parameters detached from the autodiff graph (their gradients
//! come from the layer's recorded output gradient). The fast path refuses a step where a
//! layer's leading dimension is not the rows, or where a parameter still gets a gradient,
//! i.e. is also used outside its layer (weight tying, a penalty term in the loss): see
//! [`crate::PerExampleEngine::Fast`].

mod conv2d;
mod group_norm;
mod linear;
mod scalar_gain;
mod ws_conv2d;

pub use conv2d::{Conv2d, Conv2dConfig};
pub use group_norm::{GroupNorm, GroupNormConfig};
pub use linear::{Linear, LinearConfig};
pub use scalar_gain::ScalarGain;
pub use ws_conv2d::{WsConv2d, WsConv2dConfig};
