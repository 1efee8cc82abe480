//! Binomial tail sums for the one-run audit, in log space.
//!
//! A binomial distribution is log-concave, so away from its mode the terms fall faster than
//! geometrically: a sum that walks away from the mode stops once a term is below
//! [`NEGLIGIBLE`] of the running sum, which bounds what it leaves out by a few multiples of
//! that fraction.

use crate::special::{ln_factorial, log_add};

/// Relative size of a term at which a walk away from the mode stops.
const NEGLIGIBLE: f64 = 1e-20;

/// Bin(n, q) with q = logistic(ε), given by its log-odds ε (no cancellation in 1 − q).
pub(crate) struct Binomial {
    n: u64,
    ln_q: f64,
    ln_1mq: f64,
    log_odds: f64,
    mode: u64,
}

/// ln(1 + eˣ) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

impl Binomial {
    /// Bin(n, q) with ln(q / (1 − q)) = `log_odds` (finite).
    pub(crate) fn from_log_odds(n: u64, log_odds: f64) -> Self {
        let q = 1.0 / (1.0 + (-log_odds).exp());
        Self {
            n,
            ln_q: -softplus(-log_odds),
            ln_1mq: -softplus(log_odds),
            log_odds,
            mode: (((n + 1) as f64 * q).floor() as u64).min(n),
        }
    }

    /// ln P(X = k) for k ≤ n.
    fn ln_pmf(&self, k: u64) -> f64 {
        ln_factorial(self.n) - ln_factorial(k) - ln_factorial(self.n - k)
            + k as f64 * self.ln_q
            + (self.n - k) as f64 * self.ln_1mq
    }

    /// ln P(X = k + 1) − ln P(X = k), for k < n.
    fn ln_ratio_up(&self, k: u64) -> f64 {
        ((self.n - k) as f64).ln() - ((k + 1) as f64).ln() + self.log_odds
    }

    /// P(X ≥ k).
    pub(crate) fn at_least(&self, k: u64) -> f64 {
        if k == 0 {
            return 1.0;
        }
        if k > self.n {
            return 0.0;
        }
        if k > self.mode {
            // Terms fall from k upward.
            let mut term = 0.0f64;
            let mut sum_rel = 1.0;
            for j in k..self.n {
                term += self.ln_ratio_up(j);
                let t = term.exp();
                sum_rel += t;
                if t < NEGLIGIBLE * sum_rel {
                    break;
                }
            }
            (self.ln_pmf(k) + sum_rel.ln()).exp().min(1.0)
        } else {
            // P(X ≤ k − 1): terms fall from k − 1 downward.
            (1.0 - self.at_most_below_mode(k - 1)).max(0.0)
        }
    }

    /// P(X ≤ j) for j < mode, walking down from j.
    fn at_most_below_mode(&self, j: u64) -> f64 {
        let mut term = 0.0f64;
        let mut sum_rel = 1.0;
        let mut i = j;
        while i > 0 {
            term -= self.ln_ratio_up(i - 1);
            let t = term.exp();
            sum_rel += t;
            if t < NEGLIGIBLE * sum_rel {
                break;
            }
            i -= 1;
        }
        (self.ln_pmf(j) + sum_rel.ln()).exp().min(1.0)
    }

    /// max over i = 1..=k of P(k − i ≤ X ≤ k − 1) / i: the largest average of the i terms just
    /// below k (Steinke et al.'s δ term).
    pub(crate) fn max_average_below(&self, k: u64) -> f64 {
        if k == 0 || self.n == 0 {
            return 0.0;
        }
        let k = k.min(self.n + 1);
        let mut ln_term = self.ln_pmf(k - 1);
        let mut ln_cum = f64::NEG_INFINITY;
        let mut best = f64::NEG_INFINITY;
        let mut j = k - 1;
        loop {
            ln_cum = log_add(ln_cum, ln_term);
            let i = (k - j) as f64;
            best = best.max(ln_cum - i.ln());
            // Below the mode the terms only fall: once they no longer move the sum, the
            // averages only fall too.
            if j == 0 || (j < self.mode && ln_term < ln_cum + NEGLIGIBLE.ln()) {
                break;
            }
            ln_term -= self.ln_ratio_up(j - 1);
            j -= 1;
        }
        best.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    /// Every term from libm's lgamma and plain logarithms, as the oracle (sums of all terms
    /// carry rounding of about n ulp, hence the tolerance 1e-10 below).
    fn naive(n: u64, log_odds: f64) -> Vec<f64> {
        let q = 1.0 / (1.0 + (-log_odds).exp());
        let lg = |x: u64| libm::lgamma(x as f64 + 1.0);
        (0..=n)
            .map(|k| {
                (lg(n) - lg(k) - lg(n - k) + k as f64 * q.ln() + (n - k) as f64 * (1.0 - q).ln())
                    .exp()
            })
            .collect()
    }

    #[test]
    fn tails_match_the_sum_of_all_terms() {
        for (n, eps) in [(1u64, 0.3), (10, 0.0), (37, 1.2), (500, 0.7), (3000, 2.5)] {
            let pmf = naive(n, eps);
            let b = Binomial::from_log_odds(n, eps);
            for k in [0, 1, n / 3, n / 2, (n * 2) / 3, (n * 9) / 10, n, n + 1] {
                let want: f64 = pmf.iter().skip(k as usize).sum();
                let got = b.at_least(k);
                assert!(
                    (got - want).abs() <= 1e-10 * want + 1e-300,
                    "P(X >= {k}) of Bin({n}, eps {eps}): {got} vs {want}"
                );
                let avg = (1..=k.min(n + 1))
                    .map(|i| pmf[(k - i) as usize..k as usize].iter().sum::<f64>() / i as f64)
                    .fold(0.0, f64::max);
                let got = b.max_average_below(k);
                assert!(
                    (got - avg).abs() <= 1e-10 * avg,
                    "average below {k} of Bin({n}, eps {eps}): {got} vs {avg}"
                );
            }
        }
    }

    #[test]
    fn far_tails_stay_accurate_in_relative_terms() {
        // P(X ≥ n) = qⁿ exactly.
        let b = Binomial::from_log_odds(2000, 1.0);
        let q: f64 = 1.0 / (1.0 + (-1.0f64).exp());
        assert_relative_eq!(b.at_least(2000), q.powi(2000), max_relative = 1e-10);
    }
}
