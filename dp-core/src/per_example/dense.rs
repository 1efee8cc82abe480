//! Per-example gradients of layers that are matrix products: y = a·W (+ b), per group.
//!
//! With activations a `[E, G, R, d]` and output gradients g `[E, G, o, R]` (E examples, G
//! groups, R rows per example: positions × views; g channel-major, as convolutions produce
//! it), the per-example weight gradient of a group is P = g·a (`[o, d]`, the transpose of
//! Σ_r a_rᵀ g_r). Its squared norm comes either from P itself (cost R·d·o per example) or from
//! the Gram matrices, ‖aᵀg‖² = ⟨a aᵀ, gᵀg⟩ (cost R²(d+o), the "ghost norm"), whichever is
//! cheaper (the mixed rule of Bu et al. 2022). The clipped sum Σₑ cₑPₑ is then either a
//! weighted sum of the P already computed, or one matrix product over all rows, (c ⊙ g)·a
//! (book-keeping, Bu et al. 2023), with no per-example matrix at all.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Whether the Gram-matrix route is cheaper than the explicit gradient, for R rows per
/// example, d inputs and o outputs per group.
pub(crate) fn use_ghost_norm(r: usize, d: usize, o: usize) -> bool {
    r * (d + o) < d * o
}

/// Where the weight gradient of a layer is available from.
enum Weight<B: Backend> {
    /// The activations `[E, G, R, d]`; per-example gradients not formed yet.
    Activations(Tensor<B, 4>),
    /// The per-example gradients P `[E, G, o, d]` (activations already dropped).
    Explicit(Tensor<B, 4>),
}

/// Activations (or per-example weight gradients) and output gradients of one layer, grouped
/// by example.
pub(crate) struct Dense<B: Backend> {
    weight: Weight<B>,
    /// `[E, G, o, R]`.
    g: Tensor<B, 4>,
    /// (E, G, R, d, o).
    dims: (usize, usize, usize, usize, usize),
}

impl<B: Backend> Dense<B> {
    /// From activations `[E, G, R, d]` and output gradients `[E, G, o, R]`.
    pub fn new(a: Tensor<B, 4>, g: Tensor<B, 4>) -> Self {
        let [e, groups, r, d] = a.dims();
        let o = g.dims()[2];
        Self {
            weight: Weight::Activations(a),
            g,
            dims: (e, groups, r, d, o),
        }
    }

    /// From per-example weight gradients `[E, G, o, d]` and output gradients `[E, G, o, R]`.
    pub fn from_explicit(p: Tensor<B, 4>, g: Tensor<B, 4>) -> Self {
        let [e, groups, o, d] = p.dims();
        let r = g.dims()[3];
        Self {
            weight: Weight::Explicit(p),
            g,
            dims: (e, groups, r, d, o),
        }
    }

    fn dims(&self) -> (usize, usize, usize, usize, usize) {
        self.dims
    }

    pub fn examples(&self) -> usize {
        self.dims.0
    }

    pub fn device(&self) -> B::Device {
        self.g.device()
    }

    /// P = g·a per example, `[E, G, o, d]`; after this the activations are dropped.
    pub fn per_example_weight(&mut self) -> Tensor<B, 4> {
        let p = match &self.weight {
            Weight::Explicit(p) => return p.clone(),
            Weight::Activations(a) => self.g.clone().matmul(a.clone()),
        };
        self.weight = Weight::Explicit(p.clone());
        p
    }

    /// ‖Pₑ‖² over all groups: `[E]`.
    pub fn weight_norms_sq(&mut self) -> Tensor<B, 1> {
        let (e, _, r, d, o) = self.dims();
        let squares = match &self.weight {
            Weight::Activations(a) if use_ghost_norm(r, d, o) => {
                let aa = a.clone().matmul(a.clone().swap_dims(2, 3));
                let gg = self.g.clone().swap_dims(2, 3).matmul(self.g.clone());
                aa * gg
            }
            _ => self.per_example_weight().square(),
        };
        squares.reshape([e as i64, -1]).sum_dim(1).reshape([e])
    }

    /// Σ_r g_r per example: `[E, G·o]`.
    pub fn per_example_bias(&self) -> Tensor<B, 2> {
        let (e, groups, _, _, o) = self.dims();
        self.g.clone().sum_dim(3).reshape([e, groups * o])
    }

    /// ‖Σ_r g_r‖² per example: `[E]`.
    pub fn bias_norms_sq(&self) -> Tensor<B, 1> {
        let e = self.examples();
        self.per_example_bias().square().sum_dim(1).reshape([e])
    }

    /// Σₑ scaleₑ Pₑ: `[G, o, d]`.
    pub fn weight_sum(&self, scale: Tensor<B, 1>) -> Tensor<B, 3> {
        let (e, groups, r, d, o) = self.dims();
        let a = match &self.weight {
            Weight::Explicit(p) => {
                return (p.clone() * scale.reshape([e, 1, 1, 1]))
                    .sum_dim(0)
                    .reshape([groups, o, d])
            }
            Weight::Activations(a) => a.clone(),
        };
        let g = (self.g.clone() * scale.reshape([e, 1, 1, 1]))
            .permute([1, 2, 0, 3])
            .reshape([groups, o, e * r]);
        let a = if groups == 1 {
            a.reshape([1, e * r, d])
        } else {
            a.swap_dims(0, 1).reshape([groups, e * r, d])
        };
        g.matmul(a)
    }

    /// Σₑ scaleₑ Σ_r g_r: `[G·o]`.
    pub fn bias_sum(&self, scale: Tensor<B, 1>) -> Tensor<B, 1> {
        let e = self.examples();
        (self.per_example_bias() * scale.reshape([e, 1]))
            .sum_dim(0)
            .reshape([-1])
    }
}
