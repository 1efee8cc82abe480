//! What accounting costs a training run: T steps charged one at a time through
//! [`DpOptimizer::begin_step`] with a budget (the check before every step), then one ε query
//! after them (what every evaluation asks), for the RDP and PLD accountants.
//!
//! `cargo run --release -p dp-core --example accounting_cost -- [--steps 10000,100000]`
//!
//! The run is Fashion-MNIST's preset: q = 2048/60000, σ = 1.8083 (the PLD calibration of 1,172
//! steps at ε = 3); the budget is ε of all T steps by the same accountant, so every step is
//! checked and the last one fits exactly. Prints one JSON line per (accountant, T).

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use dp_accountant::{AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{Budget, DpOptimizer, DpSgdConfig};
use std::time::Instant;

type TB = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Tiny<B: Backend> {
    fc: Linear<B>,
}

const SAMPLING_RATE: f64 = 2048.0 / 60_000.0;
const NOISE_MULTIPLIER: f64 = 1.8083;
const DELTA: f64 = 1e-5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let steps: Vec<u64> = match args.iter().position(|a| a == "--steps") {
        Some(i) => args
            .get(i + 1)
            .ok_or("--steps needs a value")?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        None => vec![10_000, 100_000],
    };
    for kind in [AccountantKind::Rdp, AccountantKind::Pld] {
        for &t in &steps {
            measure(kind, t)?;
        }
    }
    Ok(())
}

fn measure(kind: AccountantKind, steps: u64) -> Result<(), Box<dyn std::error::Error>> {
    let config = AccountantConfig::default_for(kind);
    let relation = NeighboringRelation::AddOrRemoveOne;
    let event = DpEvent::poisson_gaussian(SAMPLING_RATE, NOISE_MULTIPLIER);
    let mut whole = config.build(relation)?;
    whole.compose(&event.clone().self_composed(steps))?;
    let budget = whole.epsilon(DELTA)?;

    let model = Tiny {
        fc: LinearConfig::new(4, 2).init::<TB>(&Default::default())?,
    };
    let mut dp = DpSgdConfig::new(NOISE_MULTIPLIER, 1.0);
    dp.budget = Some(Budget {
        epsilon: budget,
        delta: DELTA,
    });
    let inner = SgdConfig::new().init::<TB, Tiny<TB>>();
    let mut optimizer = DpOptimizer::new(&model, inner, dp, config.build(relation)?)?;
    // One batch serves every step: the charge depends on its sampling, not on its indices.
    let batch = PoissonSampler::new(60_000, SAMPLING_RATE)?.next_batch();
    let started = Instant::now();
    for _ in 0..steps {
        drop(optimizer.begin_step(&batch)?);
    }
    let charge_s = started.elapsed().as_secs_f64();
    let refused = optimizer.begin_step(&batch).is_err();
    let started = Instant::now();
    let epsilon = optimizer.epsilon(DELTA)?;
    let query_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "accountant": kind.name(),
            "steps": steps,
            "sampling_rate": SAMPLING_RATE,
            "noise_multiplier": NOISE_MULTIPLIER,
            "epsilon": epsilon,
            "budget": budget,
            "next_step_refused": refused,
            "charge_all_s": charge_s,
            "charge_per_step_us": charge_s / steps as f64 * 1e6,
            "epsilon_query_ms": query_ms,
        })
    );
    Ok(())
}
