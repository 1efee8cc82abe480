//! Clipping rules: how per-example norms become per-example scale factors.

use crate::error::{DpError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// How per-example gradients are clipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clipping {
    /// One L2 norm over all trainable parameters, clipped to C (Abadi et al. 2016).
    #[default]
    Flat,
    /// Each layer's gradient clipped separately to C/√L (L layers), so the whole gradient
    /// still has norm ≤ C (McMahan et al. 2018).
    PerLayer,
}

/// Validated clipping settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipSpec {
    /// C.
    pub clip_norm: f64,
    /// The rule.
    pub clipping: Clipping,
}

impl ClipSpec {
    /// Checks C > 0.
    pub fn new(clip_norm: f64, clipping: Clipping) -> Result<Self> {
        if !(clip_norm.is_finite() && clip_norm > 0.0) {
            return Err(DpError::invalid(
                "clip_norm",
                "C",
                clip_norm,
                "> 0 and finite",
            ));
        }
        Ok(Self {
            clip_norm,
            clipping,
        })
    }

    /// Per-layer scale factors min(1, C_l/‖g_l‖) (one tensor `[E]` per layer) from the
    /// per-layer squared norms.
    pub(crate) fn factors<B: Backend>(&self, squared: &[Tensor<B, 1>]) -> Vec<Tensor<B, 1>> {
        let c = self.clip_norm;
        match self.clipping {
            Clipping::Flat => {
                let Some(first) = squared.first() else {
                    return Vec::new();
                };
                let total = squared[1..]
                    .iter()
                    .fold(first.clone(), |acc, s| acc + s.clone());
                let factor = scale_factor(total, c);
                vec![factor; squared.len()]
            }
            Clipping::PerLayer => {
                let per_layer = c / (squared.len() as f64).sqrt();
                squared
                    .iter()
                    .map(|s| scale_factor(s.clone(), per_layer))
                    .collect()
            }
        }
    }
}

/// min(1, c/√s), computed as c/max(√s, c) so a zero gradient gives 1.
fn scale_factor<B: Backend>(squared: Tensor<B, 1>, c: f64) -> Tensor<B, 1> {
    #[cfg(feature = "test-hooks")]
    if crate::test_hooks::planted() == Some(crate::test_hooks::PlantedBug::NoClipping) {
        return squared.zeros_like().add_scalar(1.0);
    }
    squared.sqrt().clamp_min(c).recip().mul_scalar(c)
}
