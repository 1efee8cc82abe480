//! Does what a run released fit the mechanism the accountant charged? Two one-sided tests on
//! the white-box observations, beside the lower bounds.
//!
//! Under the charged mechanism (Poisson rate q, noise σ·C, canaries clipped to C) an out
//! canary's observation o = released · (expected batch) / (σC) is N(0, 1) at every step, and an
//! in canary's is Bernoulli(q)/σ + N(0, 1), all independent. So over the n_out = m_out·T out
//! observations Σo² is χ²(n_out), and over the n_in = m_in·T in observations the mean has
//! expectation q/σ and variance (1 + q(1 − q)/σ²)/n_in. The tests look only in the direction
//! that costs privacy:
//! - **less noise** than charged: Σo²/n_out below 1 (p-value P(χ²(n_out) ≤ Σo²));
//! - **more participation** than charged (a higher sampling rate, or canaries clipped to more
//!   than C): the in mean above q/σ.
//!
//! Both use the normal approximation of their statistic, accurate for the n = m·T in the
//! thousands and more that an audit has. They catch bugs a one-run bound is too weak to see
//! (a sampling rate 2× the one charged raises the true ε from 2 to about 3.5, which no
//! one-run bound reaches), but a rejection says that the mechanism is not the one charged,
//! not by how much ε is exceeded.

use super::Canaries;
use serde::{Deserialize, Serialize};

/// Per-canary sums of the white-box observations.
#[derive(Clone, Debug)]
pub struct Moments {
    sum: Vec<f64>,
    sum_of_squares: Vec<f64>,
    steps: u64,
}

/// The outcome of the two tests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyCheck {
    /// Mean of o² over the out canaries' observations: 1 under the charged noise.
    pub noise_variance: f64,
    /// P(a value this low or lower | the charged noise).
    pub noise_p_value: f64,
    /// σ × the in canaries' mean observation: q (times a canary's clipped norm over C) under
    /// the charged mechanism.
    pub participation: f64,
    /// P(a value this high or higher | the charged q and clipping).
    pub participation_p_value: f64,
    /// The check's significance: each test runs at half of it, so an honest run is rejected
    /// with probability at most this.
    pub significance: f64,
}

impl ConsistencyCheck {
    /// Whether either test rejects the charged mechanism (p-value below half the
    /// significance).
    pub fn rejected(&self) -> bool {
        let each = 0.5 * self.significance;
        self.noise_p_value < each || self.participation_p_value < each
    }
}

/// P(Z ≥ z) for a standard normal Z.
fn upper_tail(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

impl Moments {
    /// For `count` canaries.
    pub fn new(count: usize) -> Self {
        Self {
            sum: vec![0.0; count],
            sum_of_squares: vec![0.0; count],
            steps: 0,
        }
    }

    /// Sums recorded earlier ([`Self::sums`], e.g. in a checkpoint), to go on from; `None` if
    /// the two lengths differ.
    pub fn restore(sum: Vec<f64>, sum_of_squares: Vec<f64>, steps: u64) -> Option<Self> {
        (sum.len() == sum_of_squares.len()).then_some(Self {
            sum,
            sum_of_squares,
            steps,
        })
    }

    /// Per canary Σo and Σo², and the steps observed.
    pub fn sums(&self) -> (&[f64], &[f64], u64) {
        (&self.sum, &self.sum_of_squares, self.steps)
    }

    /// Adds one step, as [`super::Scores::observe`] does.
    pub fn observe(&mut self, released: &[f32], scale: f64) {
        for ((s, s2), g) in self
            .sum
            .iter_mut()
            .zip(self.sum_of_squares.iter_mut())
            .zip(released)
        {
            let o = *g as f64 * scale;
            *s += o;
            *s2 += o * o;
        }
        self.steps += 1;
    }

    /// The two tests at `significance` together, for the mechanism charged at `sampling_rate` with
    /// noise std `noise_ratio` times a canary's clipped norm; `None` before the first step or
    /// without canaries on both sides.
    pub fn check(
        &self,
        canaries: &Canaries,
        sampling_rate: f64,
        noise_ratio: f64,
        significance: f64,
    ) -> Option<ConsistencyCheck> {
        let (mut in_sum, mut in_count, mut out_squares, mut out_count) = (0.0, 0u64, 0.0, 0u64);
        for i in 0..self.sum.len() {
            if canaries.is_included(i) {
                in_sum += self.sum[i];
                in_count += self.steps;
            } else {
                out_squares += self.sum_of_squares[i];
                out_count += self.steps;
            }
        }
        if in_count == 0 || out_count == 0 {
            return None;
        }
        let (q, s) = (sampling_rate, noise_ratio);
        let noise_variance = out_squares / out_count as f64;
        let z_noise = (noise_variance - 1.0) / (2.0 / out_count as f64).sqrt();
        let in_mean = in_sum / in_count as f64;
        let in_variance = 1.0 + q * (1.0 - q) / (s * s);
        let z_participation = (in_mean - q / s) / (in_variance / in_count as f64).sqrt();
        Some(ConsistencyCheck {
            noise_variance,
            noise_p_value: upper_tail(-z_noise),
            participation: in_mean * s,
            participation_p_value: upper_tail(z_participation),
            significance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SecureRng;
    use rand_distr::{Distribution, Normal};

    /// m canaries over T steps of the mechanism with the given true rate and noise (the charged
    /// ones are q = 0.1, σ = 2).
    fn run(true_q: f64, true_noise: f64) -> ConsistencyCheck {
        let (m, steps, q, sigma) = (400, 200, 0.1, 2.0);
        let canaries = Canaries::seeded(m, 5).unwrap();
        let mut rng = SecureRng::seeded(6);
        let rng = rng.inner();
        let normal = Normal::new(0.0, true_noise).unwrap();
        let mut moments = Moments::new(m);
        for _ in 0..steps {
            // released · scale with scale = 1/σ: canary in a batch adds C = 1.
            let released: Vec<f32> = (0..m)
                .map(|i| {
                    let hit = canaries.is_included(i) && rand::RngExt::random_bool(rng, true_q);
                    ((if hit { 1.0 } else { 0.0 }) + normal.sample(rng)) as f32
                })
                .collect();
            moments.observe(&released, 1.0 / sigma);
        }
        moments.check(&canaries, q, sigma, 1e-3).unwrap()
    }

    #[test]
    fn the_charged_mechanism_passes_and_less_noise_or_a_higher_rate_fails() {
        // Seeded, so deterministic; with fresh seeds the honest case fails with probability
        // at most 1e-3 (two tests at 5e-4).
        let honest = run(0.1, 2.0);
        assert!(!honest.rejected(), "{honest:?}");
        assert!((honest.noise_variance - 1.0).abs() < 0.02, "{honest:?}");
        assert!((honest.participation - 0.1).abs() < 0.03, "{honest:?}");
        // Power: σ·0.8 noise and 2q are each rejected by their own test.
        let less_noise = run(0.1, 1.6);
        assert!(
            less_noise.noise_p_value < 5e-4 && less_noise.rejected(),
            "{less_noise:?}"
        );
        let double_rate = run(0.2, 2.0);
        assert!(double_rate.participation_p_value < 5e-4, "{double_rate:?}");
        assert!(
            double_rate.rejected() && double_rate.noise_p_value > 5e-4,
            "{double_rate:?}"
        );
        // More noise and a lower rate are safe: no rejection.
        assert!(!run(0.05, 2.4).rejected());
    }
}
