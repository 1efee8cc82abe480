//! A discretized privacy loss distribution: probabilities on the grid {i·Δ} plus a mass at +∞.
//!
//! For a pair of distributions (P, Q) the privacy loss L = ln(P(o)/Q(o)) with o ∼ P has
//! hockey-stick divergence δ(ε) = P(L = ∞) + E[(1 − e^{ε−L})₊]; a PLD that is pessimistic
//! (dominates the true one) gives upper bounds on δ(ε) and on the ε that reaches a δ.

use crate::conservative::{add_up, div_up, ln_up, mul_up, sub_up};

/// Relative margin on every δ computed from a discretized PLD, covering the floating-point
/// error of building and composing it (observed errors are below 1e-12 relative).
const RELATIVE_SLACK: f64 = 1e-9;

/// A pessimistic discrete privacy loss distribution.
#[derive(Clone, Debug)]
pub(crate) struct DiscretePld {
    /// The grid spacing Δ.
    pub(crate) interval: f64,
    /// Grid index of `probs[0]`: its loss is `lower * interval`.
    pub(crate) lower: i64,
    /// Probability of each grid point, ≥ 0.
    pub(crate) probs: Vec<f64>,
    /// Probability of infinite loss.
    pub(crate) infinity_mass: f64,
}

impl DiscretePld {
    /// The distribution of a mechanism that reveals nothing: all mass at loss 0.
    pub(crate) fn identity(interval: f64) -> Self {
        Self {
            interval,
            lower: 0,
            probs: vec![1.0],
            infinity_mass: 0.0,
        }
    }

    /// After an FFT: clamps negative rounding noise to 0 and charges any shortfall of the
    /// finite mass against `expected` to +∞ (both can only raise δ).
    pub(crate) fn repair_mass(&mut self, expected: f64) {
        self.probs.iter_mut().for_each(|p| *p = p.max(0.0));
        let shortfall = expected - self.probs.iter().sum::<f64>();
        if shortfall > 0.0 {
            self.infinity_mass = (self.infinity_mass + shortfall).min(1.0);
        }
    }

    fn loss(&self, i: usize) -> f64 {
        (self.lower + i as i64) as f64 * self.interval
    }

    /// Removes the largest prefix and suffix each of mass ≤ `tail / 2`, pessimistically: the
    /// prefix mass moves up to the first kept point, the suffix mass goes to +∞.
    pub(crate) fn truncate_tails(&mut self, tail: f64) {
        if tail <= 0.0 || self.probs.len() < 2 {
            return;
        }
        let mut left = 0;
        let mut left_mass = 0.0;
        while left + 1 < self.probs.len() && left_mass + self.probs[left] <= tail / 2.0 {
            left_mass += self.probs[left];
            left += 1;
        }
        let mut right = self.probs.len();
        let mut right_mass = 0.0;
        while right > left + 1 && right_mass + self.probs[right - 1] <= tail / 2.0 {
            right_mass += self.probs[right - 1];
            right -= 1;
        }
        self.probs.truncate(right);
        self.probs.drain(..left);
        self.probs[0] += left_mass;
        self.lower += left as i64;
        self.infinity_mass += right_mass;
    }

    /// δ(ε), an upper bound.
    pub(crate) fn delta(&self, epsilon: f64) -> f64 {
        // Scan down from the top, keeping U = ∞-mass + Σ_{j≥i} p_j and
        // S = Σ_{j≥i} p_j e^{L_i − L_j} (≤ U, so nothing overflows).
        let decay = (-self.interval).exp();
        let (mut upper, mut scaled) = (0.0f64, 0.0f64);
        let mut first_above = None;
        for i in (0..self.probs.len()).rev() {
            if self.loss(i) <= epsilon {
                break;
            }
            upper += self.probs[i];
            scaled = self.probs[i] + decay * scaled;
            first_above = Some(i);
        }
        let Some(i) = first_above else {
            return self.infinity_mass.min(1.0);
        };
        let delta = upper - (epsilon - self.loss(i)).exp() * scaled;
        let bounded = add_up(self.infinity_mass, delta.max(0.0));
        add_up(bounded, RELATIVE_SLACK * bounded + f64::MIN_POSITIVE).min(1.0)
    }

    /// The smallest ε ≥ 0 with δ(ε) ≤ `delta`, an upper bound; ∞ if there is none.
    pub(crate) fn epsilon(&self, delta: f64) -> f64 {
        // Work with a target lowered by the slack so the returned ε is conservative.
        let target = delta / (1.0 + RELATIVE_SLACK) - f64::MIN_POSITIVE;
        if self.infinity_mass >= target {
            return f64::INFINITY;
        }
        let decay = (-self.interval).exp();
        let (mut upper, mut scaled) = (self.infinity_mass, 0.0f64);
        for i in (0..self.probs.len()).rev() {
            upper += self.probs[i];
            scaled = self.probs[i] + decay * scaled;
            // δ at the left end of the interval [L_{i−1}, L_i):
            let at_left_end = upper - decay * scaled;
            if at_left_end > target || i == 0 {
                let excess = sub_up(upper, target);
                if excess <= 0.0 || scaled <= 0.0 {
                    return 0.0;
                }
                // ε = L_i + ln((U − δ)/S), rounded up.
                let scaled_down = scaled * (1.0 - 4.0 * f64::EPSILON);
                let offset = ln_up(div_up(excess, scaled_down));
                let loss = mul_up((self.lower + i as i64) as f64, self.interval);
                return add_up(loss, offset).max(0.0);
            }
        }
        0.0
    }

    /// Total probability, ∞ included (1 up to rounding).
    #[cfg(test)]
    pub(crate) fn total_mass(&self) -> f64 {
        self.infinity_mass + self.probs.iter().sum::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn two_point() -> DiscretePld {
        // Randomized response with e^ε = 3: loss ln 3 w.p. 3/4, −ln 3 w.p. 1/4.
        // Put it on a grid where ±ln 3 are exact points: interval ln 3.
        DiscretePld {
            interval: 3f64.ln(),
            lower: -1,
            probs: vec![0.25, 0.0, 0.75],
            infinity_mass: 0.0,
        }
    }

    #[test]
    fn delta_of_randomized_response() {
        // δ(0) = Σ p (1 − e^{−L}) over L > 0 = 0.75 (1 − 1/3) = 0.5
        assert_relative_eq!(two_point().delta(0.0), 0.5, max_relative = 1e-8);
        assert_eq!(two_point().delta(3f64.ln() + 1e-9), 0.0);
    }

    #[test]
    fn epsilon_inverts_delta() {
        let pld = two_point();
        for target in [0.4, 0.2, 0.05] {
            let eps = pld.epsilon(target);
            assert!(
                pld.delta(eps) <= target * (1.0 + 1e-6),
                "{target}: {}",
                pld.delta(eps)
            );
            assert!(pld.delta(eps * 0.99) > target);
        }
        assert_eq!(pld.epsilon(0.6), 0.0);
    }

    #[test]
    fn infinity_mass_above_delta_means_infinite_epsilon() {
        let mut pld = two_point();
        pld.infinity_mass = 1e-3;
        pld.probs[2] -= 1e-3;
        assert_eq!(pld.epsilon(1e-4), f64::INFINITY);
    }

    #[test]
    fn truncation_moves_mass_pessimistically() {
        let mut pld = DiscretePld {
            interval: 0.1,
            lower: 0,
            probs: vec![1e-20, 0.5, 0.5 - 2e-20, 1e-20],
            infinity_mass: 0.0,
        };
        pld.truncate_tails(1e-15);
        assert_eq!(pld.probs.len(), 2);
        assert_eq!(pld.lower, 1);
        assert!(pld.infinity_mass >= 1e-20);
        assert_relative_eq!(pld.total_mass(), 1.0, max_relative = 1e-15);
    }
}
