//! Criterion benchmarks of accountant queries: a fresh accountant, compose T steps of the
//! Poisson-subsampled Gaussian, ask ε at δ = 1e-5 (the query dp_accounting is timed on in
//! `scripts/accountant-speed.sh`). Run: `cargo bench -p dp-accountant`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use dp_accountant::{calibrate, AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
use std::hint::black_box;

fn epsilon_query(kind: AccountantKind, q: f64, sigma: f64, steps: u64) -> f64 {
    let mut accountant = AccountantConfig::default_for(kind)
        .build(NeighboringRelation::AddOrRemoveOne)
        .expect("default config");
    accountant
        .compose(&DpEvent::poisson_gaussian(q, sigma).self_composed(steps))
        .expect("valid");
    accountant.epsilon(1e-5).expect("finite")
}

fn epsilon(c: &mut Criterion) {
    let mut group = c.benchmark_group("epsilon");
    group.sample_size(20);
    for kind in [AccountantKind::Rdp, AccountantKind::Pld] {
        for steps in [10_000u64, 100_000] {
            group.bench_with_input(BenchmarkId::new(kind.name(), steps), &steps, |b, &t| {
                b.iter(|| epsilon_query(kind, black_box(0.01), black_box(1.0), t))
            });
        }
    }
    group.finish();
}

fn calibration(c: &mut Criterion) {
    let mut group = c.benchmark_group("calibrate");
    group.sample_size(10);
    let config = AccountantConfig::default_for(AccountantKind::Rdp);
    group.bench_function("rdp_cifar10_eps1_875_steps", |b| {
        b.iter(|| {
            calibrate::calibrate_noise_multiplier(
                &config,
                NeighboringRelation::AddOrRemoveOne,
                |s| DpEvent::poisson_gaussian(4096.0 / 50000.0, s).self_composed(875),
                black_box(1.0),
                1e-5,
                calibrate::DEFAULT_RELATIVE_TOLERANCE,
            )
            .expect("reachable")
        })
    });
    group.finish();
}

criterion_group!(benches, epsilon, calibration);
criterion_main!(benches);
