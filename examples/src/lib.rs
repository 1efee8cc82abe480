//! Shared pieces of the example programs and benchmarks.
#![deny(missing_docs)]

pub mod augment;
pub mod bench;
pub mod bench_parallel;
pub mod check;
pub mod data;
pub mod error;
pub mod features;
pub mod inference;
pub mod model_card;
pub mod presets;
pub mod report;
pub mod rss;
pub mod train;

/// The allocator of every program here. glibc's returns freed buffers above its mmap threshold
/// to the OS, so each training step faults its large buffers back in page by page: in a profile
/// of private CNN steps on a 2-core Intel Xeon VM, page faults and page zeroing were a fifth of
/// the samples, and a private step at batch 256 took 94–95 ms with glibc against 59–81 ms with
/// mimalloc (2026-12-02). Library users get the same by declaring it in their own binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
