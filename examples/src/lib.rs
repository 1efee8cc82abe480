//! Shared pieces of the example programs and benchmarks.
#![deny(missing_docs)]

pub mod augment;
pub mod bench;
pub mod bench_parallel;
pub mod check;
pub mod data;
pub mod error;
pub mod inference;
pub mod model_card;
pub mod presets;
pub mod report;
pub mod rss;
pub mod train;
