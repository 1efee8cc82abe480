//! The backend suites, compiled into one test binary (`--test backends`): each suite file in
//! this folder is written once against the alias `TB` of its parent module and included once
//! per backend — flex always, wgpu with the `wgpu` feature (Mesa's lavapipe in CI). Tests are
//! named `flex::<suite>::…` and `wgpu::<suite>::…`. One binary instead of one per suite: each
//! test binary monomorphizes the engine and the models for every backend again.
// Each suite is compiled once per backend, on purpose.
#![allow(clippy::duplicate_mod)]

#[path = "../common/mod.rs"]
mod common;

/// On burn's CPU backend.
#[path = "."]
mod flex {
    pub use crate::common::backends::flex::*;
    mod device_reads;
    mod dp_optimizer;
    mod fast_path_assumptions;
    mod model_oracle;
    mod oracle_edge_cases;
    mod per_example_oracle;
}

/// On burn's wgpu backend. A machine without a usable adapter fails `wgpu::wgpu_adapter`
/// and every wgpu case: nothing is skipped.
#[cfg(feature = "wgpu")]
#[path = "."]
mod wgpu {
    pub use crate::common::backends::wgpu::*;
    mod device_reads;
    mod dp_optimizer;
    mod fast_path_assumptions;
    mod model_oracle;
    mod oracle_edge_cases;
    mod per_example_oracle;
    mod wgpu_adapter;
}
