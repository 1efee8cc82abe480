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

/// The allocator of every program here. glibc's returns freed buffers above its mmap threshold
/// to the OS, so each training step faults its large buffers back in page by page (on the
/// project's 2-core VM a fifth of a private CNN step was page faults and zeroing); mimalloc
/// keeps and reuses them. Library users get the same by declaring it in their own binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
