//! Mahloujifar, Melis & Chaudhuri 2024, "Auditing f-differential privacy in one run"
//! (arXiv 2410.22235), for the Gaussian trade-off curve: the claim under test is that the
//! mechanism is μ-GDP with the μ = 1/σ of the Gaussian mechanism that is exactly (ε, δ)-DP
//! (Balle & Wang 2018), i.e. that no test tells a canary's presence from its absence better
//! than telling N(0, 1) from N(μ, 1).
//!
//! Of m canaries a rule guesses "in" for r and gets v right. At significance τ the paper's
//! recursion ("audit with cap") bounds the fractions of right and wrong guesses a μ-GDP
//! mechanism could produce: start from right = τv/m, wrong = τ(r − v)/m; for i = v − 1 down to
//! 0, raise `wrong` to at least f⁻¹(right), where f⁻¹(x) = Φ(Φ⁻¹(x) − μ) inverts the blow-up
//! of the trade-off curve, and move `right` up by i/(r − i) of the change, capped at 1; stop
//! once `wrong` no longer moves. The claim is rejected when right + wrong > r/m: the guesses
//! were right more often than any μ-GDP mechanism allows but with probability τ.

use crate::pld::gaussian_sigma;
use crate::special::{normal_cdf, normal_quantile};

/// right + wrong − r/m after the recursion, for μ = `mu`: positive rejects the claim.
fn slack(canaries: u64, guesses: u64, correct: u64, significance: f64, mu: f64) -> f64 {
    let m = canaries as f64;
    let mut right = significance * correct as f64 / m;
    let mut wrong = significance * (guesses - correct) as f64 / m;
    for i in (0..correct).rev() {
        let raised = wrong.max(normal_cdf(normal_quantile(right) - mu));
        if raised == wrong {
            break;
        }
        right = (right + i as f64 / (guesses - i) as f64 * (raised - wrong)).min(1.0);
        wrong = raised;
    }
    right + wrong - guesses as f64 / m
}

/// Whether the Gaussian f-DP claim equivalent to (ε, δ)-DP is rejected at `significance`.
pub(crate) fn rejects(
    canaries: u64,
    guesses: u64,
    correct: u64,
    significance: f64,
    delta: f64,
    epsilon: f64,
) -> bool {
    let mu = 1.0 / gaussian_sigma(epsilon, delta);
    slack(canaries, guesses, correct, significance, mu) > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stronger_claim_is_rejected_by_fewer_guesses() {
        // 900 right of 1000 guesses among 2000 canaries: rejected at μ = 0.5, not at μ = 5.
        assert!(slack(2000, 1000, 900, 0.05, 0.5) > 0.0);
        assert!(slack(2000, 1000, 900, 0.05, 5.0) <= 0.0);
    }

    #[test]
    fn chance_level_guesses_reject_nothing() {
        assert!(slack(2000, 1000, 500, 0.05, 0.01) <= 0.0);
    }
}
