//! The Gaussian mechanism in closed form (Balle & Wang 2018, "Improving the Gaussian
//! mechanism for differential privacy", Thm. 8): with noise multiplier σ,
//! δ(ε) = Φ(1/(2σ) − εσ) − e^ε Φ(−1/(2σ) − εσ). Compositions of Gaussians are one Gaussian
//! with σ_eff = (Σ 1/σᵢ²)^{−1/2}, so a ledger of unsampled Gaussians needs no discretization.

use super::discretize::LossPair;
use crate::conservative::add_up;

/// Relative margin on δ covering the rounding of the closed form.
const SLACK: f64 = 1e-9;

/// δ(ε) of the Gaussian mechanism with noise multiplier σ, rounded up.
pub(crate) fn gaussian_delta(sigma: f64, epsilon: f64) -> f64 {
    let delta = LossPair::Gaussian { sigma }.delta(epsilon);
    add_up(delta, SLACK * delta + f64::MIN_POSITIVE).min(1.0)
}

/// The smallest ε with [`gaussian_delta`] ≤ `delta`, found by bisection to the last bit and
/// returned from the upper side.
pub(crate) fn gaussian_epsilon(sigma: f64, delta: f64) -> f64 {
    if gaussian_delta(sigma, 0.0) <= delta {
        return 0.0;
    }
    let mut hi = 1.0;
    while gaussian_delta(sigma, hi) > delta {
        hi *= 2.0;
        if !hi.is_finite() {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if gaussian_delta(sigma, mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The noise multiplier σ of the Gaussian mechanism that is exactly (ε, δ)-DP: the root of
/// δ(σ, ε) = `delta` (δ falls as σ grows), by bisection on ln σ to a relative 1e-13. For the
/// f-DP audit, which needs the exact curve rather than a bound rounded either way.
pub(crate) fn gaussian_sigma(epsilon: f64, delta: f64) -> f64 {
    let delta_at = |sigma: f64| LossPair::Gaussian { sigma }.delta(epsilon);
    let (mut lo, mut hi) = (0.1f64, 1.0f64);
    while delta_at(lo) < delta && lo > 1e-300 {
        hi = lo;
        lo /= 10.0;
    }
    while delta_at(hi) > delta && hi < 1e300 {
        lo = hi;
        hi *= 10.0;
    }
    while hi - lo > 1e-13 * hi {
        let mid = (lo * hi).sqrt();
        if mid <= lo || mid >= hi {
            break;
        }
        if delta_at(mid) > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_for_epsilon_and_delta_inverts_the_closed_form() {
        for (eps, delta) in [(0.5, 1e-5), (2.0, 1e-6), (8.0, 1e-5), (1.0, 0.1)] {
            let sigma = gaussian_sigma(eps, delta);
            let back = LossPair::Gaussian { sigma }.delta(eps);
            approx::assert_relative_eq!(back, delta, max_relative = 1e-9);
        }
    }

    #[test]
    fn epsilon_and_delta_are_inverse() {
        for sigma in [0.5, 1.0, 5.0] {
            let eps = gaussian_epsilon(sigma, 1e-5);
            assert!(gaussian_delta(sigma, eps) <= 1e-5);
            assert!(gaussian_delta(sigma, eps * (1.0 - 1e-9)) > 1e-5);
        }
    }
}
