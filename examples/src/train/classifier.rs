//! The one thing training needs from a network: logits, with a training-mode variant.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dp_models::{NfNet, TanhCnn, WideResNet};

/// An image classifier.
pub trait Classifier<B: Backend>: Module<B> {
    /// Logits `[N, classes]` for evaluation.
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2>;

    /// Logits for training (e.g. with per-example stochastic depth).
    fn train_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.logits(x)
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

impl<B: Backend> Classifier<B> for NfNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }

    fn train_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_train(x)
    }
}
