//! Rényi DP of the Poisson-subsampled Gaussian mechanism at any order α > 1.
//!
//! Mironov, Talwar, Zhang 2019, "Rényi Differential Privacy of the Sampled Gaussian
//! Mechanism": with μ₀ = N(0, σ²), μ₁ = N(1, σ²) and the mixture μ = (1 − q)μ₀ + qμ₁, the
//! order-α RDP under add-or-remove-one is ε(α) = log(A_α)/(α − 1) with
//! A_α = E_{z∼μ₀}[(μ(z)/μ₀(z))^α]  (their Theorem 5 shows the other direction is no larger).
//!
//! * Integer α (their Section 3.2): A_α = Σₖ C(α,k)(1−q)^{α−k}qᵏ e^{(k²−k)/(2σ²)}. We sum
//!   A_α − 1 = Σ_{k≥2} C(α,k)(1−q)^{α−k}qᵏ (e^{(k²−k)/(2σ²)} − 1) instead, a sum of positive
//!   terms with no cancellation, so tiny RDP values keep their relative accuracy.
//! * Fractional α (their Section 3.3): split the integral at z₀ = σ² ln(1/q − 1) + ½, where
//!   q·μ₁/μ₀ = 1 − q, and expand each side binomially. For i > α the coefficients C(α, i)
//!   alternate in sign and, because each side's moment E[xⁱ·1{…}] has x ≤ 1, the terms
//!   decrease in magnitude: the series is alternating, so after stopping the remainder is
//!   bounded by the last term, which we add. Signs are kept (dp_accounting 0.6 drops them and
//!   overstates ε(α) by up to 70%).
//!
//! Every value returned is an upper bound: the floating-point error of the sums is bounded and
//! added (see [`rdp_poisson_gaussian`]).

use crate::conservative::{div_up, inflate};
use crate::special::{ln_factorial, log_add, log_expm1, log_normal_sf};

/// Iteration cap of the fractional-order series. The bound stays valid when it is reached:
/// the alternating remainder is still added.
const MAX_TERMS: usize = 200_000;

/// Upper bound on the order-α RDP of one step of the Poisson-subsampled Gaussian with
/// sampling rate q ∈ (0, 1] and noise multiplier σ > 0, under add-or-remove-one.
///
/// # Privacy
/// Returns a value ≥ the true Rényi divergence of order α (Mironov et al. 2019, Thm. 4/5),
/// up to the correctness of libm's `erfc`, `exp` and `ln` to a few ulp: the rounding error
/// of the sums (16 ulp of the sum of absolute terms, plus 8 ulp of each term per unit of
/// magnitude of its exponent) is added, as is the truncation remainder of the fractional
/// series.
pub(crate) fn rdp_poisson_gaussian(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q >= 1.0 {
        return div_up(alpha, 2.0 * sigma * sigma);
    }
    let log_a = if alpha.fract() == 0.0 && alpha <= 1e7 {
        log_a_integer(q, sigma, alpha)
    } else {
        log_a_fractional(q, sigma, alpha)
    };
    if log_a <= 0.0 {
        return 0.0;
    }
    div_up(log_a, alpha - 1.0)
}

/// Upper bound on log A_α for integer α ≥ 2.
fn log_a_integer(q: f64, sigma: f64, alpha: f64) -> f64 {
    let n = alpha as u64;
    let (lq, l1q) = (q.ln(), (-q).ln_1p());
    let inv_2s2 = 1.0 / (2.0 * sigma * sigma);
    let mut logs = Vec::with_capacity(n as usize);
    let mut weighted = Vec::with_capacity(n as usize);
    for k in 2..=n {
        let kf = k as f64;
        let lc = ln_factorial(n) - ln_factorial(k) - ln_factorial(n - k);
        let gain = (kf * kf - kf) * inv_2s2;
        let log_term = lc + kf * lq + (alpha - kf) * l1q + log_expm1(gain);
        let parts = 1.0 + lc.abs() + (kf * lq).abs() + ((alpha - kf) * l1q).abs() + gain;
        logs.push(log_term);
        weighted.push(log_term + parts.ln());
    }
    let log_b = log_sum_exp(&logs);
    // Relative error of B: each exponent is off by ≤ 8 ulp per unit of its parts, and the sum
    // of n positive terms adds ≤ n ulp.
    let relative = 8.0 * f64::EPSILON * (log_sum_exp(&weighted) - log_b).exp()
        + (n as f64 + 4.0) * f64::EPSILON;
    let log_a = log_add(0.0, log_b + relative.ln_1p());
    inflate(log_a, log_a, 4.0)
}

/// Upper bound on log A_α for fractional α > 1 (Mironov et al. 2019, Sec. 3.3).
fn log_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (lq, l1q) = (q.ln(), (-q).ln_1p());
    let s2 = sigma * sigma;
    let z0 = s2 * (l1q - lq) + 0.5;
    let mut positive = f64::NEG_INFINITY;
    let mut negative = f64::NEG_INFINITY;
    let mut absolute = f64::NEG_INFINITY;
    // log Σᵢ |tᵢ|·(magnitude of the parts of tᵢ's exponent): bounds the exponents' rounding.
    let mut weighted = f64::NEG_INFINITY;
    let (mut log_coef, mut sign) = (0.0f64, 1.0f64); // log|C(α, 0)|, sign
    let mut tail = f64::NEG_INFINITY;
    for i in 0..MAX_TERMS {
        let fi = i as f64;
        let j = alpha - fi;
        let e0 = log_coef
            + fi * lq
            + j * l1q
            + (fi * fi - fi) / (2.0 * s2)
            + log_normal_sf((fi - z0) / sigma);
        let e1 = log_coef
            + j * lq
            + fi * l1q
            + (j * j - j) / (2.0 * s2)
            + log_normal_sf((z0 - j) / sigma);
        let term = log_add(e0, e1);
        if sign > 0.0 {
            positive = log_add(positive, term);
        } else {
            negative = log_add(negative, term);
        }
        absolute = log_add(absolute, term);
        let parts =
            1.0 + log_coef.abs() + (fi * lq).abs() + (j * lq).abs() + (fi * fi + j * j) / s2;
        weighted = log_add(weighted, term + parts.ln());
        tail = term;
        if fi > alpha + 1.0 && converged(positive, negative, term) {
            break;
        }
        // C(α, i+1) = C(α, i)·(α − i)/(i + 1)
        log_coef += (alpha - fi).abs().ln() - (fi + 1.0).ln();
        if alpha - fi < 0.0 {
            sign = -sign;
        }
    }
    let difference = positive.exp() - negative.exp();
    let rounding = (16.0 * absolute.exp() + 8.0 * weighted.exp()) * f64::EPSILON;
    let bound = difference + rounding + tail.exp();
    let log_a = if bound.is_finite() {
        bound.ln()
    } else {
        // Far beyond f64 range: bound the difference by the positive part in log space.
        log_add(positive, tail) + (1.0 + 16.0 * f64::EPSILON).ln()
    };
    inflate(log_a, log_a, 4.0)
}

/// The remainder (≤ the last term) is negligible: below 1e-9 of A − 1 (so it moves ε(α) by at most that, relatively) or 1e-16 of A.
fn converged(positive: f64, negative: f64, last: f64) -> bool {
    let a = positive.exp() - negative.exp();
    let scale = if (a - 1.0) > 0.0 {
        (a - 1.0).ln() - 21.0
    } else {
        f64::NEG_INFINITY
    };
    let relative_to_a = if a > 0.0 {
        a.ln() - 37.0
    } else {
        f64::NEG_INFINITY
    };
    last < scale.max(relative_to_a)
}

fn log_sum_exp(logs: &[f64]) -> f64 {
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + logs.iter().map(|l| (l - max).exp()).sum::<f64>().ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn full_batch_is_the_gaussian_mechanism() {
        assert_relative_eq!(
            rdp_poisson_gaussian(1.0, 2.0, 3.0),
            3.0 / 8.0,
            max_relative = 1e-15
        );
    }

    #[test]
    fn fractional_orders_join_integer_orders_smoothly() {
        for (q, sigma) in [(0.01, 1.0), (0.1, 0.8), (0.3, 0.5)] {
            let at_int = rdp_poisson_gaussian(q, sigma, 3.0);
            let near = rdp_poisson_gaussian(q, sigma, 3.0 + 1e-9);
            assert_relative_eq!(at_int, near, max_relative = 1e-6);
        }
    }

    #[test]
    fn second_order_has_its_closed_form() {
        // A_2 = 1 + q²(e^{1/σ²} − 1)
        let (q, sigma) = (0.05, 1.3f64);
        let expected = (q * q * ((1.0 / (sigma * sigma)).exp() - 1.0)).ln_1p();
        assert_relative_eq!(
            rdp_poisson_gaussian(q, sigma, 2.0),
            expected,
            max_relative = 1e-13
        );
    }
}
