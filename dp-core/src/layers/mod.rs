//! DP-aware layers: plain burn modules that, inside a private forward, record what the
//! one-backward per-example gradient computation needs.

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
