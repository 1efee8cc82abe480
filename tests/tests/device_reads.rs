//! See [`backends/device_reads.rs`](backends/device_reads.rs): the suite runs on every test backend.
// The suite is compiled once per backend, on purpose.
#![allow(clippy::duplicate_mod)]

mod common;

/// On burn's CPU backend.
#[path = "backends"]
mod flex {
    pub use crate::common::backends::flex::*;
    #[path = "device_reads.rs"]
    mod cases;
}

/// On burn's wgpu backend (Mesa's lavapipe in CI).
#[cfg(feature = "wgpu")]
#[path = "backends"]
mod wgpu {
    pub use crate::common::backends::wgpu::*;
    #[path = "device_reads.rs"]
    mod cases;
}
