//! Models built from dp-core's DP-aware layers, so the one-backward per-example path applies.
#![deny(missing_docs)]

pub mod cnn;
mod error;
pub mod finetune;
pub mod kernels;
pub mod load;
pub mod nfnet;
pub mod padding;
pub mod scattering;
pub mod scatternet;
pub mod wrn;

pub use cnn::TanhCnn;
pub use error::{ModelError, Result};
pub use load::{
    load_safetensors, read_safetensors_metadata, save_safetensors, save_safetensors_with_metadata,
    KeyLayout,
};
pub use nfnet::{NfNet, NfNetConfig};
pub use scattering::Scattering2D;
pub use scatternet::{ScatterHead, ScatterNet, ScatterNetConfig};
pub use wrn::{WideResNet, WideResNetConfig};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
