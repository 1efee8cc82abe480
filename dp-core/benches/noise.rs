//! The fast Gaussian sampler on one NFNet-F0 step's worth of noise (71.5 M values) and on 1 M,
//! against the sequential sampler it replaced (one ChaCha20 stream, the same ziggurat), which
//! is kept here only as a reference.
//!
//! `cargo bench -p dp-core --bench noise`
//!
//! Medians on the 2-core development machine (AMD EPYC), three runs, 2026-12-01: 71.5 M:
//! parallel 0.30-0.36 s, sequential 0.81-0.86 s (0.46 s parallel before the output was advised
//! onto huge pages: 4 KiB page faults on the fresh 286 MB output cost ~0.14 s). Of the parallel
//! time, ~0.16 s is the ChaCha20 keystream (8 bytes a sample), the rest the ziggurat.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use dp_core::noise::GaussianNoise;
use rand::rngs::SysRng;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, StandardNormal};
use std::hint::black_box;
use std::time::Duration;

/// The sampler before the parallel one: every value from one OS-seeded ChaCha20 stream.
fn sequential(rng: &mut ChaCha20Rng, count: usize, std: f64) -> Vec<f32> {
    (0..count)
        .map(|_| {
            let z: f64 = StandardNormal.sample(rng);
            (z * std) as f32
        })
        .collect()
}

fn noise(c: &mut Criterion) {
    let mut group = c.benchmark_group("gaussian_noise");
    // As few iterations as criterion allows: 10 samples of one call each. The time is that of
    // `sample`: it includes the first touch of the fresh output (page faults), not freeing it,
    // which happens where the caller drops the tensor.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    for count in [1_000_000usize, 71_500_000] {
        let mut fast = GaussianNoise::from_os().expect("OS entropy");
        group.bench_with_input(BenchmarkId::new("parallel", count), &count, |b, &n| {
            b.iter_with_large_drop(|| fast.sample(black_box(n), 1.0).expect("valid std"))
        });
        let mut rng = ChaCha20Rng::try_from_rng(&mut SysRng).expect("OS entropy");
        group.bench_with_input(BenchmarkId::new("sequential", count), &count, |b, &n| {
            b.iter_with_large_drop(|| sequential(&mut rng, black_box(n), 1.0))
        });
    }
    group.finish();
}

criterion_group!(benches, noise);
criterion_main!(benches);
