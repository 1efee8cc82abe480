//! Privacy auditing: *lower* bounds on ε from canaries, with a stated significance, the
//! counterpart of the accountants' upper bounds.
//!
//! Put m canaries in the training set, each with probability ½ by a generator independent of
//! training; after the run, score every canary from what the run released (higher: more
//! likely in) and hand the scores of the canaries that were in and of those that were out to
//! [`CanaryScores`]. A rule guesses "in" for the canaries scoring at least a threshold; if its
//! guesses are right more often than (ε, δ)-DP allows but with probability `significance`,
//! the run was not (ε, δ)-DP, and [`CanaryScores::epsilon_lower_bound`] reports the largest
//! such ε. A lower bound above the ε an accountant reported means the accountant, or the code
//! it describes, is wrong (with probability at least 1 − `significance`).
//!
//! Two methods ([`AuditMethod`]): Steinke, Nasr & Jagielski 2023 (one run, (ε, δ)) and
//! Mahloujifar, Melis & Chaudhuri 2024 (one run, Gaussian f-DP; tighter). Both reproduce
//! jax_privacy 2.0's `CanaryScoreAuditor` (see the crate's `tests/audit_bounds.rs`).
//!
//! The guarantees assume what the papers assume: each canary was put in independently with
//! probability ½ (a split of in and out far from m/2 is a warning sign), and the threshold is
//! either fixed in advance or chosen with [`ThresholdChoice::Bonferroni`], whose correction
//! counts the hull's vertices as jax_privacy does (the vertices depend on the scores, so this
//! is the field's convention rather than a union bound over every possible threshold).
//!
//! ```
//! use dp_accountant::audit::{AuditMethod, CanaryScores, ThresholdChoice};
//! // 5,000 canaries that were out scored evenly in [0, 1); the 5,000 that were in scored 0.5
//! // higher (a strong signal: a guess "in" above 1 is always right).
//! let out: Vec<f64> = (0..5000).map(|i| i as f64 / 5000.0).collect();
//! let held_in: Vec<f64> = out.iter().map(|s| s + 0.5).collect();
//! let scores = CanaryScores::new(held_in, out)?;
//! let bound = scores.epsilon_lower_bound(AuditMethod::Fdp, 0.05, 1e-5, ThresholdChoice::Bonferroni)?;
//! assert!(bound.epsilon > 1.0, "{bound:?}");
//! # Ok::<(), dp_accountant::AccountantError>(())
//! ```

mod binomial;
mod fdp;
mod one_run;
mod roc;

use crate::error::{AccountantError, Result};
use roc::Rule;
use serde::{Deserialize, Serialize};

/// How scores become a bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditMethod {
    /// Steinke, Nasr & Jagielski 2023 (arXiv 2305.08846): (ε, δ)-DP, one-sided guesses.
    OneRun,
    /// Mahloujifar, Melis & Chaudhuri 2024 (arXiv 2410.22235): the Gaussian trade-off curve
    /// of the Gaussian mechanism that is exactly (ε, δ)-DP. Tighter, and a claim about the
    /// curve's shape as well: a mechanism that is (ε, δ)-DP but far from Gaussian can exceed
    /// it. DP-SGD's subsampled Gaussian compositions are close to Gaussian.
    Fdp,
}

impl AuditMethod {
    /// The name used on command lines and in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::OneRun => "one-run",
            Self::Fdp => "fdp",
        }
    }
}

impl std::str::FromStr for AuditMethod {
    type Err = AccountantError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "one-run" => Ok(Self::OneRun),
            "fdp" => Ok(Self::Fdp),
            _ => Err(AccountantError::invalid(
                "method",
                "name",
                s,
                "one of one-run, fdp",
            )),
        }
    }
}

/// Which threshold rule the bound is taken from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdChoice {
    /// The best of the rules at the vertices of the ROC curve's concave hull, each tested at
    /// `significance / (number of vertices)` (jax_privacy's default).
    Bonferroni,
    /// A threshold fixed before the scores were seen, tested at `significance`.
    Fixed(f64),
}

/// A lower bound and the rule it came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LowerBound {
    /// The largest ε at which (ε, δ)-DP (or its Gaussian curve) is rejected; 0 if none is.
    pub epsilon: f64,
    /// The rule's threshold (+∞ when no rule rejected anything).
    pub threshold: f64,
    /// Canaries the rule guessed "in".
    pub guesses: u64,
    /// Of them, canaries that were in.
    pub correct: u64,
    /// The significance each rule was tested at (after the Bonferroni correction).
    pub rule_significance: f64,
}

/// Scores of the canaries that were in the training set and of those that were out.
#[derive(Clone, Debug)]
pub struct CanaryScores {
    in_scores: Vec<f64>,
    out_scores: Vec<f64>,
}

/// Largest ε at which `rejects` holds, given that it holds at `lo` or `lo` is returned; found
/// by doubling, then bisection to a relative 1e-10 (at most 200 halvings), and returned from
/// the rejected side. Past ε = 10⁴ the search stops at the last doubling that rejected.
fn largest_rejected(lo: f64, rejects: impl Fn(f64) -> bool) -> f64 {
    const CAP: f64 = 1e4;
    if !rejects(lo) {
        return lo;
    }
    let mut lo = lo;
    let mut hi = (2.0 * lo).max(1.0);
    while rejects(hi) {
        lo = hi;
        hi *= 2.0;
        if hi > CAP {
            return lo;
        }
    }
    for _ in 0..200 {
        if hi - lo <= 1e-10 * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if rejects(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

impl CanaryScores {
    /// Scores of held-in and held-out canaries (higher: more likely in). Both sets must be
    /// non-empty and every score finite.
    pub fn new(in_scores: Vec<f64>, out_scores: Vec<f64>) -> Result<Self> {
        for (name, set) in [("in_scores", &in_scores), ("out_scores", &out_scores)] {
            if set.is_empty() {
                return Err(AccountantError::invalid(name, "scores", "[]", "non-empty"));
            }
            if let Some(bad) = set.iter().find(|s| !s.is_finite()) {
                return Err(AccountantError::invalid(name, "score", bad, "finite"));
            }
        }
        Ok(Self {
            in_scores,
            out_scores,
        })
    }

    /// Canaries in all (m).
    pub fn canaries(&self) -> u64 {
        (self.in_scores.len() + self.out_scores.len()) as u64
    }

    /// The largest ε for which the scores reject (ε, δ)-DP at `significance` (in (0, 1)),
    /// `delta` in (0, 1).
    pub fn epsilon_lower_bound(
        &self,
        method: AuditMethod,
        significance: f64,
        delta: f64,
        threshold: ThresholdChoice,
    ) -> Result<LowerBound> {
        if !(significance > 0.0 && significance < 1.0) {
            return Err(AccountantError::invalid(
                "significance",
                "α",
                significance,
                "in (0, 1)",
            ));
        }
        crate::error::check_delta(delta)?;
        let (rules, rule_significance) = match threshold {
            ThresholdChoice::Bonferroni => {
                let rules = roc::hull_rules(&self.in_scores, &self.out_scores);
                let alpha = significance / rules.len() as f64;
                (rules, alpha)
            }
            ThresholdChoice::Fixed(t) => {
                if t.is_nan() {
                    return Err(AccountantError::invalid("threshold", "t", t, "not NaN"));
                }
                (
                    vec![roc::fixed_rule(&self.in_scores, &self.out_scores, t)],
                    significance,
                )
            }
        };
        let m = self.canaries();
        let test = match method {
            AuditMethod::OneRun => one_run::rejects,
            AuditMethod::Fdp => fdp::rejects,
        };
        // Most precise rules first, so that later ones mostly fail the one test at the best
        // ε so far (the rejection is monotone in ε). Rules no better than chance reject
        // nothing (as in jax_privacy, they are not tried).
        let mut candidates: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.guesses > 0 && 2 * r.correct > r.guesses)
            .collect();
        candidates.sort_by(|a, b| {
            let (pa, pb) = (
                a.correct as f64 / a.guesses as f64,
                b.correct as f64 / b.guesses as f64,
            );
            pb.total_cmp(&pa)
        });
        let mut best = LowerBound {
            epsilon: 0.0,
            threshold: f64::INFINITY,
            guesses: 0,
            correct: 0,
            rule_significance,
        };
        for rule in candidates {
            let at = |epsilon| {
                test(
                    m,
                    rule.guesses,
                    rule.correct,
                    rule_significance,
                    delta,
                    epsilon,
                )
            };
            if !at(best.epsilon) {
                continue;
            }
            let epsilon = largest_rejected(best.epsilon, at);
            if epsilon > best.epsilon || best.guesses == 0 {
                best = LowerBound {
                    epsilon,
                    threshold: rule.threshold,
                    guesses: rule.guesses,
                    correct: rule.correct,
                    rule_significance,
                };
            }
        }
        Ok(best)
    }
}
