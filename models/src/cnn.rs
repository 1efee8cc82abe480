//! The end-to-end tanh CNN of Papernot et al. 2021 and Tramèr & Boneh 2021 for 28×28
//! grayscale images (MNIST, Fashion-MNIST): conv 16 8×8 stride 2 padding 3, tanh, max-pool 2
//! stride 1, conv 32 4×4 stride 2, tanh, max-pool 2 stride 1, linear 32, tanh, linear 10.
//! 26,010 parameters.

use crate::error::Result;
use crate::kernels::max_pool::max_pool_2x2_stride1;
use crate::kernels::tanh::tanh;
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dp_core::layers::{Conv2d, Conv2dConfig, Linear, LinearConfig};

/// Tramèr & Boneh's CNN.
#[derive(Module, Debug)]
pub struct TanhCnn<B: Backend> {
    /// 1 → 16, 8×8, stride 2, padding 3.
    pub conv1: Conv2d<B>,
    /// 16 → 32, 4×4, stride 2.
    pub conv2: Conv2d<B>,
    /// 512 → 32.
    pub fc1: Linear<B>,
    /// 32 → classes.
    pub fc2: Linear<B>,
}

impl<B: Backend> TanhCnn<B> {
    /// The CNN for 1×28×28 inputs and `classes` outputs.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::module::Module;
    /// let model = dp_models::TanhCnn::<Flex>::new(10, &Default::default())?;
    /// assert_eq!(model.num_params(), 26_010);
    /// # Ok::<(), dp_models::ModelError>(())
    /// ```
    pub fn new(classes: usize, device: &B::Device) -> Result<Self> {
        Ok(Self {
            conv1: Conv2dConfig::new([1, 16], [8, 8])
                .with_stride([2, 2])
                .with_padding([3, 3])
                .init(device)?,
            conv2: Conv2dConfig::new([16, 32], [4, 4])
                .with_stride([2, 2])
                .init(device)?,
            fc1: LinearConfig::new(32 * 4 * 4, 32).init(device)?,
            fc2: LinearConfig::new(32, classes).init(device)?,
        })
    }

    /// Logits `[N, classes]` of images `[N, 1, 28, 28]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        let pool = max_pool_2x2_stride1;
        let x = pool(tanh(self.conv1.forward(x)));
        let x = pool(tanh(self.conv2.forward(x)));
        let [n, c, h, w] = x.dims();
        let x = tanh(self.fc1.forward(x.reshape([n, c * h * w])));
        self.fc2.forward(x)
    }
}
