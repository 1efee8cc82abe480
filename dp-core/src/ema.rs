//! Exponential moving average of the parameters, with De et al.'s warm-up.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use std::collections::HashMap;

/// The EMA decay at step t: μ_t = min(μ, (1 + t)/(10 + t)) (De et al. 2022, Appendix).
pub fn ema_decay_at(decay: f64, step: u64) -> f64 {
    let t = step as f64;
    decay.min((1.0 + t) / (10.0 + t))
}

/// An exponential moving average of a module's parameters.
///
/// Averaging happens after the noisy update, so it is post-processing and costs no privacy.
#[derive(Clone, Debug)]
pub struct Ema<B: Backend, M: Module<B>> {
    average: M,
    decay: f64,
    _backend: std::marker::PhantomData<B>,
}

struct Flatten<B: Backend> {
    out: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.out.insert(param.id, param.val().reshape([-1]));
    }
}

struct Blend<B: Backend> {
    current: HashMap<ParamId, Tensor<B, 1>>,
    keep: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, old, mapper) = param.consume();
        let new = match self.current.remove(&id) {
            Some(current) => {
                let dims = old.dims();
                old.mul_scalar(self.keep) + current.reshape(dims).mul_scalar(1.0 - self.keep)
            }
            None => old,
        };
        Param::from_mapped_value(id, new, mapper)
    }
}

impl<B: Backend, M: Module<B>> Ema<B, M> {
    /// Starts the average at `initial` with maximal decay μ.
    pub fn new(initial: M, decay: f64) -> Self {
        Self {
            average: initial,
            decay,
            _backend: std::marker::PhantomData,
        }
    }

    /// Folds in `current` after update number `step` (0-based).
    pub fn update(&mut self, current: &M, step: u64) {
        let mut flatten = Flatten {
            out: HashMap::new(),
        };
        current.visit(&mut flatten);
        let mut blend = Blend {
            current: flatten.out,
            keep: ema_decay_at(self.decay, step),
        };
        self.average = self.average.clone().map(&mut blend);
    }

    /// The averaged module.
    pub fn model(&self) -> &M {
        &self.average
    }

    /// Replaces the average (when resuming).
    pub(crate) fn set_model(&mut self, model: M) {
        self.average = model;
    }

    /// μ.
    pub fn decay(&self) -> f64 {
        self.decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn warm_up_follows_de_et_al() {
        assert_eq!(ema_decay_at(0.9999, 0), 0.1);
        assert_eq!(ema_decay_at(0.9999, 10), 11.0 / 20.0);
        assert_eq!(ema_decay_at(0.999, 1_000_000), 0.999);
    }

    #[test]
    fn average_moves_towards_the_current_parameters() {
        let device = Default::default();
        let start = crate::layers::ScalarGain::<Flex>::new(0.0, &device);
        let mut ema = Ema::new(start, 0.999);
        let current = crate::layers::ScalarGain::<Flex>::new(1.0, &device);
        // Same parameter id is required: use a clone with the value replaced.
        let mut moved = ema.model().clone();
        moved.gain = moved.gain.map(|t| t.ones_like());
        ema.update(&moved, 0);
        let value: f32 = ema.model().gain.val().into_scalar();
        assert!((value - 0.9).abs() < 1e-6, "{value}");
        let _ = current;
    }
}
