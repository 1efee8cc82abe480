//! Rényi DP of the Gaussian mechanism on a uniformly random fixed-size subset
//! (sampling without replacement), under replace-one neighbours.
//!
//! Wang, Balle, Kasiviswanathan 2019, "Subsampled Rényi Differential Privacy and Analytical
//! Moments Accountant", Theorem 27 (the Gaussian case of their Theorem 9): with sampling
//! ratio γ = m/N, g(k) = e^{k(k−1)/(2σ²)} and Δⁿ the n-th forward difference,
//!
//! A_α ≤ 1 + γ²C(α,2)·min{4(e^{1/σ²} − 1), 2e^{1/σ²}}
//!         + Σ_{j=3}^{α} γʲ C(α,j)·min{4·√(Δ^{2⌊j/2⌋}g(0)·Δ^{2⌈j/2⌉}g(0)), 2g(j)}
//!
//! for integer α, and ε(α) = log A_α/(α − 1). Fractional orders interpolate the cumulant
//! (α − 1)ε(α) linearly between ⌊α⌋ and ⌈α⌉, which bounds it from above by convexity
//! (their Corollary 10).
//!
//! The forward differences of g alternate wildly in sign when expanded as binomial sums, so
//! we compute them as moments instead: g(k) = E[λᵏ] with λ = e^{Z/σ − 1/(2σ²)}, Z ∼ N(0, 1),
//! hence Δⁿg(0) = E[(λ − 1)ⁿ], a positive integral for even n, evaluated in log space by the
//! trapezoidal rule (spectrally accurate for this smooth, fast-decaying integrand; we inflate
//! the result by 1e-9 relative to cover its error). Above order 256 only the 2g(j) terms are
//! used, as in dp_accounting.

use crate::conservative::{div_up, inflate};
use crate::special::{ln_binomial, log_add, log_expm1};
use std::f64::consts::{LN_2, PI};

/// Highest order at which the forward-difference terms are used.
const MAX_DIFFERENCE_ORDER: u64 = 256;
/// Trapezoid step in z.
const STEP: f64 = 0.05;

/// Per-σ precomputation: log Δⁿg(0) for even n.
#[derive(Clone, Debug)]
pub(crate) struct WithoutReplacementGaussian {
    sigma: f64,
    gamma: f64,
    /// `log_even_differences[k]` = log Δ^{2k} g(0), inflated to an upper bound.
    log_even_differences: Vec<f64>,
}

impl WithoutReplacementGaussian {
    /// Prepares the bound for sampling ratio γ = m/N < 1 and noise multiplier σ, for orders up
    /// to `max_order`.
    pub(crate) fn new(gamma: f64, sigma: f64, max_order: f64) -> Self {
        let highest = (max_order.ceil() as u64).min(MAX_DIFFERENCE_ORDER) + 1;
        let log_even_differences = (0..=highest.div_ceil(2))
            .map(|k| log_moment(sigma, 2 * k))
            .collect();
        Self {
            sigma,
            gamma,
            log_even_differences,
        }
    }

    /// Upper bound on the order-α RDP.
    pub(crate) fn rdp(&self, alpha: f64) -> f64 {
        if alpha.fract() == 0.0 {
            return div_up(self.log_a(alpha as u64), alpha - 1.0);
        }
        let (lo, hi) = (alpha.floor() as u64, alpha.ceil() as u64);
        let t = alpha - lo as f64;
        let cumulant = (1.0 - t) * self.log_a(lo) + t * self.log_a(hi);
        div_up(inflate(cumulant, cumulant, 4.0), alpha - 1.0)
    }

    /// Upper bound on log A_α for integer α (log A₁ = 0).
    fn log_a(&self, alpha: u64) -> f64 {
        if alpha <= 1 {
            return 0.0;
        }
        let af = alpha as f64;
        let lg = self.gamma.ln();
        let eps2 = 1.0 / (self.sigma * self.sigma);
        let second = (LN_2 * 2.0 + log_expm1(eps2)).min(eps2 + LN_2);
        let mut log_a = log_add(0.0, 2.0 * lg + ln_binomial(af, 2.0).0 + second);
        for j in 3..=alpha {
            let jf = j as f64;
            let cap = LN_2 + jf * (jf - 1.0) / (2.0 * self.sigma * self.sigma);
            let bound = if alpha <= MAX_DIFFERENCE_ORDER {
                let lo = self.log_even_differences[(j / 2) as usize];
                let hi = self.log_even_differences[j.div_ceil(2) as usize];
                (2.0 * LN_2 + 0.5 * (lo + hi)).min(cap)
            } else {
                cap
            };
            log_a = log_add(log_a, jf * lg + ln_binomial(af, jf).0 + bound);
        }
        // Rounding: α terms, each exponent a sum of O(α²/σ²) parts.
        let magnitude = 1.0 + af * af / (self.sigma * self.sigma);
        inflate(log_a, magnitude + af, 16.0)
    }
}

/// log E[(e^{Z/σ − 1/(2σ²)} − 1)ⁿ] for even n, Z ∼ N(0, 1), by the trapezoidal rule in log
/// space; inflated by 1e-9 relative.
fn log_moment(sigma: f64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let c = 1.0 / (2.0 * sigma * sigma);
    // The integrand peaks near z = n/σ (where n·u ≈ n z/σ meets −z²/2) and near z ≈ 0.
    let (lo, hi) = (-40.0, (nf / sigma).max(0.0) + 40.0);
    let steps = ((hi - lo) / STEP).ceil() as usize;
    let log_f = |z: f64| {
        let u = z / sigma - c;
        let log_abs = if u > 0.0 {
            log_expm1(u)
        } else {
            (-u.exp_m1()).ln()
        };
        nf * log_abs - 0.5 * z * z
    };
    let mut max = f64::NEG_INFINITY;
    let values: Vec<f64> = (0..=steps)
        .map(|i| {
            let v = log_f(lo + i as f64 * STEP);
            max = max.max(v);
            v
        })
        .collect();
    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
    let log_integral = max + (sum * STEP).ln() - 0.5 * (2.0 * PI).ln();
    log_integral + 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn moments_match_the_binomial_sum_where_it_is_stable() {
        // Δ²g(0) = g(2) − 2g(1) + g(0) = e^{1/σ²} − 1 exactly.
        for sigma in [0.8f64, 1.0, 3.0] {
            let exact = (1.0f64 / (sigma * sigma)).exp_m1().ln();
            assert_relative_eq!(log_moment(sigma, 2), exact, max_relative = 1e-8);
        }
        // Δ⁴g(0) = g(4) − 4g(3) + 6g(2) − 4g(1) + g(0)
        let sigma = 0.8f64;
        let g = |k: f64| (k * (k - 1.0) / (2.0 * sigma * sigma)).exp();
        let exact = g(4.0) - 4.0 * g(3.0) + 6.0 * g(2.0) - 4.0 * g(1.0) + g(0.0);
        assert_relative_eq!(log_moment(sigma, 4), exact.ln(), max_relative = 1e-8);
    }

    #[test]
    fn whole_dataset_limit_is_not_below_the_gaussian() {
        // With γ close to 1 the bound must not undercut the plain Gaussian's α/(2σ²).
        let mech = WithoutReplacementGaussian::new(0.999_999, 2.0, 8.0);
        for alpha in [2.0, 3.0, 8.0] {
            assert!(mech.rdp(alpha) >= 0.999 * alpha / 8.0);
        }
    }
}
