//! Group normalization: per-example statistics, so it never mixes examples.

use crate::error::{DpError, Result};
use crate::per_example::LayerData;
use crate::tape::{layer_value, with_tape};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Configuration of a [`GroupNorm`].
#[derive(Clone, Debug, PartialEq)]
pub struct GroupNormConfig {
    /// Number of groups G (must divide the channels).
    pub num_groups: usize,
    /// Number of channels C.
    pub num_channels: usize,
    /// ε added to the variance.
    pub epsilon: f64,
    /// Whether to learn a per-channel scale and shift.
    pub affine: bool,
}

impl GroupNormConfig {
    /// Affine group norm with ε = 1e-5.
    pub fn new(num_groups: usize, num_channels: usize) -> Self {
        Self {
            num_groups,
            num_channels,
            epsilon: 1e-5,
            affine: true,
        }
    }

    /// Sets ε.
    pub fn with_epsilon(mut self, epsilon: f64) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Sets whether the layer is affine.
    pub fn with_affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }

    /// A layer with scale 1 and shift 0.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<GroupNorm<B>> {
        if self.num_groups == 0
            || self.num_channels == 0
            || !self.num_channels.is_multiple_of(self.num_groups)
        {
            return Err(DpError::invalid(
                "num_groups",
                "G",
                format!("{} (channels {})", self.num_groups, self.num_channels),
                "≥ 1 and a divisor of num_channels",
            ));
        }
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(DpError::invalid(
                "epsilon",
                "ε",
                self.epsilon,
                ">= 0 and finite",
            ));
        }
        let c = self.num_channels;
        Ok(GroupNorm {
            gamma: self
                .affine
                .then(|| Param::from_tensor(Tensor::ones([c], device))),
            beta: self
                .affine
                .then(|| Param::from_tensor(Tensor::zeros([c], device))),
            num_groups: self.num_groups,
            num_channels: c,
            epsilon: self.epsilon,
        })
    }
}

/// Normalizes each example's channels in groups (Wu & He 2018): statistics are computed per
/// example, so unlike BatchNorm it is compatible with per-example privacy.
#[derive(Module, Debug)]
pub struct GroupNorm<B: Backend> {
    /// Scale γ `[C]`.
    pub gamma: Option<Param<Tensor<B, 1>>>,
    /// Shift β `[C]`.
    pub beta: Option<Param<Tensor<B, 1>>>,
    /// G.
    pub num_groups: usize,
    /// C.
    pub num_channels: usize,
    /// ε.
    pub epsilon: f64,
}

impl<B: Backend> GroupNorm<B> {
    /// Normalizes `[N, C, ...]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let (n, c) = (dims[0], dims[1]);
        let grouped = x.reshape([n as i64, self.num_groups as i64, -1]);
        let centered = grouped.clone() - grouped.mean_dim(2);
        let var = centered.clone().square().mean_dim(2);
        let normalized =
            (centered / var.add_scalar(self.epsilon).sqrt()).reshape([n as i64, c as i64, -1]);
        let (Some(gamma), Some(beta)) = (&self.gamma, &self.beta) else {
            return normalized.reshape(dims);
        };
        // γ and β as one value per (example, channel) row: burn's CPU backend broadcasts
        // that fast, but a [1, C, 1] tensor over a middle axis element by element.
        let s = normalized.dims()[2];
        let per_row = |v: Tensor<B, 1>| v.reshape([1, c]).repeat_dim(0, n).reshape([n * c, 1]);
        let y = (normalized.clone().reshape([n * c, s]) * per_row(layer_value(gamma))
            + per_row(layer_value(beta)))
        .reshape([n, c, s]);
        let probed = with_tape::<B, _>(|tape| {
            let scale = Some(gamma.id).filter(|id| tape.is_trainable(*id));
            let shift = Some(beta.id).filter(|id| tape.is_trainable(*id));
            if scale.is_none() && shift.is_none() {
                return None;
            }
            Some(tape.probe(
                y.clone(),
                LayerData::Affine {
                    scale,
                    shift,
                    normalized,
                },
            ))
        });
        probed.flatten().unwrap_or(y).reshape(dims)
    }
}
