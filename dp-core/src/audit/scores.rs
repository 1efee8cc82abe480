//! Canary scores from what a run releases.

/// White-box scores, accumulated step by step from the released noisy gradient of the audit
/// block (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct Scores {
    sampling_rate: f64,
    sigma: f64,
    log_likelihood_ratio: Vec<f64>,
}

impl Scores {
    /// For `count` canaries under Poisson sampling at `sampling_rate`, with noise std
    /// `noise_ratio` times a canary's clipped norm (σ for add-or-remove-one, 2σ for
    /// replace-one).
    pub fn new(count: usize, sampling_rate: f64, noise_ratio: f64) -> Self {
        Self {
            sampling_rate,
            sigma: noise_ratio,
            log_likelihood_ratio: vec![0.0; count],
        }
    }

    /// Scores accumulated earlier ([`Self::white_box`], e.g. from a checkpoint), to go on
    /// with the same `sampling_rate` and `noise_ratio`.
    pub fn restore(sampling_rate: f64, noise_ratio: f64, log_likelihood_ratio: Vec<f64>) -> Self {
        Self {
            sampling_rate,
            sigma: noise_ratio,
            log_likelihood_ratio,
        }
    }

    /// Adds one step: `released` is the block's noisy gradient (flattened, one value per
    /// canary), `scale` = expected batch size / (noise std) turns it into observations o.
    pub fn observe(&mut self, released: &[f32], scale: f64) {
        let (q, s) = (self.sampling_rate, self.sigma);
        let (ln_q, ln_1mq) = (q.ln(), (-q).ln_1p());
        for (llr, g) in self.log_likelihood_ratio.iter_mut().zip(released) {
            let o = *g as f64 * scale;
            // ln(1 − q + q·eˣ) as ln(e^{ln(1−q)} + e^{ln q + x}): finite for any x.
            let x = ln_q + o / s - 0.5 / (s * s);
            let (hi, lo) = if x > ln_1mq { (x, ln_1mq) } else { (ln_1mq, x) };
            *llr += if lo == f64::NEG_INFINITY {
                hi
            } else {
                hi + (lo - hi).exp().ln_1p()
            };
        }
    }

    /// The log-likelihood ratio of each canary so far.
    pub fn white_box(&self) -> &[f64] {
        &self.log_likelihood_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_at_the_canary_mean_raises_the_ratio_and_zero_lowers_it() {
        // o = 1/σ: ln(1 − q + q·e^{1/(2σ²)}) > 0; o = 0: ln(1 − q + q·e^{−1/(2σ²)}) < 0.
        let (q, sigma) = (0.1, 2.0);
        let mut s = Scores::new(2, q, sigma);
        s.observe(&[1.0 / sigma as f32, 0.0], 1.0);
        let want_in = (1.0 - q + q * (0.125f64).exp()).ln();
        let want_out = (1.0 - q + q * (-0.125f64).exp()).ln();
        assert!((s.white_box()[0] - want_in).abs() < 1e-7);
        assert!((s.white_box()[1] - want_out).abs() < 1e-12);
    }

    #[test]
    fn a_huge_observation_stays_finite() {
        // σ = 0.01: o/σ ≈ 1e6 would overflow exp.
        let mut s = Scores::new(1, 0.5, 0.01);
        s.observe(&[1e4], 1.0);
        let x = 0.5f64.ln() + 1e6 - 0.5 / 1e-4;
        assert!((s.white_box()[0] - x).abs() < 1e-6 * x.abs());
    }
}
