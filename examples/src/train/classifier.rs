//! What training needs from a network: logits (with a training-mode variant), per-row losses,
//! and the network it releases; for a network trained beside the audit block of
//! `dp-train --audit` ([`Audited`]), the block's losses and parameter as well.

use burn::module::{Module, ModuleDisplay, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use dp_core::audit::{Audited, CanaryRows};
use dp_core::loss::cross_entropy_per_row;
use dp_models::{NfNet, ScatterNet, TanhCnn, WideResNet};
use std::collections::HashMap;
use std::path::Path;

/// Text metadata of a safetensors file.
pub type Metadata = HashMap<String, String>;

/// An image classifier.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits `[N, classes]` for evaluation.
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Logits for training (e.g. with per-example stochastic depth).
    fn train_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.logits(x)
    }

    /// Per-row training losses of images `x` with labels `y`; `canaries`: which of the rows
    /// are canaries, for a network trained beside the audit block (`None`: all rows are real).
    fn train_losses(
        &self,
        x: Tensor<B, 4>,
        y: Tensor<B, 1, Int>,
        canaries: Option<CanaryRows<B>>,
    ) -> Tensor<B, 1> {
        let _ = canaries;
        cross_entropy_per_row(self.train_logits(x), y)
    }

    /// The audit block's parameter, if the network trains beside one.
    fn audit_block(&self) -> Option<ParamId> {
        None
    }

    /// Saves the network a run releases (never the audit block) as safetensors, with text
    /// `metadata` (the model card).
    fn save_released(&self, path: &Path, metadata: Option<Metadata>) -> dp_models::Result<()>
    where
        Self: Sized,
    {
        dp_models::save_safetensors_with_metadata(self, path, metadata)
    }
}

impl<B: Backend> Classifier<B> for TanhCnn<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: Backend> Classifier<B> for WideResNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

/// Reads scattering features, not pixels (the training loop and the programs compute them:
/// `crate::features`).
impl<B: Backend> Classifier<B> for ScatterNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: Backend> Classifier<B> for NfNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn train_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_train(x)
    }
}

/// The network beside the audit block: logits and the released file are the network's; a
/// canary row's loss is the block's output (its gradient `M·e_j` on the block, zero on the
/// network), a real row's the network's (zero gradient on the block).
impl<B: Backend, M: Classifier<B> + ModuleDisplay> Classifier<B> for Audited<B, M> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.model.logits(x)
    }

    fn train_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.model.train_logits(x)
    }

    fn train_losses(
        &self,
        x: Tensor<B, 4>,
        y: Tensor<B, 1, Int>,
        canaries: Option<CanaryRows<B>>,
    ) -> Tensor<B, 1> {
        let rows = x.dims()[0];
        let canaries = canaries
            .unwrap_or_else(|| CanaryRows::real(self.block.weight.dims()[0], rows, &x.device()));
        let real = self.model.train_losses(x, y, None);
        self.losses(real, canaries.is_real, canaries.inputs)
    }

    fn audit_block(&self) -> Option<ParamId> {
        Some(self.block.weight.id)
    }

    fn save_released(&self, path: &Path, metadata: Option<Metadata>) -> dp_models::Result<()> {
        self.model.save_released(path, metadata)
    }
}
