//! The audit's lower bounds against jax_privacy's published values.
//!
//! jax_privacy 2.0.0, `tests/auditing_test.py::test_epsilon_one_run_close`: 10,000 in-scores
//! and 10,000 out-scores at the quantiles (i + ½)/n of N(μ, 1) and N(0, 1), significance 0.05,
//! δ = 1e-6, Bonferroni thresholds, rtol 1e-5. The same values come out of jax_privacy's own
//! code (`pip download --no-deps jax-privacy==2.0.0`, `jax_privacy/auditing.py` loaded with
//! dp-accounting 0.6.0, numpy 2.4.6, scipy 1.17.1): `CanaryScoreAuditor(in, out)
//! .epsilon_one_run(0.05, 1e-6)` gave 1.1334595177700586, 2.3119452296146563,
//! 4.395567698033991 and `.epsilon_one_run_fdp(0.05, 1e-6)` 2.164749246983307,
//! 4.721806448645861, 9.133751869736436 for μ = 1, 2, 4, with 386, 374 and 140 hull thresholds.

use dp_accountant::audit::{AuditMethod, CanaryScores, ThresholdChoice};

/// Φ⁻¹(p) by bisection on libm's erfc, to the last bit (independent of the crate's quantile).
fn normal_quantile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-40.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if 0.5 * libm::erfc(-mid / std::f64::consts::SQRT_2) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

fn deterministic_normal(mu: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| normal_quantile((i as f64 + 0.5) / n as f64) + mu)
        .collect()
}

fn bound(shift: f64, method: AuditMethod) -> f64 {
    let scores = CanaryScores::new(
        deterministic_normal(shift, 10_000),
        deterministic_normal(0.0, 10_000),
    )
    .unwrap();
    scores
        .epsilon_lower_bound(method, 0.05, 1e-6, ThresholdChoice::Bonferroni)
        .unwrap()
        .epsilon
}

/// Each case: μ, the published value (rtol 1e-5), jax_privacy's full output (rtol 1e-7: its
/// root search stops at xtol 1e-6); μ = 0 gives 0.
fn reproduces(method: AuditMethod, cases: [(f64, f64, f64); 3]) {
    for (shift, published, full) in cases {
        let got = bound(shift, method);
        for (want, rtol) in [(published, 1e-5), (full, 1e-7)] {
            assert!(
                (got - want).abs() <= rtol * want,
                "{method:?} μ = {shift}: {got} vs {want}"
            );
        }
    }
    assert_eq!(bound(0.0, method), 0.0);
}

#[test]
fn one_run_reproduces_jax_privacy() {
    reproduces(
        AuditMethod::OneRun,
        [
            (1.0, 1.13346, 1.1334595177700586),
            (2.0, 2.311945, 2.3119452296146563),
            (4.0, 4.395568, 4.395567698033991),
        ],
    );
}

#[test]
fn fdp_reproduces_jax_privacy() {
    reproduces(
        AuditMethod::Fdp,
        [
            (1.0, 2.164749, 2.164749246983307),
            (2.0, 4.7218075, 4.721806448645861),
            (4.0, 9.133752, 9.133751869736436),
        ],
    );
}
