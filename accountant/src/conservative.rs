//! Arithmetic rounded in a known direction, for privacy quantities that must never be
//! understated.
//!
//! Thin wrappers over opendp's conservative arithmetic (`InfAdd`, `InfLn`, ...), which
//! computes each operation in arbitrary precision and rounds the result toward +∞ (`up`) or
//! −∞ (`down`). They are slow (microseconds), so hot loops compute in plain `f64` and only the
//! final formula that produces a reported ε or δ goes through here.
//!
//! Overflow of an upward-rounded quantity gives +∞, a valid (if useless) upper bound. Overflow
//! of a downward-rounded quantity is an error.

use crate::error::{AccountantError, Result};
use opendp::traits::{InfAdd, InfDiv, InfExp, InfLn, InfLn1P, InfMul, InfSub};

fn upper(r: opendp::error::Fallible<f64>) -> f64 {
    r.unwrap_or(f64::INFINITY)
}

fn lower(r: opendp::error::Fallible<f64>, what: &str) -> Result<f64> {
    r.map_err(|e| AccountantError::Numerical(format!("{what}: {e}")))
}

/// a + b, rounded up.
pub(crate) fn add_up(a: f64, b: f64) -> f64 {
    if a.is_infinite() || b.is_infinite() {
        return a + b;
    }
    upper(a.inf_add(&b))
}

/// a − b, rounded up.
pub(crate) fn sub_up(a: f64, b: f64) -> f64 {
    if a.is_infinite() || b.is_infinite() {
        return a - b;
    }
    upper(a.inf_sub(&b))
}

/// a × b, rounded up.
pub(crate) fn mul_up(a: f64, b: f64) -> f64 {
    if a.is_infinite() || b.is_infinite() {
        return a * b;
    }
    upper(a.inf_mul(&b))
}

/// a / b, rounded up.
pub(crate) fn div_up(a: f64, b: f64) -> f64 {
    if a.is_infinite() {
        return a / b;
    }
    upper(a.inf_div(&b))
}

/// a / b, rounded down.
pub(crate) fn div_down(a: f64, b: f64) -> Result<f64> {
    lower(a.neg_inf_div(&b), "division")
}

/// a − b, rounded down.
pub(crate) fn sub_down(a: f64, b: f64) -> Result<f64> {
    lower(a.neg_inf_sub(&b), "subtraction")
}

/// ln(x), rounded up.
pub(crate) fn ln_up(x: f64) -> f64 {
    if x == f64::INFINITY {
        return x;
    }
    upper(x.inf_ln())
}

/// ln(x), rounded down.
pub(crate) fn ln_down(x: f64) -> Result<f64> {
    lower(x.neg_inf_ln(), "logarithm")
}

/// ln(1 + x), rounded up.
pub(crate) fn ln_1p_up(x: f64) -> f64 {
    upper(x.inf_ln_1p())
}

/// exp(x), rounded up.
pub(crate) fn exp_up(x: f64) -> f64 {
    if x == f64::NEG_INFINITY {
        return 0.0;
    }
    upper(x.inf_exp())
}

/// The smallest float strictly greater than `x` (for finite x).
pub(crate) fn next_up(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    if x == 0.0 {
        return f64::from_bits(1);
    }
    let bits = x.to_bits();
    if x > 0.0 {
        f64::from_bits(bits + 1)
    } else {
        f64::from_bits(bits - 1)
    }
}

/// Adds a relative margin of `ulps` units in the last place of `magnitude` to `x`: the bound
/// for a value computed in `f64` whose accumulated rounding error is at most that.
pub(crate) fn inflate(x: f64, magnitude: f64, ulps: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    next_up(x + magnitude.abs() * ulps * f64::EPSILON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upward_operations_never_fall_below_the_float_result() {
        assert_eq!(add_up(0.1, 0.2), 0.30000000000000004);
        assert!(ln_up(10.0) >= 10f64.ln());
        assert!(ln_down(10.0).unwrap() <= 10f64.ln());
        assert!(div_up(1.0, 3.0) >= 1.0 / 3.0);
        assert!(div_down(1.0, 3.0).unwrap() <= 1.0 / 3.0);
        assert!(div_up(1.0, 3.0) > div_down(1.0, 3.0).unwrap());
    }

    #[test]
    fn upward_overflow_is_infinity() {
        assert_eq!(mul_up(1e300, 1e300), f64::INFINITY);
        assert_eq!(exp_up(1e4), f64::INFINITY);
    }
}
