//! Helpers shared by the integration tests of `dp-train`.
#![allow(dead_code)]

use examples::data::write_synthetic_fashion_mnist;
use examples::report::Summary;
use examples::train::{DeviceChoice, Outcome, TrainOptions};
use std::path::Path;

/// Quiet CPU options for a run in `out`.
pub fn options(out: &Path) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        resume: false,
        device: DeviceChoice::Cpu,
        progress: false,
        verbose: false,
        pause_after: None,
    }
}

/// The summary of a finished run (panics on a paused one).
pub fn finished(outcome: Outcome) -> Summary {
    match outcome {
        Outcome::Finished(s) => s,
        other => panic!("not finished: {other:?}"),
    }
}

/// A small Fashion-MNIST-shaped dataset (64 training, 20 test images) in a temporary folder.
pub fn fmnist_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_fashion_mnist(data.path(), 64, 20, 9).unwrap();
    data
}
