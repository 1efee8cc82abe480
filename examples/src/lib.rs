//! Shared pieces of the example programs and benchmarks.
#![deny(missing_docs)]

pub mod bench;
pub mod parity;
pub mod rss;
