//! Models shared by the oracle tests.
#![allow(dead_code)]

use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use dp_core::layers::{Conv2d, GroupNorm, Linear, ScalarGain, WsConv2d};

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
