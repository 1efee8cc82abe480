//! `DpOptimizer::resume_from_bytes` on arbitrary bytes, into the CNN of the Fashion-MNIST
//! presets. The first input byte chooses: even, the bytes as they are; odd, the rest with its
//! CRC-32 recomputed, so that mutations get past the checksum into the metadata JSON and
//! burn's MessagePack records.
#![no_main]

use burn::backend::{Autodiff, Flex};
use burn::optim::momentum::MomentumConfig;
use burn::optim::SgdConfig;
use dp_core::DpOptimizer;
use dp_models::TanhCnn;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

type AB = Autodiff<Flex>;

thread_local! {
    static MODEL: TanhCnn<AB> = TanhCnn::new(10, &Default::default()).expect("the CNN builds");
}

fn with_crc(body: &[u8]) -> Vec<u8> {
    let mut bytes = body.to_vec();
    if bytes.len() >= 4 {
        bytes.truncate(bytes.len() - 4);
    }
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let bytes = if choice % 2 == 1 { with_crc(rest) } else { rest.to_vec() };
    let model = MODEL.with(|m| m.clone());
    let inner = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init::<AB, TanhCnn<AB>>();
    let resumed = DpOptimizer::resume_from_bytes(Path::new("fuzz-input"), &bytes, None, model, inner);
    if let Ok(resumed) = resumed {
        let _ = resumed.optimizer.steps();
    }
});
