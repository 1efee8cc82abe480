//! The 2-D scattering transform (Mallat 2012; Bruna & Mallat 2013), the fixed feature extractor
//! of Oyallon & Mallat's ScatterNet that Tramèr & Boneh 2021 put in front of private linear
//! models and CNNs.
//!
//! With J scales and L orientations, each input channel x gives
//! `1 + J·L + L²·J(J−1)/2` coefficient maps at resolution 2^{−J}:
//! `x ⋆ φ_J`, `|x ⋆ ψ_{j1,θ1}| ⋆ φ_J`, and `||x ⋆ ψ_{j1,θ1}| ⋆ ψ_{j2,θ2}| ⋆ φ_J` for j2 > j1
//! (J = 2, L = 8: 81 maps of 7×7 for a 28×28 image). The computation follows Kymatio's
//! `Scattering2D` (v0.3.0; checked against it in `tests/tests/models.rs`): reflect padding to a
//! multiple of 2^J with room for the filters' support, convolutions as products in the Fourier
//! domain, subsampling by periodizing spectra, and a one-pixel border dropped at the end.
//!
//! # Privacy
//! The transform has no parameters and looks at one image at a time, so features computed from
//! the private images cost no privacy budget: it is part of the data's representation, and a
//! per-example normalization after it (GroupNorm) keeps examples apart.
//!
//! ```
//! use dp_models::scattering::Scattering2D;
//! let scattering = Scattering2D::new(2, 8, [1, 28, 28])?;
//! assert_eq!(scattering.output_shape(), [81, 7, 7]);
//! let image = vec![0.5f32; 28 * 28];
//! let features = scattering.transform_batch(&image)?;
//! // A constant image has no edges: only the low-pass map is non-zero.
//! assert!((features[0] - 0.5).abs() < 1e-3);
//! assert!(features[49..].iter().all(|v| v.abs() < 1e-6));
//! # Ok::<(), dp_models::ModelError>(())
//! ```

mod fft2;
mod filters;

use crate::error::Result;
use dp_core::DpError;
use fft2::Fft2;
use filters::{FilterBank, Spectrum};
use rayon::prelude::*;
use rustfft::num_complex::Complex64;

/// The scattering transform of images of one shape: filters and DFT plans built once.
#[derive(Clone, Debug)]
pub struct Scattering2D {
    scales: usize,
    orientations: usize,
    input: [usize; 3],
    /// Rows and columns added before the first row and column (the others after).
    pad: (usize, usize),
    bank: FilterBank,
    /// The DFT of the padded grid at resolution 2^{−r}, r = 0..=J.
    ffts: Vec<Fft2>,
}

impl Scattering2D {
    /// The transform with `scales` J and `orientations` L of images `[C, H, W]` (each channel
    /// transformed on its own). Needs J ≥ 1, L ≥ 1 and 2^J ≤ H, W.
    pub fn new(scales: usize, orientations: usize, input: [usize; 3]) -> Result<Self> {
        let [channels, rows, cols] = input;
        if scales == 0 || scales > 16 {
            return Err(DpError::invalid("scales", "J", scales, "between 1 and 16").into());
        }
        if orientations == 0 {
            return Err(DpError::invalid("orientations", "L", orientations, "≥ 1").into());
        }
        let step = 1usize << scales;
        if channels == 0 || rows < step || cols < step {
            return Err(DpError::Shape(format!(
                "the scattering transform with J = {scales} needs images of at least \
                 {step}×{step} pixels and one channel, got {input:?}"
            ))
            .into());
        }
        let padded = |n: usize| ((n + step) / step + 1) * step;
        let (padded_rows, padded_cols) = (padded(rows), padded(cols));
        Ok(Self {
            scales,
            orientations,
            input,
            pad: ((padded_rows - rows) / 2, (padded_cols - cols) / 2),
            bank: FilterBank::new(padded_rows, padded_cols, scales, orientations),
            ffts: (0..=scales)
                .map(|r| Fft2::new(padded_rows >> r, padded_cols >> r))
                .collect(),
        })
    }

    /// Coefficient maps per input channel: `1 + J·L + L²·J(J−1)/2`.
    pub fn coefficients_per_channel(scales: usize, orientations: usize) -> usize {
        1 + scales * orientations
            + orientations * orientations * scales * scales.saturating_sub(1) / 2
    }

    /// `[C, H, W]` of the images it takes.
    pub fn input_shape(&self) -> [usize; 3] {
        self.input
    }

    /// `[C·K, H/2^J, W/2^J]` of the features of one image (K coefficient maps per channel,
    /// channel c's maps at `c·K .. (c+1)·K`).
    pub fn output_shape(&self) -> [usize; 3] {
        Self::output_shape_for(self.scales, self.orientations, self.input)
    }

    /// [`Self::output_shape`] of a transform with these settings, without building its filters.
    pub fn output_shape_for(scales: usize, orientations: usize, input: [usize; 3]) -> [usize; 3] {
        let [channels, rows, cols] = input;
        [
            channels * Self::coefficients_per_channel(scales, orientations),
            rows >> scales,
            cols >> scales,
        ]
    }

    /// The features of `[N, C, H, W]` images (row-major, any N), `[N, C·K, H', W']`, computed
    /// in double precision on every core.
    pub fn transform_batch(&self, images: &[f32]) -> Result<Vec<f32>> {
        let per_image = self.input.iter().product::<usize>();
        if !images.len().is_multiple_of(per_image) {
            return Err(DpError::Shape(format!(
                "{} values are not a whole number of {:?} images",
                images.len(),
                self.input
            ))
            .into());
        }
        let per_output = self.output_shape().iter().product::<usize>();
        let mut out = vec![0f32; images.len() / per_image * per_output];
        out.par_chunks_mut(per_output)
            .zip(images.par_chunks(per_image))
            .for_each(|(features, image)| self.transform_image(image, features));
        Ok(out)
    }

    fn transform_image(&self, image: &[f32], out: &mut [f32]) {
        let [channels, rows, cols] = self.input;
        let per_channel_out = out.len() / channels;
        for (plane, features) in image
            .chunks(rows * cols)
            .zip(out.chunks_mut(per_channel_out))
        {
            self.transform_channel(plane, features);
        }
    }

    fn transform_channel(&self, plane: &[f32], out: &mut [f32]) {
        let [_, rows, cols] = self.input;
        let (padded_rows, padded_cols) = self.ffts[0].shape();
        let mut u0 = vec![Complex64::new(0.0, 0.0); padded_rows * padded_cols];
        for i in 0..padded_rows {
            let si = reflect(i as isize - self.pad.0 as isize, rows);
            for j in 0..padded_cols {
                let sj = reflect(j as isize - self.pad.1 as isize, cols);
                u0[i * padded_cols + j] = Complex64::new(f64::from(plane[si * cols + sj]), 0.0);
            }
        }
        self.ffts[0].forward(&mut u0);

        // Kymatio's order: S0, every S1, then every S2 (by first wavelet, then second).
        let map = out.len() / Self::coefficients_per_channel(self.scales, self.orientations);
        let (first, second) = out.split_at_mut(map * (1 + self.scales * self.orientations));
        let mut first_order: Vec<&mut [f32]> = first.chunks_mut(map).collect();
        let mut second_order = second.chunks_mut(map);

        self.low_pass_into(&u0, 0, &mut *first_order[0]);
        for (n1, psi1) in self.bank.wavelets.iter().enumerate() {
            let j1 = psi1.scale;
            let mut u1 = subsample(multiply(&u0, &psi1.levels[0]), &self.ffts[0], 1 << j1);
            modulus_in_fourier(&mut u1, &self.ffts[j1]);
            self.low_pass_into(&u1, j1, &mut *first_order[1 + n1]);
            for psi2 in self.bank.wavelets.iter().filter(|w| w.scale > j1) {
                let j2 = psi2.scale;
                let mut u2 = subsample(
                    multiply(&u1, &psi2.levels[j1]),
                    &self.ffts[j1],
                    1 << (j2 - j1),
                );
                modulus_in_fourier(&mut u2, &self.ffts[j2]);
                if let Some(target) = second_order.next() {
                    self.low_pass_into(&u2, j2, target);
                }
            }
        }
    }

    /// `spectrum` (at resolution 2^{−r}) times φ_J, subsampled to 2^{−J}, back in space, its
    /// real part without the one-pixel border, into `out`.
    fn low_pass_into(&self, spectrum: &[Complex64], r: usize, out: &mut [f32]) {
        let product = multiply(spectrum, &self.bank.low_pass[r]);
        let mut coarse = subsample(product, &self.ffts[r], 1 << (self.scales - r));
        let fft = &self.ffts[self.scales];
        fft.inverse(&mut coarse);
        let (rows, cols) = fft.shape();
        let out_cols = cols - 2;
        for i in 1..rows - 1 {
            for j in 1..cols - 1 {
                out[(i - 1) * out_cols + j - 1] = coarse[i * cols + j].re as f32;
            }
        }
    }
}

/// Element-wise product of a spectrum with a real filter of the same grid.
fn multiply(spectrum: &[Complex64], filter: &Spectrum) -> Vec<Complex64> {
    spectrum
        .iter()
        .zip(&filter.values)
        .map(|(s, f)| s * f)
        .collect()
}

/// The spectrum of the signal subsampled by `k` in space: the mean of the `k × k` aliases
/// (`out[a, b] = mean x[a + i·R/k, b + j·C/k]`) on a grid `k` times coarser than `fft`'s.
fn subsample(spectrum: Vec<Complex64>, fft: &Fft2, k: usize) -> Vec<Complex64> {
    if k == 1 {
        return spectrum;
    }
    let (rows, cols) = fft.shape();
    let (out_rows, out_cols) = (rows / k, cols / k);
    let mut out = vec![Complex64::new(0.0, 0.0); out_rows * out_cols];
    for i in 0..rows {
        for j in 0..cols {
            out[(i % out_rows) * out_cols + j % out_cols] += spectrum[i * cols + j];
        }
    }
    let scale = 1.0 / (k * k) as f64;
    for v in &mut out {
        *v *= scale;
    }
    out
}

/// Replaces a spectrum by the spectrum of its signal's modulus.
fn modulus_in_fourier(spectrum: &mut [Complex64], fft: &Fft2) {
    fft.inverse(spectrum);
    for v in spectrum.iter_mut() {
        *v = Complex64::new(v.norm(), 0.0);
    }
    fft.forward(spectrum);
}

/// The index of `i` in `0..n` after mirror reflection at both ends without repeating the edge
/// (numpy's `reflect`): …, 2, 1, 0, 1, 2, …, n−1, n−2, ….
fn reflect(i: isize, n: usize) -> usize {
    let period = 2 * (n as isize - 1);
    if period == 0 {
        return 0;
    }
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_matches_numpy_reflect_padding() {
        // numpy.pad([0, 1, 2, 3], 3, mode="reflect") = [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
        let padded: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(padded, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn shapes_and_bad_configurations() {
        let s = Scattering2D::new(2, 8, [3, 32, 32]).unwrap();
        assert_eq!(s.output_shape(), [243, 8, 8]);
        assert_eq!(
            Scattering2D::coefficients_per_channel(3, 8),
            1 + 24 + 64 * 3
        );
        assert!(Scattering2D::new(0, 8, [1, 28, 28]).is_err());
        assert!(Scattering2D::new(2, 0, [1, 28, 28]).is_err());
        let small = Scattering2D::new(3, 8, [1, 7, 28]).unwrap_err().to_string();
        assert!(small.contains("at least 8×8"), "{small}");
        let ragged = s.transform_batch(&[0.0; 100]).unwrap_err().to_string();
        assert!(ragged.contains("whole number"), "{ragged}");
    }

    #[test]
    fn the_transform_is_translation_covariant_on_a_periodic_pattern() {
        // Features of a shifted image are close to the features of the image (the point of
        // the low-pass averaging): an edge moved by one pixel changes them little.
        let s = Scattering2D::new(2, 8, [1, 28, 28]).unwrap();
        let edge = |offset: usize| -> Vec<f32> {
            (0..28 * 28)
                .map(|k| if k % 28 >= 10 + offset { 1.0 } else { 0.0 })
                .collect()
        };
        let (a, b) = (
            s.transform_batch(&edge(0)).unwrap(),
            s.transform_batch(&edge(1)).unwrap(),
        );
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
        assert!(
            norm(&diff) < 0.5 * norm(&a),
            "{} vs {}",
            norm(&diff),
            norm(&a)
        );
    }
}
