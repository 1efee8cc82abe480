//! Validates the flags, runs the query, formats the answer.

use crate::args::{AccountantArg, Command, Common, RelationArg};
use crate::format::{human, json_real};
use dp_accountant::{
    calibrate, AccountantConfig, AccountantError, AccountantKind, DpEvent, NeighboringRelation,
    PrivacyAccountant, RdpAccountant,
};
use serde_json::json;

/// Why a query failed: bad input (exit 2) or anything else (exit 1).
pub enum Failure {
    Input(String),
    Internal(String),
}

type Outcome<T> = Result<T, Failure>;

fn input(message: impl Into<String>) -> Failure {
    Failure::Input(message.into())
}

fn from_library(err: AccountantError) -> Failure {
    match err {
        AccountantError::Numerical(m) => Failure::Internal(m),
        AccountantError::GridTooLarge { needed, limit } => input(format!(
            "--accountant pld would need {needed} privacy loss grid points, more than its limit \
             of {limit}: use a larger --noise-multiplier, or --accountant rdp"
        )),
        other => Failure::Input(other.to_string()),
    }
}

/// The validated flags every subcommand shares.
struct Setting {
    sampling_rate: f64,
    kind: AccountantKind,
    relation: NeighboringRelation,
    json: bool,
}

impl Setting {
    fn from(common: &Common) -> Outcome<Self> {
        let sampling_rate = match (common.sampling_rate, common.dataset_size, common.batch_size) {
            (Some(q), _, _) => {
                if !(q > 0.0 && q <= 1.0) {
                    return Err(input(format!(
                        "--sampling-rate (q = {}) must be in (0, 1]",
                        human(q)
                    )));
                }
                q
            }
            (None, Some(n), Some(b)) => {
                if n == 0 {
                    return Err(input("--dataset-size (N = 0) must be >= 1"));
                }
                if b == 0 || b > n {
                    return Err(input(format!(
                        "--batch-size (B = {b}) must be in [1, --dataset-size = {n}]"
                    )));
                }
                b as f64 / n as f64
            }
            _ => {
                return Err(input(
                    "one of --sampling-rate or --dataset-size with --batch-size is required",
                ))
            }
        };
        let kind = match common.accountant {
            AccountantArg::Rdp => AccountantKind::Rdp,
            AccountantArg::Pld => AccountantKind::Pld,
        };
        let relation = match common.neighboring_relation {
            RelationArg::AddOrRemoveOne => NeighboringRelation::AddOrRemoveOne,
            RelationArg::ReplaceOne => NeighboringRelation::ReplaceOne,
        };
        Ok(Self {
            sampling_rate,
            kind,
            relation,
            json: common.json,
        })
    }

    fn config(&self) -> AccountantConfig {
        AccountantConfig::default_for(self.kind)
    }

    fn run_for(&self, sigma: f64, steps: u64) -> DpEvent {
        DpEvent::poisson_gaussian(self.sampling_rate, sigma).self_composed(steps)
    }

    fn describe(&self, sigma: Option<f64>, steps: Option<u64>) -> String {
        let mut parts = vec![format!("sampling_rate = {}", human(self.sampling_rate))];
        if let Some(s) = sigma {
            parts.push(format!("noise_multiplier = {}", human(s)));
        }
        if let Some(t) = steps {
            parts.push(format!("steps = {t}"));
        }
        parts.push(format!("accountant = {}", self.kind));
        parts.push(format!("neighbours: {}", self.relation));
        parts.join(", ")
    }
}

/// σ must be in [`calibrate::NOISE_MULTIPLIER_RANGE`]: outside it the accountants' numerics
/// are not validated, and no training run uses such a σ.
fn check_sigma(sigma: f64) -> Outcome<()> {
    let (lo, hi) = calibrate::NOISE_MULTIPLIER_RANGE;
    if (lo..=hi).contains(&sigma) {
        Ok(())
    } else {
        Err(input(format!(
            "--noise-multiplier (σ = {}) must be in [{}, {}]",
            human(sigma),
            human(lo),
            human(hi)
        )))
    }
}

fn check_steps(steps: u64) -> Outcome<()> {
    if steps >= 1 {
        Ok(())
    } else {
        Err(input("--steps (T = 0) must be >= 1"))
    }
}

fn check_delta(delta: f64) -> Outcome<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(input(format!(
            "--delta (δ = {}) must be in (0, 1)",
            human(delta)
        )))
    }
}

fn check_epsilon(epsilon: f64, strictly_positive: bool) -> Outcome<()> {
    let ok = epsilon.is_finite() && (epsilon > 0.0 || (!strictly_positive && epsilon == 0.0));
    if ok {
        Ok(())
    } else {
        let bound = if strictly_positive { "> 0" } else { ">= 0" };
        Err(input(format!(
            "--epsilon (ε = {}) must be {bound} and finite",
            human(epsilon)
        )))
    }
}

/// Runs one subcommand and returns what to print.
pub fn run(command: Command) -> Outcome<String> {
    match command {
        Command::Epsilon {
            common,
            noise_multiplier,
            steps,
            delta,
        } => {
            let s = Setting::from(&common)?;
            check_sigma(noise_multiplier)?;
            check_steps(steps)?;
            check_delta(delta)?;
            epsilon(&s, noise_multiplier, steps, delta)
        }
        Command::Delta {
            common,
            noise_multiplier,
            steps,
            epsilon,
        } => {
            let s = Setting::from(&common)?;
            check_sigma(noise_multiplier)?;
            check_steps(steps)?;
            check_epsilon(epsilon, false)?;
            let mut accountant = s.config().build(s.relation).map_err(from_library)?;
            accountant
                .compose(&s.run_for(noise_multiplier, steps))
                .map_err(from_library)?;
            let delta = accountant.delta(epsilon).map_err(from_library)?;
            Ok(if s.json {
                json!({"delta": json_real(delta), "epsilon": json_real(epsilon),
                       "accountant": s.kind.name()})
                .to_string()
            } else {
                format!(
                    "δ = {} at ε = {}\n  {}",
                    human(delta),
                    human(epsilon),
                    s.describe(Some(noise_multiplier), Some(steps))
                )
            })
        }
        Command::Noise {
            common,
            steps,
            epsilon,
            delta,
        } => {
            let s = Setting::from(&common)?;
            check_steps(steps)?;
            check_epsilon(epsilon, true)?;
            check_delta(delta)?;
            let sigma = calibrate::calibrate_noise_multiplier(
                &s.config(),
                s.relation,
                |sigma| s.run_for(sigma, steps),
                epsilon,
                delta,
                calibrate::DEFAULT_RELATIVE_TOLERANCE,
            )
            .map_err(from_library)?;
            Ok(if s.json {
                json!({"noise_multiplier": json_real(sigma), "epsilon": json_real(epsilon),
                       "delta": json_real(delta), "accountant": s.kind.name()})
                .to_string()
            } else {
                format!(
                    "noise_multiplier σ = {} reaches ε ≤ {} at δ = {}\n  {}",
                    human(sigma),
                    human(epsilon),
                    human(delta),
                    s.describe(None, Some(steps))
                )
            })
        }
        Command::Steps {
            common,
            noise_multiplier,
            epsilon,
            delta,
            max_steps,
        } => {
            let s = Setting::from(&common)?;
            check_sigma(noise_multiplier)?;
            check_epsilon(epsilon, false)?;
            check_delta(delta)?;
            check_steps(max_steps).map_err(|_| input("--max-steps (0) must be >= 1"))?;
            steps_within(&s, noise_multiplier, epsilon, delta, max_steps)
        }
    }
}

/// The `steps` answer: the largest count within budget, or the cap if the budget allows more.
fn steps_within(s: &Setting, sigma: f64, epsilon: f64, delta: f64, cap: u64) -> Outcome<String> {
    let step = DpEvent::poisson_gaussian(s.sampling_rate, sigma);
    let config = s.config();
    let steps = calibrate::max_steps(&config, s.relation, &step, epsilon, delta, cap)
        .map_err(from_library)?;
    // `max_steps` stops at the cap: whether the budget allows more is one more evaluation.
    let capped = steps == cap
        && match cap.checked_add(1) {
            None => true,
            Some(more) => {
                let mut accountant = config.build(s.relation).map_err(from_library)?;
                accountant
                    .compose(&step.self_composed(more))
                    .map_err(from_library)?;
                accountant.epsilon(delta).map_err(from_library)? <= epsilon
            }
        };
    Ok(if s.json {
        json!({"steps": steps, "capped": capped, "epsilon": json_real(epsilon),
               "delta": json_real(delta), "accountant": s.kind.name()})
        .to_string()
    } else {
        let (answer, more) = if capped {
            (
                format!("at least {steps} (the --max-steps cap)"),
                ": the budget allows more",
            )
        } else {
            (steps.to_string(), "")
        };
        format!(
            "steps T = {answer} stay within ε = {} at δ = {}{more}\n  {}",
            human(epsilon),
            human(delta),
            s.describe(Some(sigma), None)
        )
    })
}

fn epsilon(s: &Setting, sigma: f64, steps: u64, delta: f64) -> Outcome<String> {
    let event = s.run_for(sigma, steps);
    let (epsilon, order) = match s.kind {
        AccountantKind::Rdp => {
            let config = match s.config() {
                AccountantConfig::Rdp(c) => c,
                AccountantConfig::Pld(_) => unreachable!("rdp kind gives an rdp config"),
            };
            let mut accountant =
                RdpAccountant::from_config(config, s.relation).map_err(from_library)?;
            accountant.compose(&event).map_err(from_library)?;
            let spent = accountant.epsilon_and_order(delta).map_err(from_library)?;
            (spent.epsilon, Some(spent.order))
        }
        AccountantKind::Pld => {
            let mut accountant = s.config().build(s.relation).map_err(from_library)?;
            accountant.compose(&event).map_err(from_library)?;
            (accountant.epsilon(delta).map_err(from_library)?, None)
        }
    };
    let unbounded = epsilon.is_infinite();
    Ok(if s.json {
        let mut out = json!({"epsilon": json_real(epsilon), "unbounded": unbounded,
                             "delta": json_real(delta), "accountant": s.kind.name()});
        if let Some(order) = order {
            out["order"] = json_real(order);
        }
        out.to_string()
    } else {
        let order = order
            .filter(|_| !unbounded)
            .map(|a| format!(", optimal RDP order α = {}", human(a)))
            .unwrap_or_default();
        let note = match (unbounded, s.kind) {
            (false, _) => "",
            (true, AccountantKind::Rdp) => {
                " (unbounded: the rdp accountant proves no finite ε at this δ)"
            }
            (true, AccountantKind::Pld) => {
                " (unbounded: the pld accountant proves no finite ε at this δ, below its \
                 truncated tail mass; --accountant rdp may)"
            }
        };
        format!(
            "ε = {} at δ = {}{order}{note}\n  {}",
            human(epsilon),
            human(delta),
            s.describe(Some(sigma), Some(steps))
        )
    })
}
