//! Special functions in log space, accurate far into the tails.

use std::f64::consts::{LN_2, PI, SQRT_2};

/// log(eˣ + eʸ) without overflow.
pub(crate) fn log_add(x: f64, y: f64) -> f64 {
    let (lo, hi) = if x < y { (x, y) } else { (y, x) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// log(1 − eˣ) for x ≤ 0, accurate near both ends (Mächler 2012).
pub(crate) fn log1m_exp(x: f64) -> f64 {
    if x > -LN_2 {
        (-x.exp_m1()).ln()
    } else {
        (-x.exp()).ln_1p()
    }
}

/// log(eˣ − 1) for x > 0.
pub(crate) fn log_expm1(x: f64) -> f64 {
    if x > 30.0 {
        x + (-(-x).exp()).ln_1p()
    } else {
        x.exp_m1().ln()
    }
}

/// log(erfc(x)), accurate for large positive x where erfc underflows.
pub(crate) fn log_erfc(x: f64) -> f64 {
    if x < 25.0 {
        return libm::erfc(x).ln();
    }
    // Asymptotic expansion (Abramowitz & Stegun 7.1.23); at x ≥ 25 the first omitted term is
    // below 1e-17 relative.
    let y = 1.0 / (2.0 * x * x);
    let series = 1.0 - y * (1.0 - 3.0 * y * (1.0 - 5.0 * y * (1.0 - 7.0 * y)));
    -x * x - (x * PI.sqrt()).ln() + series.ln()
}

/// log P(Z > z) for a standard normal Z.
pub(crate) fn log_normal_sf(z: f64) -> f64 {
    log_erfc(z / SQRT_2) - LN_2
}

/// P(Z > z) for a standard normal Z (accurate in relative terms for large z).
pub(crate) fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / SQRT_2)
}

/// P(Z ≤ z) for a standard normal Z.
pub(crate) fn normal_cdf(z: f64) -> f64 {
    0.5 * libm::erfc(-z / SQRT_2)
}

/// The standard normal quantile: Acklam's rational approximation polished by Newton steps on
/// ln Φ, accurate to a few ulp for p in (1e-300, 1).
pub(crate) fn normal_quantile(p: f64) -> f64 {
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p > 0.5 {
        return -normal_quantile(1.0 - p);
    }
    let target = p.ln();
    let mut z = acklam(p);
    for _ in 0..4 {
        let log_cdf = log_normal_sf(-z);
        let log_density = -0.5 * z * z - 0.5 * (2.0 * PI).ln();
        z -= (log_cdf - target) * (log_cdf - log_density).exp();
    }
    z
}

#[allow(clippy::excessive_precision)] // published constants, kept as printed
fn acklam(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.383577518672690e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-03,
        3.224671290700398e-01,
        2.445134137142996e+00,
        3.754408661907416e+00,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// ln(m!) for integer m, from a table of libm's `lgamma` (each entry within an ulp or two)
/// filled once for m ≤ 4096 and computed directly above.
pub(crate) fn ln_factorial(m: u64) -> f64 {
    const TABLE_SIZE: usize = 4097;
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..TABLE_SIZE)
            .map(|i| libm::lgamma(i as f64 + 1.0))
            .collect()
    });
    table
        .get(m as usize)
        .copied()
        .unwrap_or_else(|| libm::lgamma(m as f64 + 1.0))
}

/// log |C(n, k)| for real n and integer k, with the sign of C(n, k).
pub(crate) fn ln_binomial(n: f64, k: f64) -> (f64, f64) {
    let (a, sa) = libm::lgamma_r(n + 1.0);
    let (b, sb) = libm::lgamma_r(k + 1.0);
    let (c, sc) = libm::lgamma_r(n - k + 1.0);
    (a - b - c, f64::from(sa * sb * sc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn log_erfc_matches_erfc_where_both_are_finite_and_continues_past_underflow() {
        for x in [-3.0, -0.5, 0.0, 0.7, 5.0, 20.0, 24.9] {
            assert_relative_eq!(log_erfc(x), libm::erfc(x).ln(), max_relative = 1e-14);
        }
        // erfc(25) = 8.300172571196522e-274 (mpmath, 30 digits); crossing the switch point.
        assert_relative_eq!(
            log_erfc(25.0),
            8.300172571196522e-274f64.ln(),
            max_relative = 1e-14
        );
        assert_relative_eq!(log_erfc(24.999999), log_erfc(25.0), max_relative = 1e-5);
        assert!(log_erfc(1e3).is_finite());
    }

    #[test]
    fn normal_quantile_inverts_the_cdf() {
        for p in [1e-300, 1e-22, 1e-10, 0.01, 0.3, 0.5, 0.9, 1.0 - 1e-9] {
            let z = normal_quantile(p);
            let back = normal_cdf(z);
            assert_relative_eq!(back, p, max_relative = 1e-12);
        }
    }

    #[test]
    fn binomial_signs_follow_the_generalized_coefficient() {
        // C(1.5, 3) = 1.5 * 0.5 * (-0.5) / 6 = -0.0625
        let (l, s) = ln_binomial(1.5, 3.0);
        assert_relative_eq!(s * l.exp(), -0.0625, max_relative = 1e-14);
        let (l, s) = ln_binomial(10.0, 3.0);
        assert_relative_eq!(s * l.exp(), 120.0, max_relative = 1e-14);
    }

    #[test]
    fn log_space_helpers_are_exact_on_simple_values() {
        assert_relative_eq!(
            log_add(2f64.ln(), 3f64.ln()),
            5f64.ln(),
            max_relative = 1e-15
        );
        assert_relative_eq!(log1m_exp(0.25f64.ln()), 0.75f64.ln(), max_relative = 1e-15);
        assert_relative_eq!(
            log_expm1(1.0),
            (1f64.exp() - 1.0).ln(),
            max_relative = 1e-15
        );
        assert_relative_eq!(log_expm1(40.0), 40.0, max_relative = 1e-15);
    }
}
