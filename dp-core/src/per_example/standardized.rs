//! Per-example gradients of weight-standardized convolutions, through the standardization.
//!
//! Per output channel c with raw weights w_c (d of them), u_c = w_c − mean(w_c),
//! r_c = (‖u_c‖² + ε)^{−1/2} and gain γ_c, the layer uses w'_c = γ_c r_c u_c. If G'_c is an
//! example's gradient with respect to w'_c, its gradient with respect to the raw weight is
//! (differentiating the centering and the scale)
//!
//! ∂L/∂w_c = γ_c r_c h_c,   h_c = G'_c − mean(G'_c)·1 − r_c² (u_c·G'_c) u_c,
//!
//! and with respect to the gain ∂L/∂γ_c = r_c (u_c·G'_c). Since u_c ⊥ 1,
//! ‖h_c‖² = ‖G'_c‖² − d·mean(G'_c)² + (u_c·G'_c)² r_c² (r_c²‖u_c‖² − 2), so per-example norms
//! need three per-channel numbers: ‖G'_c‖² (explicitly or by ghost norm), mean(G'_c) (from the
//! row sums of the activations) and u_c·G'_c — which is Σ_t g_tc (y_tc − b_c)/(γ_c r_c), read
//! off the layer's own output y. Both the clipped sum of h and of the gain gradient are linear
//! in G', so they follow from the book-keeping sum Σₑ cₑ G'ₑ.

use super::dense::Dense;
use crate::error::Result;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// The standardization constants of one layer.
pub(crate) struct Standardization<B: Backend> {
    /// u = w − mean(w), `[C, d]`.
    centered: Tensor<B, 2>,
    /// r = (‖u‖² + ε)^{−1/2}, `[C, 1]`.
    inv_scale: Tensor<B, 2>,
    /// γ, `[C, 1]`.
    gain: Tensor<B, 2>,
    /// ‖u‖², `[C, 1]`.
    norm_sq: Tensor<B, 2>,
}

/// Per-example, per-channel statistics of G' `[E, C]`.
pub(crate) struct Stats<B: Backend> {
    sq: Tensor<B, 2>,
    mean: Tensor<B, 2>,
    projection: Tensor<B, 2>,
    /// One-element tensors, each positive where the Gram route's shortcuts may be inaccurate
    /// (see [`Standardization::stats`] and [`Standardization::weight_norms_sq`]). They are
    /// read with the norms, so deciding costs no read of its own.
    pub doubts: Vec<Tensor<B, 1>>,
}

/// Below this |γ_c r_c| the projections are not read off the output (dividing by it would
/// amplify rounding errors).
const MIN_OUTPUT_SCALE: f64 = 1e-12;

impl<B: Backend> Standardization<B> {
    pub fn new(raw_weight: Tensor<B, 4>, gain: Tensor<B, 1>, eps: f64) -> Self {
        let c = raw_weight.dims()[0];
        let flat = raw_weight.reshape([c as i64, -1]);
        let centered = flat.clone() - flat.mean_dim(1);
        let norm_sq = centered.clone().square().sum_dim(1);
        let inv_scale = norm_sq.clone().add_scalar(eps).sqrt().recip();
        Self {
            centered,
            inv_scale,
            gain: gain.reshape([c, 1]),
            norm_sq,
        }
    }

    /// The per-channel statistics of an example's G', with `output` the layer's output in the
    /// layout of `dense`'s g (`[E, G, o, R]`) and `bias` its bias. With the output (the Gram
    /// route) the projections u·G' are read off it, which is exact only if no γ_c r_c is
    /// near 0: a doubt records whether one is. Without it they come from the per-example
    /// gradients P, which this forms.
    pub fn stats(
        &self,
        dense: &mut Dense<B>,
        output: Option<Tensor<B, 4>>,
        bias: Option<Tensor<B, 1>>,
    ) -> Result<Stats<B>> {
        let e = dense.examples();
        let c = self.centered.dims()[0];
        let sq = dense.per_channel_sq()?;
        let mean = dense.per_channel_mean()?;
        let scale = (self.gain.clone() * self.inv_scale.clone()).reshape([c]);
        // y = γ r (a·u) + b: the projections come from the output unless some γr is 0.
        let mut doubts = Vec::new();
        let projection = match output {
            Some(y) => {
                let magnitude = scale.clone().abs();
                // Positive iff some |γr| < MIN_OUTPUT_SCALE; those channels divide by 1 here
                // and the caller recomputes the micro-batch without the output.
                doubts.push(magnitude.clone().min().neg().add_scalar(MIN_OUTPUT_SCALE));
                let divisor = scale.mask_fill(magnitude.lower_elem(MIN_OUTPUT_SCALE), 1.0);
                // Σ_r (y − b)·g = Σ_r y·g − b·Σ_r g, in [E, C] (broadcasting b over a
                // middle axis of y is slow on burn's CPU backend).
                let yg = (y * dense.g()?).sum_dim(3).reshape([e, c]);
                let yg = match bias {
                    Some(b) => yg - dense.per_example_bias()? * b.reshape([1, c]),
                    None => yg,
                };
                yg / divisor.reshape([1, c])
            }
            None => dense.per_channel_projection(self.centered.clone())?,
        };
        Ok(Stats {
            sq,
            mean,
            projection,
            doubts,
        })
    }

    /// ‖∂L/∂w‖² per example, `[E]`: from the per-example gradients P where they are formed
    /// (exact), otherwise by the closed form, which cancels badly where the standardization
    /// removes more than 99% of ‖G'‖² for some example and channel — a doubt records whether
    /// it does, and the caller then recomputes the micro-batch with P.
    pub fn weight_norms_sq(
        &self,
        stats: &mut Stats<B>,
        dense: &mut Dense<B>,
    ) -> Result<Tensor<B, 1>> {
        let [e, c] = stats.sq.dims();
        if dense.has_per_example_weight() {
            let scale = (self.gain.clone().reshape([1, c])
                * self.inv_scale.clone().reshape([1, c]))
            .square();
            return Ok((self.explicit_h_sq(dense)? * scale).sum_dim(1).reshape([e]));
        }
        let d = self.centered.dims()[1] as f64;
        let r = self.inv_scale.clone().reshape([1, c]);
        let r2 = r.clone().square();
        let h_sq = stats.sq.clone() - stats.mean.clone().square().mul_scalar(d)
            + stats.projection.clone().square()
                * r2.clone()
                * (r2.clone() * self.norm_sq.clone().reshape([1, c])).sub_scalar(2.0);
        let scale = (self.gain.clone().reshape([1, c]) * r).square();
        let kept = h_sq.clone() - stats.sq.clone().mul_scalar(0.01);
        // Positive iff some example and channel keeps less than 1% of ‖G'‖².
        stats.doubts.push(kept.min().neg());
        Ok((h_sq * scale).sum_dim(1).reshape([e]))
    }

    /// ‖h‖² per example and channel from the explicit per-example gradients, `[E, C]`.
    fn explicit_h_sq(&self, dense: &mut Dense<B>) -> Result<Tensor<B, 2>> {
        let p = dense.per_example_weight()?; // [E, G, o, d]
        let [e, groups, o, d] = p.dims();
        let c = groups * o;
        // Broadcasts only along the leading axis of flat rows, or of one value per row: the
        // two patterns burn's CPU backend runs fast.
        let u = self.centered.clone(); // [C, d]
        let projection = (p.clone().reshape([e, c * d]) * u.clone().reshape([1, c * d]))
            .reshape([e, c, d])
            .sum_dim(2); // [E, C, 1]
        let ur2 = (u * self.inv_scale.clone().square().reshape([c, 1]))
            .unsqueeze::<3>()
            .repeat_dim(0, e); // [E, C, d]
        let p = p.reshape([e, c, d]);
        let h = p.clone() - p.mean_dim(2) - ur2 * projection;
        Ok(h.square().sum_dim(2).reshape([e, c]))
    }

    /// ‖∂L/∂γ‖² per example, `[E]`.
    pub fn gain_norms_sq(&self, stats: &Stats<B>) -> Tensor<B, 1> {
        let [e, c] = stats.sq.dims();
        (stats.projection.clone() * self.inv_scale.clone().reshape([1, c]))
            .square()
            .sum_dim(1)
            .reshape([e])
    }

    /// (∂L/∂w, ∂L/∂γ) of a weighted sum S' `[C, d]` of gradients with respect to w'.
    pub fn raw_gradients(&self, s: Tensor<B, 2>) -> (Tensor<B, 2>, Tensor<B, 1>) {
        let projection = (s.clone() * self.centered.clone()).sum_dim(1); // [C, 1]
        let r = self.inv_scale.clone();
        let h = s.clone()
            - s.mean_dim(1)
            - self.centered.clone() * r.clone().square() * projection.clone();
        let dw = h * (self.gain.clone() * r.clone());
        let dgain = (projection * r).reshape([-1]);
        (dw, dgain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    /// Per-example gradients almost parallel to u (the standardization removes nearly all of
    /// them): the closed form would cancel; with P formed the explicit form is used, and it must
    /// equal the definition ‖h‖² with h = P − mean(P) − r²(u·P)u, computed here by hand.
    #[test]
    fn cancelling_gradients_fall_back_to_the_explicit_form() {
        let device = Default::default();
        let raw = vec![0.3f32, -1.2, 0.7, 2.0, 0.1, -0.4];
        let ws = Standardization::<Flex>::new(
            Tensor::from_data(TensorData::new(raw.clone(), [2, 1, 1, 3]), &device),
            Tensor::from_floats([1.5, 0.5], &device),
            1e-4,
        );
        // u per channel (centered raw weights), and P = 10·u + small noise per example.
        let u: Vec<Vec<f64>> = raw
            .chunks(3)
            .map(|w| {
                let m = w.iter().map(|v| *v as f64).sum::<f64>() / 3.0;
                w.iter().map(|v| *v as f64 - m).collect()
            })
            .collect();
        let noise = [0.01, -0.02, 0.015, 0.0, 0.02, -0.01];
        let mut p = Vec::new();
        for e in 0..2 {
            for c in 0..2 {
                for j in 0..3 {
                    p.push((10.0 * u[c][j] + noise[(e * 3 + j + c) % 6]) as f32);
                }
            }
        }
        let pt = Tensor::<Flex, 4>::from_data(TensorData::new(p.clone(), [2, 1, 2, 3]), &device);
        let g = Tensor::<Flex, 4>::zeros([2, 1, 2, 1], &device);
        let mut dense = Dense::from_explicit(pt.clone(), g);
        let flat = pt.reshape([2, 2, 3]);
        let mut stats = Stats {
            sq: flat.clone().square().sum_dim(2).reshape([2, 2]),
            mean: flat.clone().mean_dim(2).reshape([2, 2]),
            projection: (flat * ws.centered.clone().unsqueeze::<3>())
                .sum_dim(2)
                .reshape([2, 2]),
            doubts: Vec::new(),
        };
        let got: Vec<f32> = ws
            .weight_norms_sq(&mut stats, &mut dense)
            .unwrap()
            .into_data()
            .to_vec()
            .unwrap();
        let gains = [1.5f64, 0.5];
        for e in 0..2 {
            let mut total = 0.0;
            for c in 0..2 {
                let pc: Vec<f64> = (0..3).map(|j| p[(e * 2 + c) * 3 + j] as f64).collect();
                let norm_sq: f64 = u[c].iter().map(|v| v * v).sum();
                let r2 = 1.0 / (norm_sq + 1e-4);
                let mean = pc.iter().sum::<f64>() / 3.0;
                let proj: f64 = pc.iter().zip(&u[c]).map(|(a, b)| a * b).sum();
                let h: f64 = (0..3)
                    .map(|j| (pc[j] - mean - r2 * proj * u[c][j]).powi(2))
                    .sum();
                total += gains[c] * gains[c] * r2 * h;
            }
            let rel = ((got[e] as f64 - total) / total).abs();
            assert!(rel < 1e-3, "example {e}: {} vs {total}", got[e]);
        }
    }
}
