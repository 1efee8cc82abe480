//! 2-D complex DFTs of small row-major grids, by rustfft along rows then along columns.

use rustfft::num_complex::Complex64;
use rustfft::{Fft, FftPlanner};
use std::sync::Arc;

/// Forward and inverse DFTs of `rows × cols` grids. The inverse is normalized (divided by
/// `rows·cols`), as numpy's `ifft2`.
#[derive(Clone)]
pub struct Fft2 {
    rows: usize,
    cols: usize,
    forward_rows: Arc<dyn Fft<f64>>,
    forward_cols: Arc<dyn Fft<f64>>,
    inverse_rows: Arc<dyn Fft<f64>>,
    inverse_cols: Arc<dyn Fft<f64>>,
}

impl std::fmt::Debug for Fft2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft2({}×{})", self.rows, self.cols)
    }
}

impl Fft2 {
    /// Plans for `rows × cols` grids (both ≥ 1).
    pub fn new(rows: usize, cols: usize) -> Self {
        let mut planner = FftPlanner::new();
        Self {
            rows,
            cols,
            forward_rows: planner.plan_fft_forward(cols),
            forward_cols: planner.plan_fft_forward(rows),
            inverse_rows: planner.plan_fft_inverse(cols),
            inverse_cols: planner.plan_fft_inverse(rows),
        }
    }

    /// The grid's shape.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// In-place forward DFT of `grid` (`rows·cols` values).
    pub fn forward(&self, grid: &mut [Complex64]) {
        self.apply(grid, &*self.forward_rows, &*self.forward_cols);
    }

    /// In-place inverse DFT of `grid`, divided by `rows·cols`.
    pub fn inverse(&self, grid: &mut [Complex64]) {
        self.apply(grid, &*self.inverse_rows, &*self.inverse_cols);
        let scale = 1.0 / (self.rows * self.cols) as f64;
        for v in grid.iter_mut() {
            *v *= scale;
        }
    }

    fn apply(&self, grid: &mut [Complex64], along_rows: &dyn Fft<f64>, along_cols: &dyn Fft<f64>) {
        debug_assert_eq!(
            grid.len(),
            self.rows * self.cols,
            "grid of {:?}",
            self.shape()
        );
        // Every row at once (rustfft processes consecutive chunks of its length).
        along_rows.process(grid);
        let mut transposed = vec![Complex64::new(0.0, 0.0); grid.len()];
        transpose(grid, &mut transposed, self.rows, self.cols);
        along_cols.process(&mut transposed);
        transpose(&transposed, grid, self.cols, self.rows);
    }
}

/// `to[j·rows + i] = from[i·cols + j]`.
fn transpose(from: &[Complex64], to: &mut [Complex64], rows: usize, cols: usize) {
    for i in 0..rows {
        for j in 0..cols {
            to[j * rows + i] = from[i * cols + j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DFT by its definition, an independent oracle.
    fn naive(grid: &[Complex64], rows: usize, cols: usize) -> Vec<Complex64> {
        let mut out = vec![Complex64::new(0.0, 0.0); rows * cols];
        for (k, o) in out.iter_mut().enumerate() {
            let (u, v) = (k / cols, k % cols);
            for (idx, x) in grid.iter().enumerate() {
                let (i, j) = (idx / cols, idx % cols);
                let angle = -2.0
                    * std::f64::consts::PI
                    * ((u * i) as f64 / rows as f64 + (v * j) as f64 / cols as f64);
                *o += x * Complex64::from_polar(1.0, angle);
            }
        }
        out
    }

    #[test]
    fn forward_is_the_dft_and_inverse_undoes_it_on_a_non_square_grid() {
        let (rows, cols) = (6, 9);
        let grid: Vec<Complex64> = (0..rows * cols)
            .map(|k| Complex64::new((k as f64 * 0.37).sin(), (k as f64 * 0.11).cos()))
            .collect();
        let fft = Fft2::new(rows, cols);
        let mut spectrum = grid.clone();
        fft.forward(&mut spectrum);
        for (a, b) in spectrum.iter().zip(naive(&grid, rows, cols)) {
            assert!((a - b).norm() < 1e-10, "{a} vs {b}");
        }
        fft.inverse(&mut spectrum);
        for (a, b) in spectrum.iter().zip(&grid) {
            assert!((a - b).norm() < 1e-12);
        }
    }
}
