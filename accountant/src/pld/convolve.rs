//! Composition of discretized PLDs by FFT convolution.
//!
//! Composing mechanisms adds their privacy losses, so the composed PLD is the convolution of
//! the PLDs (Koskela et al. 2020; Meiser & Mohammadi 2018). Self-composition T times raises
//! the spectrum to the T-th power over a window of the sum chosen by a Chernoff bound, as in
//! dp_accounting: the mass outside the window (at most `tail`) is charged to +∞.
//!
//! Floating point: FFT outputs are clamped to ≥ 0, and any shortfall of the total mass
//! against its exact value is charged to +∞ (both pessimistic). The remaining rounding,
//! at the level of 1e-16 per grid point, is not bounded rigorously — as in dp_accounting —
//! but measured in this module's tests and covered by the relative margin of every δ.

use super::pmf::DiscretePld;
use crate::error::{AccountantError, Result};
use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;
use std::sync::{Mutex, OnceLock};

/// The smallest 2ᵃ3ᵇ5ᶜ ≥ n (fast lengths for the FFT).
pub(crate) fn next_fast_len(n: usize) -> usize {
    let mut best = n.next_power_of_two();
    let mut p5 = 1usize;
    while p5 < best {
        let mut p35 = p5;
        while p35 < best {
            let mut candidate = p35;
            while candidate < n {
                candidate *= 2;
            }
            best = best.min(candidate);
            p35 *= 3;
        }
        p5 *= 5;
    }
    best
}

/// One planner for the process: plans (twiddle tables) are cached by length and reused.
fn planner() -> std::sync::MutexGuard<'static, RealFftPlanner<f64>> {
    static PLANNER: OnceLock<Mutex<RealFftPlanner<f64>>> = OnceLock::new();
    let mutex = PLANNER.get_or_init(|| Mutex::new(RealFftPlanner::new()));
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spectrum(values: &[f64], len: usize) -> Vec<Complex64> {
    let fft = planner().plan_fft_forward(len);
    let mut input = vec![0.0; len];
    input[..values.len()].copy_from_slice(values);
    let mut output = fft.make_output_vec();
    // Lengths match by construction, so the FFT cannot fail.
    let _ = fft.process(&mut input, &mut output);
    output
}

fn inverse(mut spectrum: Vec<Complex64>, len: usize) -> Vec<f64> {
    let fft = planner().plan_fft_inverse(len);
    spectrum[0].im = 0.0;
    if len.is_multiple_of(2) {
        if let Some(last) = spectrum.last_mut() {
            last.im = 0.0;
        }
    }
    let mut output = fft.make_output_vec();
    let _ = fft.process(&mut spectrum, &mut output);
    let scale = 1.0 / len as f64;
    output.iter_mut().for_each(|v| *v *= scale);
    output
}

fn check_size(needed: u128, limit: usize) -> Result<usize> {
    if needed > limit as u128 {
        return Err(AccountantError::GridTooLarge { needed, limit });
    }
    Ok(needed as usize)
}

/// The PLD of running `a` then `b`.
pub(crate) fn compose(
    a: &DiscretePld,
    b: &DiscretePld,
    tail: f64,
    limit: usize,
) -> Result<DiscretePld> {
    if a.probs.len() == 1 || b.probs.len() == 1 {
        return Ok(compose_with_point(a, b));
    }
    let n = check_size(a.probs.len() as u128 + b.probs.len() as u128 - 1, limit)?;
    let len = next_fast_len(n);
    let (sa, sb) = (spectrum(&a.probs, len), spectrum(&b.probs, len));
    let product: Vec<Complex64> = sa.iter().zip(&sb).map(|(x, y)| x * y).collect();
    let mut probs = inverse(product, len);
    probs.truncate(n);
    let finite_mass = (1.0 - a.infinity_mass) * (1.0 - b.infinity_mass);
    let mut out = DiscretePld {
        interval: a.interval,
        lower: a.lower + b.lower,
        probs,
        infinity_mass: a.infinity_mass + b.infinity_mass - a.infinity_mass * b.infinity_mass,
    };
    out.repair_mass(finite_mass);
    out.truncate_tails(tail);
    Ok(out)
}

/// Composition when one side has a single grid point: a shift and a scaling, exactly.
fn compose_with_point(a: &DiscretePld, b: &DiscretePld) -> DiscretePld {
    let (point, other) = if a.probs.len() == 1 { (a, b) } else { (b, a) };
    DiscretePld {
        interval: other.interval,
        lower: other.lower + point.lower,
        probs: other.probs.iter().map(|p| p * point.probs[0]).collect(),
        infinity_mass: a.infinity_mass + b.infinity_mass - a.infinity_mass * b.infinity_mass,
    }
}

/// The PLD of running `p` `count` times.
pub(crate) fn self_compose(
    p: &DiscretePld,
    count: u64,
    tail: f64,
    limit: usize,
) -> Result<DiscretePld> {
    if count == 1 {
        return Ok(p.clone());
    }
    let n = p.probs.len();
    let full = (n as u128 - 1) * count as u128 + 1;
    let windowed = tail > 0.0;
    let (lo, hi) = if windowed {
        chernoff_window(&p.probs, count, tail, full)
    } else {
        (0u128, full - 1)
    };
    let width = check_size(hi - lo + 1, limit)?;
    let len = next_fast_len(width.max(n));
    let powered: Vec<Complex64> = spectrum(&p.probs, len)
        .into_iter()
        .map(|c| power(c, count))
        .collect();
    let values = inverse(powered, len);
    // The cyclic convolution holds index s of the sum at s mod len.
    let start = (lo % len as u128) as usize;
    let probs: Vec<f64> = values[start..]
        .iter()
        .chain(&values[..start])
        .take(width)
        .copied()
        .collect();
    let finite_mass = ((count as f64) * (-p.infinity_mass).ln_1p()).exp();
    let charged_tail = if windowed { tail } else { 0.0 };
    let mut out = DiscretePld {
        interval: p.interval,
        lower: p.lower * count as i64 + lo as i64,
        probs,
        infinity_mass: (1.0 - finite_mass + charged_tail).min(1.0),
    };
    out.repair_mass(finite_mass - charged_tail);
    Ok(out)
}

/// c^T by its polar form.
fn power(c: Complex64, count: u64) -> Complex64 {
    let t = count as f64;
    let magnitude = c.norm();
    if magnitude == 0.0 {
        return Complex64::new(0.0, 0.0);
    }
    let log_power = t * magnitude.ln();
    if log_power < -745.0 {
        return Complex64::new(0.0, 0.0);
    }
    let (sin, cos) = (c.arg() * t).sin_cos();
    let r = log_power.exp();
    Complex64::new(r * cos, r * sin)
}

/// Indices [lo, hi] of the T-fold sum outside which the mass is ≤ `tail` (Chernoff bound,
/// P(S ≥ u) ≤ exp(T·log M(λ) − λu) for λ > 0 and likewise below for λ < 0).
fn chernoff_window(probs: &[f64], count: u64, tail: f64, full: u128) -> (u128, u128) {
    let n = probs.len();
    let t = count as f64;
    let mean: f64 = probs
        .iter()
        .enumerate()
        .map(|(i, p)| i as f64 * p)
        .sum::<f64>();
    let total: f64 = probs.iter().sum();
    let mean = mean / total.max(f64::MIN_POSITIVE);
    let variance: f64 = probs
        .iter()
        .enumerate()
        .map(|(i, p)| (i as f64 - mean).powi(2) * p)
        .sum::<f64>()
        .max(1e-12);
    let log_two_over_tail = (2.0 / tail).ln();
    // λ near the Gaussian optimum, and a geometric sweep up to where e^{λn} stays finite
    // (heavy-tailed PLDs, e.g. small q and σ, need large λ).
    let optimal = (2.0 * log_two_over_tail / (t * variance)).sqrt();
    let cap = 700.0 / n as f64;
    let sweep = (0..=24).map(|k| cap * 0.55f64.powi(k));
    let near = (-6..=6).map(|k| optimal * 2f64.powf(f64::from(k) / 2.0));
    let (mut upper, mut lower) = ((full - 1) as f64, 0.0f64);
    for lambda in sweep.chain(near).map(|l| l.min(cap)) {
        for signed in [lambda, -lambda] {
            let bound = (t * log_mgf(probs, signed, mean) + log_two_over_tail) / signed;
            if !bound.is_finite() {
                continue;
            }
            if signed > 0.0 {
                upper = upper.min(bound.ceil());
            } else {
                lower = lower.max(bound.floor());
            }
        }
    }
    let hi = upper.clamp(0.0, (full - 1) as f64) as u128;
    let lo = lower.clamp(0.0, hi as f64) as u128;
    (lo, hi)
}

/// log Σᵢ pᵢ e^{λi}, shifted by `center` to stay in range.
fn log_mgf(probs: &[f64], lambda: f64, center: f64) -> f64 {
    let step = lambda.exp();
    let mut factor = (-lambda * center).exp();
    let mut sum = 0.0;
    for p in probs {
        sum += p * factor;
        factor *= step;
    }
    lambda * center + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    fn pld(probs: Vec<f64>) -> DiscretePld {
        DiscretePld {
            interval: 0.5,
            lower: -1,
            probs,
            infinity_mass: 0.0,
        }
    }

    #[test]
    fn fast_lengths_are_smooth_and_minimal() {
        assert_eq!(next_fast_len(1), 1);
        assert_eq!(next_fast_len(7), 8);
        assert_eq!(next_fast_len(11), 12);
        assert_eq!(next_fast_len(1000), 1000);
        assert_eq!(next_fast_len(1001), 1024);
    }

    #[test]
    fn composition_is_convolution() {
        let a = pld(vec![0.25, 0.75]);
        let b = pld(vec![0.5, 0.5]);
        let c = compose(&a, &b, 0.0, 1 << 20).unwrap();
        assert_eq!(c.lower, -2);
        let expected = [0.125, 0.5, 0.375];
        for (x, y) in c.probs.iter().zip(expected) {
            assert_relative_eq!(*x, y, epsilon = 1e-15);
        }
    }

    #[test]
    fn self_composition_matches_repeated_composition() {
        let a = pld(vec![0.1, 0.2, 0.3, 0.4]);
        let mut repeated = a.clone();
        for _ in 1..5 {
            repeated = compose(&repeated, &a, 0.0, 1 << 20).unwrap();
        }
        let direct = self_compose(&a, 5, 0.0, 1 << 20).unwrap();
        assert_eq!(direct.lower, repeated.lower);
        for (x, y) in direct.probs.iter().zip(&repeated.probs) {
            assert_relative_eq!(*x, *y, epsilon = 1e-14);
        }
    }

    fn direct_convolution(a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; a.len() + b.len() - 1];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                out[i + j] += x * y;
            }
        }
        out
    }

    #[test]
    fn fft_rounding_is_far_below_the_delta_margin() {
        // A realistic single-step PLD (q = 0.05, σ = 1, Δ = 0.02), composed 32 times by FFT
        // and by direct summation: the ℓ₁ difference bounds the error of every δ.
        let pair = super::super::discretize::LossPair::PoissonRemove {
            q: 0.05,
            sigma: 1.0,
        };
        let single = super::super::discretize::discretize(pair, 0.02, 1 << 20).unwrap();
        let count = 32;
        let fft = self_compose(&single, count, 0.0, 1 << 24).unwrap();
        let mut direct = single.probs.clone();
        for _ in 1..count {
            direct = direct_convolution(&direct, &single.probs);
        }
        let l1: f64 = fft
            .probs
            .iter()
            .zip(&direct)
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert!(l1 < 1e-13, "ℓ₁ error {l1:e}");
        // The Chernoff window loses at most the charged tail.
        let windowed = self_compose(&single, count, 1e-15, 1 << 24).unwrap();
        let offset = (windowed.lower - fft.lower) as usize;
        let l1: f64 = windowed
            .probs
            .iter()
            .zip(&direct[offset..])
            .map(|(x, y)| (x - y).abs())
            .sum();
        assert!(l1 < 1e-13 + 1e-15, "windowed ℓ₁ error {l1:e}");
        assert!(windowed.probs.len() < fft.probs.len());
    }

    #[test]
    fn chernoff_window_keeps_the_bulk() {
        let a = pld(vec![0.3, 0.4, 0.3]);
        let count = 10_000u64;
        let full = 2 * count as u128 + 1;
        let (lo, hi) = chernoff_window(&a.probs, count, 1e-15, full);
        // Mean 10000, sd √(0.6·10⁴) ≈ 77: the window must cover ±5 sd and be far from full.
        assert!(lo < 10_000 - 5 * 77 && hi > 10_000 + 5 * 77, "{lo} {hi}");
        assert!(hi - lo < full / 4);
    }
}
