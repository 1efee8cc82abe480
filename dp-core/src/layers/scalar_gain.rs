//! A learnable scalar gain (SkipInit, De & Smith 2020).

use crate::per_example::LayerData;
use crate::tape::{layer_value, with_tape};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// y = α·x with one learnable scalar α; initialised at 0 it makes a residual branch start as
/// the identity (SkipInit), as in NFNets.
#[derive(Module, Debug)]
pub struct ScalarGain<B: Backend> {
    /// α, shape `[1]`.
    pub gain: Param<Tensor<B, 1>>,
}

impl<B: Backend> ScalarGain<B> {
    /// A gain with initial value `value`.
    pub fn new(value: f32, device: &B::Device) -> Self {
        Self {
            gain: Param::from_tensor(Tensor::from_floats([value], device)),
        }
    }

    /// Scales `x`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let y = x.clone() * layer_value(&self.gain).reshape([1; D]);
        let probed = with_tape::<B, _>(|tape| {
            if !tape.is_trainable(self.gain.id) {
                return None;
            }
            let n = dims[0] as i64;
            let input = x.reshape([n, 1, -1]);
            Some(tape.probe(
                y.clone().reshape([n, 1, -1]),
                LayerData::Gain {
                    gain: self.gain.id,
                    input,
                },
            ))
        });
        match probed.flatten() {
            Some(out) => out.reshape(dims),
            None => y,
        }
    }
}
