//! From a Rényi DP curve to (ε, δ)-DP.

use crate::conservative::{
    add_up, div_down, div_up, exp_up, ln_1p_up, ln_down, mul_up, sub_down, sub_up,
};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// How an RDP guarantee at order α is turned into (ε, δ)-DP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RdpConversion {
    /// ε = r + log1p(−1/α) − log(δα)/(α − 1): Balle, Barthe, Gaboardi, Hsu, Sato 2020
    /// ("Hypothesis testing interpretations and Rényi DP", Thm. 21); also Canonne, Kamath,
    /// Steinke 2020, Prop. 12. The conversion of dp_accounting ≥ 0.1 and Opacus ≥ 1.0.
    #[default]
    BalleEtAl2020,
    /// ε = r + log(1/δ)/(α − 1): Mironov 2017, Prop. 3. Looser (up to 1.8× here), used by
    /// TF Privacy before 2020 and by many published noise multipliers.
    Classic,
}

/// (ε, α*) from an RDP curve: the smallest ε over the orders, rounded up, and its order.
///
/// # Privacy
/// Each order gives a valid (ε_α, δ) guarantee; the reported one is recomputed with
/// upward-rounded arithmetic, so it is ≥ the exact value of the formula. Where
/// δ² ≥ 1 − e^{−r} (with a 1e-12 margin) ε = 0 holds by the KL bound
/// (Bretagnolle–Huber: TV ≤ √(1 − e^{−KL}) and KL ≤ D_α).
pub(crate) fn epsilon_from_rdp(
    orders: &[f64],
    rdp: &[f64],
    delta: f64,
    conversion: RdpConversion,
) -> Result<(f64, f64)> {
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    for (&alpha, &r) in orders.iter().zip(rdp) {
        if r.is_nan() || r == f64::INFINITY {
            continue;
        }
        if delta * delta > -(-r).exp_m1() * (1.0 + 1e-12) {
            return Ok((0.0, alpha));
        }
        let eps = epsilon_at_order_fast(alpha, r, delta, conversion);
        if eps < best.0 {
            best = (eps, alpha);
        }
    }
    if best.0.is_infinite() {
        return Ok(best);
    }
    let alpha = best.1;
    let r = rdp[orders.iter().position(|&a| a == alpha).unwrap_or(0)];
    Ok((
        epsilon_at_order_up(alpha, r, delta, conversion)?.max(0.0),
        alpha,
    ))
}

/// (δ, α*) from an RDP curve: the smallest δ over the orders at `epsilon`, rounded up.
///
/// # Privacy
/// Same guarantee as [`epsilon_from_rdp`], inverted; the result is ≥ the exact value of the
/// formula at the chosen order and never above 1.
pub(crate) fn delta_from_rdp(
    orders: &[f64],
    rdp: &[f64],
    epsilon: f64,
    conversion: RdpConversion,
) -> Result<(f64, f64)> {
    let mut best = (f64::INFINITY, orders.first().copied().unwrap_or(f64::NAN));
    for (&alpha, &r) in orders.iter().zip(rdp) {
        if r.is_nan() || r == f64::INFINITY {
            continue;
        }
        let log_delta = log_delta_at_order_fast(alpha, r, epsilon, conversion);
        if log_delta < best.0 {
            best = (log_delta, alpha);
        }
    }
    if best.0 == f64::INFINITY {
        return Ok((1.0, best.1));
    }
    let alpha = best.1;
    let r = rdp[orders.iter().position(|&a| a == alpha).unwrap_or(0)];
    let log_delta = log_delta_at_order_up(alpha, r, epsilon, conversion)?;
    // The KL bound δ ≤ √(1 − e^{−r}) can only help; use it where it is smaller.
    let kl = 0.5 * (-(-r).exp_m1()).ln() + 1e-12;
    Ok((exp_up(log_delta.min(kl)).min(1.0), alpha))
}

fn epsilon_at_order_fast(alpha: f64, r: f64, delta: f64, conversion: RdpConversion) -> f64 {
    match conversion {
        RdpConversion::BalleEtAl2020 => {
            r + (-1.0 / alpha).ln_1p() - (delta * alpha).ln() / (alpha - 1.0)
        }
        RdpConversion::Classic => r - delta.ln() / (alpha - 1.0),
    }
}

fn epsilon_at_order_up(alpha: f64, r: f64, delta: f64, conversion: RdpConversion) -> Result<f64> {
    let minus_ln_delta = -ln_down(delta)?; // upper bound on −ln δ
    let numerator = match conversion {
        RdpConversion::BalleEtAl2020 => sub_up(minus_ln_delta, ln_down(alpha)?),
        RdpConversion::Classic => minus_ln_delta,
    };
    let ratio = if numerator >= 0.0 {
        div_up(numerator, sub_down(alpha, 1.0)?)
    } else {
        div_up(numerator, sub_up(alpha, 1.0))
    };
    Ok(match conversion {
        RdpConversion::BalleEtAl2020 => {
            let log1p_term = ln_1p_up(-div_down(1.0, alpha)?);
            add_up(add_up(r, log1p_term), ratio)
        }
        RdpConversion::Classic => add_up(r, ratio),
    })
}

fn log_delta_at_order_fast(alpha: f64, r: f64, eps: f64, conversion: RdpConversion) -> f64 {
    match conversion {
        RdpConversion::BalleEtAl2020 => {
            (alpha - 1.0) * (r - eps + (-1.0 / alpha).ln_1p()) - alpha.ln()
        }
        RdpConversion::Classic => (alpha - 1.0) * (r - eps),
    }
}

fn log_delta_at_order_up(alpha: f64, r: f64, eps: f64, conversion: RdpConversion) -> Result<f64> {
    let inner = match conversion {
        RdpConversion::BalleEtAl2020 => add_up(sub_up(r, eps), ln_1p_up(-div_down(1.0, alpha)?)),
        RdpConversion::Classic => sub_up(r, eps),
    };
    let scale = if inner >= 0.0 {
        sub_up(alpha, 1.0)
    } else {
        sub_down(alpha, 1.0)?
    };
    let product = mul_up(inner, scale);
    Ok(match conversion {
        RdpConversion::BalleEtAl2020 => sub_up(product, ln_down(alpha)?),
        RdpConversion::Classic => product,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conservative_epsilon_is_at_least_the_float_formula() {
        let orders = [1.5, 2.0, 8.0, 32.0];
        let rdp = [0.01, 0.02, 0.1, 0.5];
        for conversion in [RdpConversion::BalleEtAl2020, RdpConversion::Classic] {
            let (eps, order) = epsilon_from_rdp(&orders, &rdp, 1e-5, conversion).unwrap();
            let i = orders.iter().position(|&a| a == order).unwrap();
            assert!(eps >= epsilon_at_order_fast(order, rdp[i], 1e-5, conversion));
            assert!(eps <= epsilon_at_order_fast(order, rdp[i], 1e-5, conversion) * (1.0 + 1e-14));
        }
    }

    #[test]
    fn classic_conversion_is_looser() {
        let orders = [2.0, 4.0, 8.0, 16.0];
        let rdp = [0.02, 0.04, 0.08, 0.16];
        let balle = epsilon_from_rdp(&orders, &rdp, 1e-5, RdpConversion::BalleEtAl2020).unwrap();
        let classic = epsilon_from_rdp(&orders, &rdp, 1e-5, RdpConversion::Classic).unwrap();
        assert!(balle.0 < classic.0);
    }

    #[test]
    fn delta_inverts_epsilon() {
        let orders: Vec<f64> = (2..64).map(f64::from).collect();
        let rdp: Vec<f64> = orders.iter().map(|a| a / (2.0 * 4.0)).collect();
        let (eps, _) = epsilon_from_rdp(&orders, &rdp, 1e-6, RdpConversion::default()).unwrap();
        let (delta, _) = delta_from_rdp(&orders, &rdp, eps, RdpConversion::default()).unwrap();
        assert!(delta <= 1e-6 * (1.0 + 1e-9), "{delta}");
        assert!(delta >= 1e-6 * 0.5, "{delta}");
    }
}
