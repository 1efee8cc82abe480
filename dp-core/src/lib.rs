//! The DP-SGD engine on burn.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod audit;
mod budget;
mod error;
pub mod flex;
pub mod layers;
pub mod noise;
mod per_example;
pub mod rng;
pub mod sampler;
mod tape;
#[cfg(feature = "test-hooks")]
pub mod test_hooks;

pub use error::{DpError, OffendingLayer, Result};
pub mod clipping;
pub mod engine;
pub mod params;

pub use clipping::{ClipSpec, Clipping};
pub use engine::{clip_and_sum, ClippedSum, PerExampleEngine};
pub mod ema;
pub mod optimizer;
pub mod readback;
mod validate;

pub use optimizer::{Budget, DpOptimizer, DpSgdConfig, PrivateStep};
pub use validate::validate_model;
pub mod checkpoint;
pub mod collective;
pub mod device;
pub mod files;
pub mod journal;
pub mod loss;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
