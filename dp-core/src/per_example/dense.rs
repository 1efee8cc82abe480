//! Per-example gradients of layers that are matrix products: y = a·W (+ b), per group.
//!
//! With activations a `[E, G, R, d]` and output gradients g `[E, G, R, o]` (E examples, G
//! groups, R rows per example: positions × views), the per-example weight gradient of group
//! gr is Σ_r a_rᵀ g_r. Its squared norm comes either from that explicit matrix (cost R·d·o per
//! example) or from the Gram matrices, ‖aᵀg‖² = ⟨a aᵀ, g gᵀ⟩ (cost R²(d+o), the "ghost norm"),
//! whichever is cheaper (the mixed rule of Bu et al. 2022). The clipped sum needs no
//! per-example matrix at all: Σₑ cₑ aₑᵀgₑ = aᵀ(c ⊙ g) over all rows (book-keeping, Bu et al.
//! 2023).

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Activations and output gradients of one layer, grouped by example.
pub(crate) struct Dense<B: Backend> {
    /// `[E, G, R, d]`.
    pub a: Tensor<B, 4>,
    /// `[E, G, R, o]`.
    pub g: Tensor<B, 4>,
}

impl<B: Backend> Dense<B> {
    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        let [e, groups, r, d] = self.a.dims();
        let o = self.g.dims()[3];
        (e, groups, r, d, o)
    }

    /// Whether the Gram-matrix route is cheaper than the explicit gradient.
    fn use_ghost_norm(&self) -> bool {
        let (_, _, r, d, o) = self.dims();
        r * (d + o) < d * o
    }

    /// Σ_r a_rᵀ g_r per example: `[E, G, d, o]`.
    pub fn per_example_weight(&self) -> Tensor<B, 4> {
        self.a.clone().swap_dims(2, 3).matmul(self.g.clone())
    }

    /// ‖Σ_r a_rᵀ g_r‖² per example, over all groups: `[E]`.
    pub fn weight_norms_sq(&self) -> Tensor<B, 1> {
        let e = self.dims().0;
        let per_example = if self.use_ghost_norm() {
            let aa = self.a.clone().matmul(self.a.clone().swap_dims(2, 3));
            let gg = self.g.clone().matmul(self.g.clone().swap_dims(2, 3));
            aa * gg
        } else {
            self.per_example_weight().square()
        };
        per_example.reshape([e as i64, -1]).sum_dim(1).reshape([e])
    }

    /// Σ_r g_r per example: `[E, G·o]`.
    pub fn per_example_bias(&self) -> Tensor<B, 2> {
        let (e, groups, _, _, o) = self.dims();
        self.g.clone().sum_dim(2).reshape([e, groups * o])
    }

    /// ‖Σ_r g_r‖² per example: `[E]`.
    pub fn bias_norms_sq(&self) -> Tensor<B, 1> {
        let e = self.dims().0;
        self.per_example_bias().square().sum_dim(1).reshape([e])
    }

    fn scaled_g(&self, scale: Tensor<B, 1>) -> Tensor<B, 4> {
        let e = self.dims().0;
        self.g.clone() * scale.reshape([e, 1, 1, 1])
    }

    /// Σₑ scaleₑ Σ_r a_rᵀ g_r: `[G, d, o]`, as one matrix product over all rows.
    pub fn weight_sum(&self, scale: Tensor<B, 1>) -> Tensor<B, 3> {
        let (e, groups, r, d, o) = self.dims();
        let a = self.a.clone().swap_dims(0, 1).reshape([groups, e * r, d]);
        let g = self
            .scaled_g(scale)
            .swap_dims(0, 1)
            .reshape([groups, e * r, o]);
        a.swap_dims(1, 2).matmul(g)
    }

    /// Σₑ scaleₑ Σ_r g_r: `[G·o]`.
    pub fn bias_sum(&self, scale: Tensor<B, 1>) -> Tensor<B, 1> {
        let (_, groups, _, _, o) = self.dims();
        self.scaled_g(scale)
            .sum_dim(0)
            .sum_dim(2)
            .reshape([groups * o])
    }
}
