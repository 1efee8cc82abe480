//! Steinke, Nasr & Jagielski 2023, "Privacy auditing with one (1) training run"
//! (arXiv 2305.08846), one-sided: of m canaries, each in the training set with probability
//! ½, a rule guesses "in" for r of them and gets v right. Under (ε, δ)-DP the number right
//! is stochastically dominated by Bin(r, e^ε/(1 + e^ε)) up to a δ term (their Theorem 3.1 and
//! Proposition 5.7): the p-value of v is
//!
//! p(ε) = β + 2mδ · max_{1≤i≤v} P(v − i ≤ W ≤ v − 1)/i,  β = P(W ≥ v),  W ~ Bin(r, e^ε/(1 + e^ε)),
//!
//! capped at 1. The bound is the largest ε whose p-value is below the significance.

use super::binomial::Binomial;

/// The p-value of `correct` right out of `guesses` among `canaries`, under (ε, δ)-DP.
#[cfg(test)]
fn p_value(canaries: u64, guesses: u64, correct: u64, epsilon: f64, delta: f64) -> f64 {
    let w = Binomial::from_log_odds(guesses, epsilon);
    with_delta(w.at_least(correct), &w, canaries, correct, delta)
}

/// β plus the δ term, capped at 1.
fn with_delta(beta: f64, w: &Binomial, canaries: u64, correct: u64, delta: f64) -> f64 {
    if delta == 0.0 {
        return beta;
    }
    (beta + w.max_average_below(correct) * delta * 2.0 * canaries as f64).min(1.0)
}

/// Whether (ε, δ)-DP is rejected at `significance`: β alone is a lower bound on the p-value,
/// so the δ term is computed only where β rejects.
pub(crate) fn rejects(
    canaries: u64,
    guesses: u64,
    correct: u64,
    significance: f64,
    delta: f64,
    epsilon: f64,
) -> bool {
    let w = Binomial::from_log_odds(guesses, epsilon);
    let beta = w.at_least(correct);
    beta < significance && with_delta(beta, &w, canaries, correct, delta) < significance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_value_of_all_guesses_right_without_delta_is_q_to_the_r() {
        // P(W ≥ r) = qʳ.
        let q: f64 = 1.0 / (1.0 + (-0.5f64).exp());
        let p = p_value(100, 20, 20, 0.5, 0.0);
        approx::assert_relative_eq!(p, q.powi(20), max_relative = 1e-12);
    }

    #[test]
    fn delta_only_raises_the_p_value_and_caps_it_at_one() {
        let base = p_value(1000, 100, 70, 0.5, 0.0);
        let with = p_value(1000, 100, 70, 0.5, 1e-4);
        assert!(with > base);
        assert_eq!(p_value(1000, 100, 70, 0.5, 1.0), 1.0);
    }

    #[test]
    fn the_delta_term_is_the_best_average_of_the_terms_just_below() {
        // Steinke et al.'s formula written out term by term for r = 3, v = 2, ε = 0:
        // W ~ Bin(3, ½): P(W=0..3) = 1/8, 3/8, 3/8, 1/8. β = P(W ≥ 2) = ½.
        // Averages below 2: i = 1: P(W=1) = 3/8; i = 2: (3/8 + 1/8)/2 = 1/4. Max 3/8.
        let p = p_value(10, 3, 2, 0.0, 0.01);
        approx::assert_relative_eq!(p, 0.5 + 0.375 * 0.01 * 2.0 * 10.0, max_relative = 1e-12);
    }
}
