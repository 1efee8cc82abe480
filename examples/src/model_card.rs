//! The model card inside a released `model.safetensors`: what `dp-eval` and `dp-predict` need
//! to use the model without its run directory (architecture, input, normalization, class
//! names) and what it cost (ε, δ, accountant).
//!
//! # Privacy
//! The card holds only settings and the spent budget, nothing computed from the training
//! images, and never a seed: a released model file may be handed to anyone.

use crate::error::{Result, TrainError};
use crate::presets::{Dataset, ModelKind};
use crate::train::NfNetVariant;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key of the card (its value is JSON).
pub const CARD_KEY: &str = "dp_burn.model_card";

/// Format of the card this build writes.
pub const CARD_VERSION: u32 = 1;

/// What a released model is and what it cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// [`CARD_VERSION`] of the writer.
    pub format_version: u32,
    /// The architecture.
    pub model: ModelKind,
    /// The NFNet variant, for NFNets.
    pub nfnet_variant: Option<NfNetVariant>,
    /// `[C, H, W]` the network takes (images are resized to it).
    pub input: [usize; 3],
    /// Per-channel (mean, std) applied to pixels in [0, 1].
    pub normalization: Vec<(f32, f32)>,
    /// Class names by output index.
    pub class_names: Vec<String>,
    /// The dataset it was trained on.
    pub dataset: Dataset,
    /// The preset (recipe) of the run.
    pub preset: String,
    /// ε spent by the run (an upper bound).
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// The accountant of `epsilon`.
    pub accountant: String,
    /// Whether the run was seeded (`--seed`): then its noise is reproducible by anyone who
    /// knows the seed, and the model is not a private release.
    pub seeded: bool,
    /// `current` or `ema` (the parameter average).
    pub weights: String,
}

impl ModelCard {
    /// The card as safetensors metadata.
    pub fn to_metadata(&self) -> Result<HashMap<String, String>> {
        let json = serde_json::to_string(self).map_err(|e| TrainError::Usage(e.to_string()))?;
        Ok([(CARD_KEY.to_string(), json)].into_iter().collect())
    }

    /// The card of the model file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let metadata = dp_models::read_safetensors_metadata(path)?;
        let json = metadata.get(CARD_KEY).ok_or_else(|| {
            TrainError::malformed(
                path,
                "no model card: not a model released by dp-train (model.safetensors or \
                 model-ema.safetensors of a finished run)",
            )
        })?;
        let card: Self = serde_json::from_str(json)
            .map_err(|e| TrainError::malformed(path, format!("its model card: {e}")))?;
        if card.format_version > CARD_VERSION {
            return Err(TrainError::malformed(
                path,
                format!(
                    "model card version {} is newer than this build's {CARD_VERSION}",
                    card.format_version
                ),
            ));
        }
        if card.class_names.is_empty() || card.normalization.len() != card.input[0] {
            return Err(TrainError::malformed(
                path,
                "its model card names no classes or does not fit its input",
            ));
        }
        Ok(card)
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }
}
