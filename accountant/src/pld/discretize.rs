//! Pessimistic discretization of the PLD of (subsampled) Gaussian mechanisms by
//! "connect the dots" (Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022, Algorithm 1).
//!
//! On a grid ε₀ < … < εₙ the hockey-stick curve δ(ε) is convex in e^ε; the discrete PLD whose
//! curve interpolates δ linearly in e^ε between grid points (and through δ = 1 at e^ε = 0)
//! lies above it everywhere, so every δ it reports is an upper bound. Its masses are
//! p_k = (δ_k − δ_{k−1})/(e^{ε_{k−1}−ε_k} − 1) + (δ_{k+1} − δ_k)/(e^{ε_{k+1}−ε_k} − 1), the
//! mass at +∞ is δₙ. The grid spans the losses of outcomes within the central 1 − e^{−50}
//! of the noise, as in dp_accounting; that choice affects accuracy, never validity.

use super::pmf::DiscretePld;
use crate::error::{AccountantError, Result};
use crate::special::{log1m_exp, log_add, log_normal_sf, normal_cdf, normal_quantile, normal_sf};
use rayon::prelude::*;
use std::f64::consts::LN_2;

/// The pair of output distributions (P, Q) whose privacy loss ln(P/Q) is discretized.
/// Noise standard deviation σ in units of the sensitivity.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LossPair {
    /// P = N(1, σ²), Q = N(0, σ²).
    Gaussian { sigma: f64 },
    /// Removal of a record sampled with probability q: P = (1−q)N(0,σ²) + qN(1,σ²),
    /// Q = N(0,σ²).
    PoissonRemove { q: f64, sigma: f64 },
    /// Addition of such a record: P = N(0,σ²), Q = (1−q)N(0,σ²) + qN(1,σ²).
    PoissonAdd { q: f64, sigma: f64 },
    /// Replacement of such a record, contributions ±h: P = (1−q)N(0,σ²) + qN(h,σ²),
    /// Q = (1−q)N(0,σ²) + qN(−h,σ²).
    PoissonReplace { q: f64, sigma: f64, h: f64 },
}

impl LossPair {
    /// Range of losses of the outcomes within the central 1 − e^{−50} of the noise.
    fn loss_range(&self) -> (f64, f64) {
        let z = -normal_quantile(0.5 * (-50f64).exp());
        match *self {
            Self::Gaussian { sigma } => {
                let s2 = sigma * sigma;
                (
                    (1.0 - 2.0 * z * sigma) / (2.0 * s2),
                    (1.0 + 2.0 * z * sigma) / (2.0 * s2),
                )
            }
            Self::PoissonRemove { q, sigma } => {
                let loss = |x: f64| mixture_log_ratio(q, sigma, x);
                (loss(-z * sigma), loss(1.0 + z * sigma))
            }
            Self::PoissonAdd { q, sigma } => {
                let loss = |x: f64| -mixture_log_ratio(q, sigma, x);
                (loss(1.0 + z * sigma), loss(-z * sigma))
            }
            Self::PoissonReplace { q, sigma, h } => {
                let s2 = sigma * sigma;
                let loss = |x: f64| {
                    let base = (-q).ln_1p() - x * x / (2.0 * s2);
                    log_add(base, q.ln() - (x - h).powi(2) / (2.0 * s2))
                        - log_add(base, q.ln() - (x + h).powi(2) / (2.0 * s2))
                };
                (loss(-z * sigma - h), loss(z * sigma + h))
            }
        }
    }

    /// The hockey-stick divergence δ(ε) = sup_S P(S) − e^ε Q(S).
    pub(crate) fn delta(&self, eps: f64) -> f64 {
        let value = match *self {
            Self::Gaussian { sigma } => {
                let x = sigma * sigma * eps + 0.5;
                normal_sf((x - 1.0) / sigma) - (eps + log_normal_sf(x / sigma)).exp()
            }
            Self::PoissonRemove { q, sigma } => {
                if eps <= (-q).ln_1p() {
                    return -eps.exp_m1();
                }
                let shifted = eps.exp_m1() + q;
                let x = sigma * sigma * (shifted.ln() - q.ln()) + 0.5;
                q * normal_sf((x - 1.0) / sigma) - (shifted.ln() + log_normal_sf(x / sigma)).exp()
            }
            Self::PoissonAdd { q, sigma } => {
                if eps >= -(-q).ln_1p() {
                    return 0.0;
                }
                let shifted = (-eps).exp_m1() + q;
                let x = sigma * sigma * (shifted.ln() - q.ln()) + 0.5;
                normal_cdf(x / sigma) * (1.0 - eps.exp() * (1.0 - q))
                    - (eps + q.ln() + log_normal_sf((1.0 - x) / sigma)).exp()
            }
            Self::PoissonReplace { q, sigma, h } => {
                let x = replace_threshold(q, sigma, h, eps);
                let (base, plus, minus) = (
                    normal_sf(x / sigma),
                    normal_sf((x - h) / sigma),
                    normal_sf((x + h) / sigma),
                );
                let upper = (1.0 - q) * base + q * plus;
                let lower = log_add((-q).ln_1p() + base.ln(), q.ln() + minus.ln());
                upper - (eps + lower).exp()
            }
        };
        value.clamp(0.0, 1.0)
    }
}

/// ln(1 − q + q e^{(2x−1)/(2σ²)}): the loss of removal at outcome x.
fn mixture_log_ratio(q: f64, sigma: f64, x: f64) -> f64 {
    log_add(
        (-q).ln_1p(),
        q.ln() + (2.0 * x - 1.0) / (2.0 * sigma * sigma),
    )
}

/// The outcome x at which the replace-one loss equals ε: with a = (1−q)e^{h²/(2σ²)}/q,
/// x = σ²/h · (ε/2 + asinh(a·sinh(ε/2))).
fn replace_threshold(q: f64, sigma: f64, h: f64, eps: f64) -> f64 {
    let half = eps / 2.0;
    let asinh_term = if half == 0.0 {
        0.0
    } else {
        let log_a = (-q).ln_1p() - q.ln() + h * h / (2.0 * sigma * sigma);
        let log_sinh = half.abs() + log1m_exp(-2.0 * half.abs()) - LN_2;
        let log_y = log_a + log_sinh;
        let magnitude = if log_y > 20.0 {
            log_y + LN_2
        } else {
            log_y.exp().asinh()
        };
        magnitude.copysign(half)
    };
    sigma * sigma / h * (half + asinh_term)
}

/// The connect-the-dots PLD of `pair` on the grid of spacing `interval`.
pub(crate) fn discretize(pair: LossPair, interval: f64, limit: usize) -> Result<DiscretePld> {
    let (lo_loss, hi_loss) = pair.loss_range();
    let lo = (lo_loss / interval).floor();
    let hi = (hi_loss / interval).ceil().max(lo + 1.0);
    let needed = hi - lo + 1.0;
    if !needed.is_finite() || needed > limit as f64 {
        return Err(AccountantError::GridTooLarge {
            needed: if needed.is_finite() {
                needed as u128
            } else {
                u128::MAX
            },
            limit,
        });
    }
    let (lo, n) = (lo as i64, needed as usize);
    let mut deltas: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|k| pair.delta((lo + k as i64) as f64 * interval))
        .collect();
    // δ is non-increasing; remove rounding wiggles.
    for k in 1..n {
        deltas[k] = deltas[k].min(deltas[k - 1]);
    }
    let (down, up) = ((-interval).exp_m1(), interval.exp_m1());
    let mut probs = Vec::with_capacity(n);
    let mut from_left = 1.0 - deltas[0]; // the virtual point at ε = −∞ has δ = 1
    for k in 0..n {
        let (from_right, next_left) = if k + 1 < n {
            let d = deltas[k + 1] - deltas[k];
            (d / up, d / down)
        } else {
            (0.0, 0.0)
        };
        probs.push((from_left + from_right).max(0.0));
        from_left = next_left;
    }
    Ok(DiscretePld {
        interval,
        lower: lo,
        probs,
        infinity_mass: deltas[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn discretized_curve_passes_through_the_true_curve() {
        for pair in [
            LossPair::Gaussian { sigma: 1.0 },
            LossPair::PoissonRemove { q: 0.1, sigma: 1.0 },
            LossPair::PoissonAdd { q: 0.1, sigma: 1.0 },
            LossPair::PoissonReplace {
                q: 0.1,
                sigma: 1.0,
                h: 0.5,
            },
        ] {
            let pld = discretize(pair, 1e-3, 1 << 24).unwrap();
            for eps in [0.05, 0.3, 1.0] {
                let exact = pair.delta(eps);
                let discrete = pld.delta(eps);
                assert!(discrete >= exact * (1.0 - 1e-9), "{pair:?} {eps}");
                assert_relative_eq!(discrete, exact, max_relative = 1e-3);
            }
        }
    }

    #[test]
    fn replace_threshold_solves_the_loss_equation() {
        let (q, sigma, h) = (0.2, 0.7, 0.5);
        let s2 = sigma * sigma;
        for eps in [-2.0, -0.1, 0.3, 4.0] {
            let x = replace_threshold(q, sigma, h, eps);
            let base = (1.0 - q) * (-x * x / (2.0 * s2)).exp();
            let loss = (base + q * (-(x - h).powi(2) / (2.0 * s2)).exp()).ln()
                - (base + q * (-(x + h).powi(2) / (2.0 * s2)).exp()).ln();
            assert_relative_eq!(loss, eps, max_relative = 1e-10);
        }
    }

    #[test]
    fn full_sampling_replace_is_the_gaussian_with_twice_the_shift() {
        // q → 1 with shifts ±h is N(h) vs N(−h): the Gaussian with σ/(2h).
        let replace = LossPair::PoissonReplace {
            q: 1.0 - 1e-12,
            sigma: 1.0,
            h: 0.5,
        };
        let gaussian = LossPair::Gaussian { sigma: 1.0 };
        for eps in [0.1, 1.0, 2.0] {
            assert_relative_eq!(replace.delta(eps), gaussian.delta(eps), max_relative = 1e-6);
        }
    }
}
