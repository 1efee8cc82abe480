//! A fully connected layer that records per-example gradient data in a private forward.

use crate::error::{DpError, Result};
use crate::per_example::LayerData;
use crate::tape::{layer_value, with_tape};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Tensor};

/// Configuration of a [`Linear`] layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether to add a bias.
    pub bias: bool,
}

impl LinearConfig {
    /// `d_input` → `d_output` with a bias.
    pub fn new(d_input: usize, d_output: usize) -> Self {
        Self {
            d_input,
            d_output,
            bias: true,
        }
    }

    /// Sets whether the layer has a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// A layer with weights uniform in ±1/√d_input (PyTorch's default), bias likewise.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// let layer = dp_core::layers::LinearConfig::new(4, 2).init::<Flex>(&Default::default())?;
    /// assert_eq!(layer.weight.dims(), [4, 2]);
    /// # Ok::<(), dp_core::DpError>(())
    /// ```
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Linear<B>> {
        if self.d_input == 0 || self.d_output == 0 {
            return Err(DpError::invalid(
                "d_input, d_output",
                "d",
                format!("{}, {}", self.d_input, self.d_output),
                ">= 1",
            ));
        }
        let bound = 1.0 / (self.d_input as f64).sqrt();
        let uniform = Distribution::Uniform(-bound, bound);
        let weight = Tensor::random([self.d_input, self.d_output], uniform, device);
        let bias = self
            .bias
            .then(|| Param::from_tensor(Tensor::random([self.d_output], uniform, device)));
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }
}

/// y = x·W + b over the last dimension; W is `[d_input, d_output]`.
///
/// Inputs of rank 2 (`[N, d]`) or higher (`[N, ..., d]`, e.g. sequences) are supported; the
/// per-example gradient sums over the middle dimensions.
///
/// # Privacy
/// For the fast per-example path ([`crate::PerExampleEngine::Fast`]) the leading dimension
/// must be the micro-batch's rows: a sequence-first `[T, N, d]`, a flattened `[N·T, d]` or a
/// shared `[1, d]` input is refused with an error, except where its leading dimension equals
/// the rows by coincidence (e.g. T = N), which shapes cannot reveal. The weight and bias must
/// be used only through this layer, once per forward pass: a second use (weight tying, a
/// penalty on the weight in the loss) is refused too; use weight decay of the inner optimizer
/// instead of a penalty.
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    /// `[d_input, d_output]`.
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_output]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> Linear<B> {
    /// Applies the layer; in a private forward, also records what per-example gradients need.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = linear(
            x.clone(),
            layer_value(&self.weight),
            self.bias.as_ref().map(layer_value),
        );
        let dims = y.dims();
        let probed = with_tape::<B, _>(|tape| {
            let weight = Some(self.weight.id).filter(|id| tape.is_trainable(*id));
            let bias = self
                .bias
                .as_ref()
                .map(|b| b.id)
                .filter(|id| tape.is_trainable(*id));
            if weight.is_none() && bias.is_none() {
                return None;
            }
            let n = dims[0];
            let shape = x.dims().to_vec();
            let input = x.reshape([n as i64, -1, self.weight.dims()[0] as i64]);
            let output = y.clone().reshape([n as i64, -1, dims[D - 1] as i64]);
            Some(tape.probe(
                output,
                LayerData::Linear {
                    weight,
                    bias,
                    input,
                    shape,
                },
            ))
        });
        match probed.flatten() {
            Some(out) => out.reshape(dims),
            None => y,
        }
    }
}
