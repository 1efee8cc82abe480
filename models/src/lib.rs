//! Models built from dp-core's DP-aware layers, so the one-backward per-example path applies.
#![deny(missing_docs)]

pub mod cnn;

pub use cnn::TanhCnn;
