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
//!
//! Between the norms and the sums (which need the clipping factors of all layers), a layer
//! keeps only the smaller of what the sum needs: P, or g with a way to rebuild a.

use crate::error::{DpError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// How much larger than a layer's activations (R·(d + o) per example) its explicit
/// per-example gradients (d·o) may be before the Gram-matrix route is taken to save memory.
const EXPLICIT_MEMORY_FACTOR: usize = 2;

/// Whether to take the Gram-matrix route, for R rows per example, d inputs and o outputs per
/// group.
///
/// Time, per example: the ghost norm costs R²(d + o); its book-keeping sum then costs R·d·o,
/// as much as forming P, which the explicit route does once for both the norm and the sum
/// (plus d·o to weight and add). So the ghost route is faster iff R²(d + o) < d·o. Memory:
/// the explicit route keeps P (d·o per example) until the clipping factors are known, the
/// ghost route only g and the input. The ghost route is taken when it is faster, or when P
/// would exceed [`EXPLICIT_MEMORY_FACTOR`] times the activations.
pub(crate) fn use_ghost_norm(r: usize, d: usize, o: usize) -> bool {
    r * r * (d + o) < d * o || d * o > EXPLICIT_MEMORY_FACTOR * r * (d + o)
}

/// Rebuilds the activations `[E, G, R, d]` (e.g. im2col of a kept input).
pub(crate) type Rebuild<B> = Box<dyn Fn() -> Result<Tensor<B, 4>>>;

/// Where the weight gradient of a layer is available from.
enum Weight<B: Backend> {
    /// The activations `[E, G, R, d]`; per-example gradients not formed.
    Activations(Tensor<B, 4>),
    /// The per-example gradients P `[E, G, o, d]`.
    Explicit(Tensor<B, 4>),
    /// Activations dropped after the norms; rebuilt for the sum.
    Dropped,
}

/// Activations (or per-example weight gradients) and output gradients of one layer, grouped
/// by example.
pub(crate) struct Dense<B: Backend> {
    weight: Weight<B>,
    /// `[E, G, o, R]`; dropped when only P is needed.
    g: Option<Tensor<B, 4>>,
    /// Σ_r g per example `[E, G·o]`, kept once g may be dropped.
    bias: Option<Tensor<B, 2>>,
    rebuild: Option<Rebuild<B>>,
    /// (E, G, R, d, o).
    dims: (usize, usize, usize, usize, usize),
    device: B::Device,
}

fn missing(what: &str) -> DpError {
    DpError::Shape(format!("per-example data already released: {what}"))
}

impl<B: Backend> Dense<B> {
    /// From activations `[E, G, R, d]` and output gradients `[E, G, o, R]`.
    pub fn new(a: Tensor<B, 4>, g: Tensor<B, 4>) -> Self {
        let [e, groups, r, d] = a.dims();
        let o = g.dims()[2];
        let device = g.device();
        Self {
            weight: Weight::Activations(a),
            g: Some(g),
            bias: None,
            rebuild: None,
            dims: (e, groups, r, d, o),
            device,
        }
    }

    /// Like [`Dense::new`], with a way to rebuild the activations after [`Dense::compact`].
    pub fn rebuildable(a: Tensor<B, 4>, g: Tensor<B, 4>, rebuild: Rebuild<B>) -> Self {
        Self {
            rebuild: Some(rebuild),
            ..Self::new(a, g)
        }
    }

    /// From per-example weight gradients `[E, G, o, d]` and output gradients `[E, G, o, R]`.
    pub fn from_explicit(p: Tensor<B, 4>, g: Tensor<B, 4>) -> Self {
        let [e, groups, o, d] = p.dims();
        let r = g.dims()[3];
        let device = g.device();
        Self {
            weight: Weight::Explicit(p),
            g: Some(g),
            bias: None,
            rebuild: None,
            dims: (e, groups, r, d, o),
            device,
        }
    }

    fn g_ref(&self) -> Result<&Tensor<B, 4>> {
        self.g.as_ref().ok_or_else(|| missing("output gradients"))
    }

    /// Output gradients `[E, G, o, R]`.
    pub fn g(&self) -> Result<Tensor<B, 4>> {
        self.g_ref().cloned()
    }

    pub fn examples(&self) -> usize {
        self.dims.0
    }

    pub fn device(&self) -> B::Device {
        self.device.clone()
    }

    /// Whether the per-example gradients P are formed.
    pub fn has_per_example_weight(&self) -> bool {
        matches!(self.weight, Weight::Explicit(_))
    }

    /// P = g·a per example, `[E, G, o, d]`; after this the activations are dropped.
    pub fn per_example_weight(&mut self) -> Result<Tensor<B, 4>> {
        let p = match &self.weight {
            Weight::Explicit(p) => return Ok(p.clone()),
            Weight::Activations(a) => self.g_ref()?.clone().matmul(a.clone()),
            Weight::Dropped => return Err(missing("activations")),
        };
        self.weight = Weight::Explicit(p.clone());
        Ok(p)
    }

    /// ‖Pₑ‖² over all groups: `[E]`.
    pub fn weight_norms_sq(&mut self) -> Result<Tensor<B, 1>> {
        let (e, _, r, d, o) = self.dims;
        let squares = match &self.weight {
            Weight::Activations(a) if use_ghost_norm(r, d, o) => {
                let g = self.g_ref()?;
                let aa = a.clone().matmul(a.clone().swap_dims(2, 3));
                let gg = g.clone().swap_dims(2, 3).matmul(g.clone());
                aa * gg
            }
            _ => self.per_example_weight()?.square(),
        };
        Ok(squares.reshape([e as i64, -1]).sum_dim(1).reshape([e]))
    }

    /// Σ_r g_r per example: `[E, G·o]`.
    pub fn per_example_bias(&self) -> Result<Tensor<B, 2>> {
        if let Some(b) = &self.bias {
            return Ok(b.clone());
        }
        let (e, groups, _, _, o) = self.dims;
        Ok(self.g_ref()?.clone().sum_dim(3).reshape([e, groups * o]))
    }

    /// ‖Σ_r g_r‖² per example: `[E]`.
    pub fn bias_norms_sq(&self) -> Result<Tensor<B, 1>> {
        let e = self.examples();
        Ok(self.per_example_bias()?.square().sum_dim(1).reshape([e]))
    }

    /// Keeps only what the sums need: P (dropping g), or g and a way to rebuild a.
    pub fn compact(&mut self) -> Result<()> {
        self.bias = Some(self.per_example_bias()?);
        match self.weight {
            Weight::Explicit(_) => self.g = None,
            Weight::Activations(_) if self.rebuild.is_some() => self.weight = Weight::Dropped,
            _ => {}
        }
        Ok(())
    }

    /// Σₑ scaleₑ Pₑ: `[G, o, d]`.
    pub fn weight_sum(&self, scale: Tensor<B, 1>) -> Result<Tensor<B, 3>> {
        let (e, groups, r, d, o) = self.dims;
        let a = match &self.weight {
            Weight::Explicit(p) => {
                // One matrix product [1, E]·[E, G·o·d] instead of a reduction over dim 0.
                let flat = p.clone().reshape([e, groups * o * d]);
                return Ok(scale.reshape([1, e]).matmul(flat).reshape([groups, o, d]));
            }
            Weight::Activations(a) => a.clone(),
            Weight::Dropped => (self
                .rebuild
                .as_ref()
                .ok_or_else(|| missing("activations"))?)()?,
        };
        let g = (self.g_ref()?.clone() * scale.reshape([e, 1, 1, 1]))
            .permute([1, 2, 0, 3])
            .reshape([groups, o, e * r]);
        let a = if groups == 1 {
            a.reshape([1, e * r, d])
        } else {
            a.swap_dims(0, 1).reshape([groups, e * r, d])
        };
        Ok(g.matmul(a))
    }

    /// Σₑ scaleₑ Σ_r g_r: `[G·o]`.
    pub fn bias_sum(&self, scale: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let e = self.examples();
        Ok(scale
            .reshape([1, e])
            .matmul(self.per_example_bias()?)
            .reshape([-1]))
    }

    /// ‖P_{e,c}‖² per example and output channel: `[E, G·o]`.
    pub fn per_channel_sq(&mut self) -> Result<Tensor<B, 2>> {
        let (e, groups, r, d, o) = self.dims;
        let sq = match &self.weight {
            Weight::Activations(a) if use_ghost_norm(r, d, o) => {
                // g_cᵀ (a aᵀ) g_c for every channel c.
                let g = self.g_ref()?;
                let gram = a.clone().matmul(a.clone().swap_dims(2, 3));
                (g.clone().matmul(gram) * g.clone()).sum_dim(3)
            }
            _ => self.per_example_weight()?.square().sum_dim(3),
        };
        Ok(sq.reshape([e, groups * o]))
    }

    /// Mean of P_{e,c} over its d inputs: `[E, G·o]`.
    pub fn per_channel_mean(&self) -> Result<Tensor<B, 2>> {
        let (e, groups, _, d, o) = self.dims;
        let mean = match &self.weight {
            Weight::Explicit(p) => p.clone().mean_dim(3),
            // Σ_j P_cj = Σ_t g_tc (Σ_j a_tj): row sums of a.
            Weight::Activations(a) => self
                .g_ref()?
                .clone()
                .matmul(a.clone().sum_dim(3))
                .div_scalar(d as f64),
            Weight::Dropped => return Err(missing("activations")),
        };
        Ok(mean.reshape([e, groups * o]))
    }

    /// u_c · P_{e,c} for per-channel vectors `u` `[G·o, d]`: `[E, G·o]` (forms P).
    pub fn per_channel_projection(&mut self, u: Tensor<B, 2>) -> Result<Tensor<B, 2>> {
        let (e, groups, _, d, o) = self.dims;
        // As flat rows times one shared row (fast on burn's CPU backend).
        let u = u.reshape([1, groups * o * d]);
        Ok(
            (self.per_example_weight()?.reshape([e, groups * o * d]) * u)
                .reshape([e, groups * o, d])
                .sum_dim(2)
                .reshape([e, groups * o]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    fn max_relative(a: Tensor<Flex, 1>, b: Tensor<Flex, 1>) -> f32 {
        let scale: f32 = b.clone().abs().max().into_scalar();
        let diff: f32 = (a - b).abs().max().into_scalar();
        diff / scale
    }

    /// The ghost norm and the book-keeping sum equal the explicit per-example gradients.
    #[test]
    fn ghost_and_explicit_routes_agree() {
        let device = Default::default();
        // (E, G, R, d, o): few rows (ghost is faster), and many rows with a wide layer (ghost
        // for memory).
        for (e, groups, r, d, o) in [(5, 1, 2, 40, 30), (4, 2, 9, 64, 48)] {
            assert!(use_ghost_norm(r, d, o), "{r} {d} {o}");
            let normal = Distribution::Normal(0.0, 1.0);
            let a = Tensor::<Flex, 4>::random([e, groups, r, d], normal, &device);
            let g = Tensor::<Flex, 4>::random([e, groups, o, r], normal, &device);
            let scale = Tensor::<Flex, 1>::random([e], Distribution::Uniform(0.1, 1.0), &device);
            let mut ghost = Dense::new(a.clone(), g.clone());
            let mut explicit = Dense::new(a, g);
            explicit.per_example_weight().unwrap();
            let norms = |d: &mut Dense<Flex>| d.weight_norms_sq().unwrap();
            assert!(max_relative(norms(&mut ghost), norms(&mut explicit)) < 1e-5);
            let sum = |d: &Dense<Flex>| d.weight_sum(scale.clone()).unwrap().reshape([-1]);
            assert!(max_relative(sum(&ghost), sum(&explicit)) < 1e-5);
        }
    }

    /// The route follows the cost model: explicit when forming P is cheaper than the Gram
    /// matrices and P is not much larger than the activations.
    #[test]
    fn route_follows_time_and_memory() {
        // Tramèr & Boneh's CNN, per example: conv1 (R = 196, d = 64, o = 16) and conv2
        // (R = 25, d = 256, o = 32) explicit; fc1 (R = 1, d = 512, o = 32) ghost.
        assert!(!use_ghost_norm(196, 64, 16));
        assert!(!use_ghost_norm(25, 256, 32));
        assert!(use_ghost_norm(1, 512, 32));
        // A wide late WRN layer (R = 64, d = 2304, o = 256): P is 3.6× the activations.
        assert!(use_ghost_norm(64, 2304, 256));
    }
}
