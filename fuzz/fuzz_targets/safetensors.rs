//! `load_safetensors_bytes` on arbitrary bytes, into a small model with NFNet's kinds of
//! parameters (a weight-standardized conv with its gain, a SkipInit gain, a linear head), in
//! both key layouts: timm's (transposed linear weights, `[C, 1, 1, 1]` gains, scalar SkipInit
//! gains) and the native one.
//!
//! The model is built once per process; each input loads into a clone of it.
#![no_main]

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::backend::Backend;
use dp_core::layers::{Conv2dConfig, Linear, LinearConfig, ScalarGain, WsConv2d, WsConv2dConfig};
use dp_core::params::param_infos;
use dp_models::load::{load_safetensors_bytes, KeyLayout};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

#[derive(Module, Debug)]
struct Block<B: Backend> {
    conv: WsConv2d<B>,
    skipinit_gain: ScalarGain<B>,
}

#[derive(Module, Debug)]
struct Mini<B: Backend> {
    block: Block<B>,
    head: Linear<B>,
}

fn mini() -> Mini<Flex> {
    let device = Default::default();
    Mini {
        block: Block {
            conv: WsConv2dConfig::new(Conv2dConfig::new([1, 2], [1, 1]))
                .init(&device)
                .expect("valid conv config"),
            skipinit_gain: ScalarGain::new(0.0, &device),
        },
        head: LinearConfig::new(3, 2)
            .init(&device)
            .expect("valid linear config"),
    }
}

thread_local! {
    static MODEL: Mini<Flex> = mini();
}

fuzz_target!(|data: &[u8]| {
    let model = MODEL.with(|m| m.clone());
    let dims: Vec<Vec<usize>> = param_infos(&model).into_iter().map(|p| p.dims).collect();
    for layout in [KeyLayout::Timm, KeyLayout::Native] {
        let source = Path::new("fuzz-input");
        if let Ok(loaded) =
            load_safetensors_bytes(model.clone(), data, source, layout, &Default::default())
        {
            let loaded: Vec<Vec<usize>> =
                param_infos(&loaded).into_iter().map(|p| p.dims).collect();
            assert_eq!(loaded, dims, "{layout:?}: parameter shapes changed");
        }
    }
});
