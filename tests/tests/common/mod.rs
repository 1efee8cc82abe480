//! Models shared by the integration tests: the oracle tests' ConvNet, and the one-layer
//! classifier the checkpoint and journal tests train.
#![allow(dead_code)]

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_core::layers::{Conv2d, GroupNorm, Linear, LinearConfig, ScalarGain, WsConv2d};
use dp_core::loss::cross_entropy_per_row;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{DpError, DpOptimizer};

/// A block exercising one convolution-like layer, then a head.
#[derive(Module, Debug)]
pub struct ConvNet<B: Backend> {
    pub conv: Option<Conv2d<B>>,
    pub ws: Option<WsConv2d<B>>,
    pub norm: Option<GroupNorm<B>>,
    pub gain: Option<ScalarGain<B>>,
    pub head: Linear<B>,
}

impl<B: Backend> ConvNet<B> {
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = x;
        if let Some(conv) = &self.conv {
            h = tanh(conv.forward(h));
        }
        if let Some(ws) = &self.ws {
            h = tanh(ws.forward(h));
        }
        if let Some(norm) = &self.norm {
            h = norm.forward(h);
        }
        if let Some(gain) = &self.gain {
            h = h.clone() + gain.forward(tanh(h));
        }
        let [n, c, hh, ww] = h.dims();
        self.head.forward(h.reshape([n, c * hh * ww]))
    }
}

/// The autodiff CPU backend of the flex-only tests.
pub type TB = backends::flex::TB;

/// The test backends. Each suite in `tests/backends/` is written once against the alias `TB`
/// (burn's convention of one test-backend alias) and runs once per backend: every test file
/// that includes a suite declares one module per backend with that backend's `TB` and `Inner`.
pub mod backends {
    /// burn's CPU backend.
    pub mod flex {
        /// The inner (non-autodiff) backend.
        pub type Inner = burn::backend::Flex;
        /// The autodiff backend the suites train on.
        pub type TB = burn::backend::Autodiff<Inner>;
    }

    /// burn's wgpu backend: cubecl's kernels, as on CUDA, on whatever Vulkan/Metal/DX12 adapter
    /// the machine has (Mesa's lavapipe, a CPU driver, in CI).
    #[cfg(feature = "wgpu")]
    pub mod wgpu {
        /// The inner (non-autodiff) backend.
        pub type Inner = burn::backend::Wgpu;
        /// The autodiff backend the suites train on.
        pub type TB = burn::backend::Autodiff<Inner>;
    }
}

/// One linear layer: `d` features to 3 classes.
#[derive(Module, Debug)]
pub struct Lin<B: Backend> {
    pub fc: Linear<B>,
}

/// Plain SGD on [`Lin`].
pub type Sgd = burn::optim::adaptor::OptimizerAdaptor<burn::optim::Sgd<Flex>, Lin<TB>, TB>;
/// The private optimizer of [`Lin`].
pub type LinOpt = DpOptimizer<TB, Lin<TB>, Sgd>;

/// A fresh [`Lin`] with `d` features.
pub fn lin(d: usize) -> Lin<TB> {
    Lin {
        fc: LinearConfig::new(d, 3).init(&Default::default()).unwrap(),
    }
}

/// 40 examples of 6 features and 3 classes.
pub fn lin_data() -> (Tensor<TB, 2>, Tensor<TB, 1, Int>) {
    let device = Default::default();
    let x: Vec<f32> = (0..40 * 6)
        .map(|i| ((i * 13 % 17) as f32) / 8.0 - 1.0)
        .collect();
    let y: Vec<i64> = (0..40).map(|i| (i % 3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [40, 6]), &device),
        Tensor::from_data(TensorData::new(y, [40]), &device),
    )
}

/// One private step of `model` on a batch `sampler` draws from [`lin_data`].
pub fn lin_step(
    opt: &mut LinOpt,
    model: Lin<TB>,
    sampler: &mut PoissonSampler,
    micro_batch: usize,
) -> Result<Lin<TB>, DpError> {
    let (x, y) = lin_data();
    let batch = sampler.next_batch();
    opt.step(
        model,
        &batch,
        micro_batch,
        0.5,
        |idx| {
            let i: Vec<i64> = idx.iter().map(|&v| v as i64).collect();
            let i = Tensor::<TB, 1, Int>::from_data(
                TensorData::new(i, [idx.len()]),
                &Default::default(),
            );
            (x.clone().select(0, i.clone()), y.clone().select(0, i))
        },
        |m, d, r| {
            cross_entropy_per_row(
                m.fc.forward(d.0.clone().slice(r.clone())),
                d.1.clone().slice(r),
            )
        },
    )
}
