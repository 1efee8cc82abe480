//! Reads from the device to the host, counted.
//!
//! On a GPU a read is a synchronization: the host waits until every queued kernel has run,
//! then copies. The private step's hot path reads once per micro-batch (the per-example
//! norms, with any doubts of the closed-form norms in the same read; see
//! [`crate::engine::clip_and_sum`]). Every read dp-core makes goes through one (crate-private) function, which
//! counts it, so tests and `dp-bench` can check that count with [`host_reads`].
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::tensor::Tensor;
//! use dp_core::layers::LinearConfig;
//! use dp_core::readback::host_reads;
//! use dp_core::{clip_and_sum, ClipSpec, Clipping, PerExampleEngine};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let layer = LinearConfig::new(3, 2).init::<B>(&device).unwrap();
//! let x = Tensor::<B, 2>::ones([4, 3], &device);
//! let clip = ClipSpec::new(1.0, Clipping::Flat).unwrap();
//! let before = host_reads();
//! let losses = |m: &dp_core::layers::Linear<B>, rows| m.forward(x.clone().slice(rows)).sum_dim(1).reshape([-1]);
//! let sum = clip_and_sum(PerExampleEngine::Fast, &layer, 4, 1, losses, &clip, 0).unwrap();
//! assert_eq!(sum.examples(), 4);
//! assert_eq!(host_reads() - before, 1, "one read: the norms");
//! ```

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::cell::Cell;

thread_local! {
    static READS: Cell<u64> = const { Cell::new(0) };
}

/// How many device-to-host reads dp-core has made on this thread (the engine runs on the
/// thread that calls it, so the count of one step is the difference around it).
pub fn host_reads() -> u64 {
    READS.with(Cell::get)
}

/// The values of `t` on the host as f32, in row-major order (empty if the backend cannot
/// give them as f32). Counts one read.
pub(crate) fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    READS.with(|r| r.set(r.get() + 1));
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap_or_default()
}
