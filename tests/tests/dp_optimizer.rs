//! See [`backends/dp_optimizer.rs`](backends/dp_optimizer.rs): the suite runs on every test backend.
// The suite is compiled once per backend, on purpose.
#![allow(clippy::duplicate_mod)]

mod common;

/// On burn's CPU backend.
#[path = "backends"]
mod flex {
    pub use crate::common::backends::flex::*;
    #[path = "dp_optimizer.rs"]
    mod cases;
}

/// On burn's wgpu backend (Mesa's lavapipe in CI).
#[cfg(feature = "wgpu")]
#[path = "backends"]
mod wgpu {
    pub use crate::common::backends::wgpu::*;
    #[path = "dp_optimizer.rs"]
    mod cases;
}
