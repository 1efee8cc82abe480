//! `DpOptimizer::resume_from_bytes` on arbitrary bytes, into the CNN of the Fashion-MNIST
//! presets. The first input byte chooses: even, the bytes as they are; odd, the rest with its
//! CRC-32 recomputed, so that mutations get past the checksum into the metadata JSON and
//! burn's MessagePack records.
//!
//! `resume_from_bytes` catches burn's panics on records that do not fit the model and returns
//! an error; libfuzzer-sys's panic hook would abort on those caught panics too, so this target
//! puts std's default hook back (it prints and returns). A panic that escapes the reader is
//! still a crash: libfuzzer-sys aborts on it after catching it.
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

static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
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
