//! Times the accountant queries of `../shared/peers/accountant_speed.py` (dp_accounting 0.6)
//! with the same protocol: a fresh accountant, compose, ε at δ; median over `--reps` runs.
//! Prints one JSON line per (accountant, query), in the peer's format.
//!
//! `cargo run --release -p dp-accountant --example accountant_speed -- --reps 5`
//! (`scripts/accountant-speed.sh` runs both and prints the ratios.)

use dp_accountant::{AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
use std::time::Instant;

const QUERIES: [(f64, f64, u64, f64); 4] = [
    (0.01, 1.0, 10_000, 1e-5),
    (0.01, 1.0, 100_000, 1e-5),
    (4096.0 / 50_000.0, 3.0, 2_500, 1e-5),
    (2048.0 / 60_000.0, 1.92868, 1_172, 1e-5),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<usize>())
        .transpose()?
        .unwrap_or(5)
        .max(1);
    for kind in [AccountantKind::Rdp, AccountantKind::Pld] {
        for (q, sigma, steps, delta) in QUERIES {
            let mut times = Vec::with_capacity(reps);
            let mut epsilon = f64::NAN;
            for _ in 0..reps {
                let start = Instant::now();
                let mut accountant = AccountantConfig::default_for(kind)
                    .build(NeighboringRelation::AddOrRemoveOne)?;
                accountant.compose(&DpEvent::poisson_gaussian(q, sigma).self_composed(steps))?;
                epsilon = accountant.epsilon(delta)?;
                times.push(start.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            let line = serde_json::json!({
                "library": "dp-accountant", "accountant": kind.name(), "q": q, "sigma": sigma,
                "steps": steps, "delta": delta, "epsilon": epsilon,
                "median_s": times[times.len() / 2], "min_s": times[0], "reps": reps,
            });
            println!("{line}");
        }
    }
    Ok(())
}
