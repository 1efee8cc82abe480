//! The Morlet filter bank of the 2-D scattering transform, in the Fourier domain, at every
//! resolution the transform uses.
//!
//! The design is Kymatio's (`kymatio.scattering2d.filter_bank`, v0.3.0), which Tramèr & Boneh
//! 2021 used: wavelets ψ_{j,θ} are Morlet filters with envelope width σ = 0.8·2^j, central
//! frequency ξ = (3/4)·π/2^j, slant 4/L, at angle (⌊L/2 − 1⌋ − θ)·π/L; the low-pass φ_J is a
//! Gaussian of width 0.8·2^{J−1}. Each is built in space as a sum over 5 × 5 periods (so it is
//! periodic on the padded grid), transformed, and its real part kept (the filters are even, so
//! the imaginary part is rounding noise). A filter applied at resolution 2^{−r} is its
//! periodization: the middle frequencies zeroed, then the spectrum folded onto the coarser grid.

use rustfft::num_complex::Complex64;
use std::f64::consts::PI;

/// Kymatio normalizes a Gabor filter by 2·3.1415·σ²/slant, with π truncated to 3.1415; the
/// same constant keeps our coefficients equal to theirs (it scales every filter by 1.00003).
#[allow(clippy::approx_constant)] // deliberately Kymatio's truncated value
const KYMATIO_PI: f64 = 3.1415;

/// A real filter in the Fourier domain, row-major `[rows, cols]`.
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Values.
    pub values: Vec<f64>,
}

/// One wavelet ψ_{j,θ}, at resolutions 2^0 … (its `levels`, finest first).
#[derive(Clone, Debug)]
pub struct Wavelet {
    /// Scale j.
    pub scale: usize,
    /// The filter at resolution 2^{−r}, r = 0, 1, ….
    pub levels: Vec<Spectrum>,
}

/// The wavelets and the low-pass filter of a transform on a `rows × cols` (padded) grid.
#[derive(Clone, Debug)]
pub struct FilterBank {
    /// ψ_{j,θ}, ordered by scale then orientation (Kymatio's order).
    pub wavelets: Vec<Wavelet>,
    /// φ_J at resolutions 2^0 … 2^{−(J−1)}.
    pub low_pass: Vec<Spectrum>,
}

impl FilterBank {
    /// The bank for `scales` J and `orientations` L on a `rows × cols` grid (each a multiple
    /// of 2^J, which the caller ensures).
    pub fn new(rows: usize, cols: usize, scales: usize, orientations: usize) -> Self {
        let l = orientations as f64;
        let first_angle = (l - l / 2.0 - 1.0).trunc();
        let mut wavelets = Vec::with_capacity(scales * orientations);
        for j in 0..scales {
            let width = 0.8 * f64::powi(2.0, j as i32);
            let frequency = 0.75 * PI / f64::powi(2.0, j as i32);
            for theta in 0..orientations {
                let angle = (first_angle - theta as f64) * PI / l;
                let space = morlet(rows, cols, width, angle, frequency, 4.0 / l);
                let spectrum = real_spectrum(rows, cols, space);
                // Kymatio keeps the resolutions a wavelet is used at: ψ_j at r < min(j + 1,
                // max(J − 1, 1)).
                let kept = (j + 1).min(scales.saturating_sub(1).max(1));
                wavelets.push(Wavelet {
                    scale: j,
                    levels: (0..kept).map(|r| periodize(&spectrum, r)).collect(),
                });
            }
        }
        let width = 0.8 * f64::powi(2.0, scales as i32 - 1);
        let space = gabor(rows, cols, width, 0.0, 0.0, 1.0);
        let spectrum = real_spectrum(rows, cols, space);
        let low_pass = (0..scales).map(|r| periodize(&spectrum, r)).collect();
        Self { wavelets, low_pass }
    }
}

/// A Gabor filter g_σ(u)·e^{i ξ·u} on a periodic `rows × cols` grid: an elliptical Gaussian
/// envelope (axis ratio `slant`, rotated by `angle`) times a plane wave of frequency `frequency`
/// along `angle`, summed over 5 × 5 periods, divided by 2πσ²/slant (with Kymatio's π).
fn gabor(
    rows: usize,
    cols: usize,
    width: f64,
    angle: f64,
    frequency: f64,
    slant: f64,
) -> Vec<Complex64> {
    let (c, s) = (angle.cos(), angle.sin());
    // The quadratic form R·diag(1, slant²)·Rᵀ / (2σ²).
    let d = slant * slant;
    let scale = 1.0 / (2.0 * width * width);
    let a = (c * c + d * s * s) * scale;
    let b = (c * s - d * s * c) * scale; // the off-diagonal term, counted twice below
    let e = (s * s + d * c * c) * scale;
    let (fx, fy) = (frequency * c, frequency * s);
    let norm = 2.0 * KYMATIO_PI * width * width / slant;
    let mut out = vec![Complex64::new(0.0, 0.0); rows * cols];
    for period_x in -2i64..=2 {
        for period_y in -2i64..=2 {
            for i in 0..rows {
                let x = (i as i64 + period_x * rows as i64) as f64;
                for j in 0..cols {
                    let y = (j as i64 + period_y * cols as i64) as f64;
                    let envelope = -(a * x * x + 2.0 * b * x * y + e * y * y);
                    let phase = x * fx + y * fy;
                    out[i * cols + j] += Complex64::from_polar(envelope.exp(), phase);
                }
            }
        }
    }
    for v in &mut out {
        *v /= norm;
    }
    out
}

/// A Morlet wavelet: the Gabor filter minus its envelope scaled so the sum is exactly zero
/// (no response to a constant image).
fn morlet(
    rows: usize,
    cols: usize,
    width: f64,
    angle: f64,
    frequency: f64,
    slant: f64,
) -> Vec<Complex64> {
    let wave = gabor(rows, cols, width, angle, frequency, slant);
    let envelope = gabor(rows, cols, width, angle, 0.0, slant);
    let k = wave.iter().sum::<Complex64>() / envelope.iter().sum::<Complex64>();
    wave.iter().zip(&envelope).map(|(w, g)| w - k * g).collect()
}

/// The real part of the 2-D DFT of `space`.
fn real_spectrum(rows: usize, cols: usize, mut space: Vec<Complex64>) -> Spectrum {
    super::fft2::Fft2::new(rows, cols).forward(&mut space);
    Spectrum {
        rows,
        cols,
        values: space.iter().map(|v| v.re).collect(),
    }
}

/// The filter at resolution 2^{−r}: the frequencies a subsampling by 2^r would alias (the
/// middle band of each axis) are zeroed, then the spectrum is folded (summed) onto the
/// `rows/2^r × cols/2^r` grid.
fn periodize(filter: &Spectrum, r: usize) -> Spectrum {
    let k = 1usize << r;
    let (rows, cols) = (filter.rows / k, filter.cols / k);
    let band = |n: usize| {
        let start = (n as f64 * f64::powi(2.0, -(r as i32) - 1)) as usize;
        let len = (n as f64 * (1.0 - f64::powi(2.0, -(r as i32)))) as usize;
        start..start + len
    };
    let (band_rows, band_cols) = (band(filter.rows), band(filter.cols));
    let mut values = vec![0.0; rows * cols];
    for i in 0..filter.rows {
        if band_rows.contains(&i) {
            continue;
        }
        for j in 0..filter.cols {
            if band_cols.contains(&j) {
                continue;
            }
            values[(i % rows) * cols + j % cols] += filter.values[i * filter.cols + j];
        }
    }
    Spectrum { rows, cols, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wavelets_have_zero_mean_and_the_low_pass_unit_gain() {
        let bank = FilterBank::new(36, 36, 2, 8);
        assert_eq!(bank.wavelets.len(), 16);
        for w in &bank.wavelets {
            // The DC coefficient is the filter's sum in space: zero for a Morlet wavelet.
            assert!(
                w.levels[0].values[0].abs() < 1e-9,
                "{}",
                w.levels[0].values[0]
            );
        }
        // φ's DC gain is 1 up to Kymatio's truncated π.
        let dc = bank.low_pass[0].values[0];
        assert!((dc - PI / KYMATIO_PI).abs() < 1e-6, "{dc}");
        assert_eq!(bank.low_pass[1].rows, 18);
    }

    #[test]
    fn periodizing_keeps_the_sum_of_the_unmasked_spectrum() {
        let filter = Spectrum {
            rows: 4,
            cols: 4,
            values: (0..16).map(|v| v as f64).collect(),
        };
        let half = periodize(&filter, 1);
        // Rows and columns 1..3 are masked; the corners fold onto a 2×2 grid.
        assert_eq!(half.values, vec![0.0, 3.0, 12.0, 15.0]);
    }
}
