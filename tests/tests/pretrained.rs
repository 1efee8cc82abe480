//! Pretrained weights: forward parity with timm on the committed tiny-NFNet fixture
//! (`scripts/make_nfnet_fixture.py`), complete mismatch reports, the native layout round
//! trip, and fine-tuning surgery.

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Tensor, TensorData};
use dp_models::{
    load_safetensors, save_safetensors, KeyLayout, ModelError, NfNetConfig, WideResNetConfig,
};
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

fn io() -> (Tensor<Flex, 4>, Vec<f32>) {
    let bytes = std::fs::read(data("nfnet_tiny_io.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> (Vec<f32>, Vec<usize>) {
        let v = file.tensor(name).unwrap();
        (
            v.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            v.shape().to_vec(),
        )
    };
    let (x, shape) = f32s("input");
    let (logits, _) = f32s("logits");
    (
        Tensor::from_data(TensorData::new(x, shape), &Default::default()),
        logits,
    )
}

#[test]
fn tiny_nfnet_matches_timm_within_1e_4() {
    let device = Default::default();
    let model = NfNetConfig::tiny().init::<Flex>(&device).unwrap();
    let model = load_safetensors(
        model,
        data("nfnet_tiny_timm.safetensors"),
        KeyLayout::Timm,
        &device,
    )
    .unwrap();
    let (x, expected) = io();
    let got: Vec<f32> = model.forward(x).into_data().to_vec().unwrap();
    let worst = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("tiny NFNet vs timm: max |Δlogit| = {worst:e}");
    assert!(worst <= 1e-4, "max |Δlogit| = {worst}");
}

#[test]
fn a_mismatched_checkpoint_lists_every_problem() {
    let device = Default::default();
    // Another head size and one stage fewer blocks.
    let mut config = NfNetConfig::tiny().with_num_classes(5);
    config.depths = [1, 1, 1, 1];
    let model = config.init::<Flex>(&device).unwrap();
    match load_safetensors(
        model,
        data("nfnet_tiny_timm.safetensors"),
        KeyLayout::Timm,
        &device,
    ) {
        Err(ModelError::Mismatch {
            missing,
            unexpected,
            mis_shaped,
            ..
        }) => {
            assert!(missing.is_empty(), "{missing:?}");
            assert!(
                unexpected.iter().any(|k| k.starts_with("stages.2.1.")),
                "{unexpected:?}"
            );
            assert!(
                mis_shaped.iter().any(|k| k.starts_with("head.fc.weight")),
                "{mis_shaped:?}"
            );
            assert!(
                mis_shaped.iter().any(|k| k.starts_with("head.fc.bias")),
                "{mis_shaped:?}"
            );
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("loaded a mismatched checkpoint"),
    }
    // A WRN read with the timm layout: everything missing and unexpected, reported at once.
    let wrn = WideResNetConfig::new(10, 1, 10)
        .with_groups(4)
        .init::<Flex>(&device)
        .unwrap();
    let Err(ModelError::Mismatch {
        missing,
        unexpected,
        ..
    }) = load_safetensors(
        wrn,
        data("nfnet_tiny_timm.safetensors"),
        KeyLayout::Timm,
        &device,
    )
    else {
        panic!("expected a mismatch");
    };
    assert!(missing.len() > 10 && unexpected.len() > 10);
    assert!(matches!(
        load_safetensors(
            NfNetConfig::tiny().init::<Flex>(&device).unwrap(),
            data("README.md"),
            KeyLayout::Timm,
            &device
        ),
        Err(ModelError::Checkpoint { .. })
    ));
}

#[test]
fn native_layout_round_trips() {
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrn.safetensors");
    let a = WideResNetConfig::new(10, 1, 10)
        .with_groups(4)
        .with_input_size(8)
        .init::<Flex>(&device)
        .unwrap();
    save_safetensors(&a, &path).unwrap();
    let b = WideResNetConfig::new(10, 1, 10)
        .with_groups(4)
        .with_input_size(8)
        .init::<Flex>(&device)
        .unwrap();
    let b = load_safetensors(b, &path, KeyLayout::Native, &device).unwrap();
    let x = Tensor::<Flex, 4>::ones([2, 3, 8, 8], &device);
    let (ya, yb): (Vec<f32>, Vec<f32>) = (
        a.forward(x.clone()).into_data().to_vec().unwrap(),
        b.forward(x).into_data().to_vec().unwrap(),
    );
    assert_eq!(ya, yb);
}

#[test]
fn fine_tuning_replaces_the_head_and_freezes_early_stages() {
    type TB = Autodiff<Flex>;
    let device = Default::default();
    let model = NfNetConfig::tiny().init::<TB>(&device).unwrap();
    let model = load_safetensors(
        model,
        data("nfnet_tiny_timm.safetensors"),
        KeyLayout::Timm,
        &device,
    )
    .unwrap();
    let model = dp_models::finetune::replace_nfnet_head(model, 3, &device).unwrap();
    let model = dp_models::finetune::freeze_nfnet(model, 1, true);
    let trainable: Vec<String> = dp_core::params::param_infos(&model)
        .into_iter()
        .filter(|p| p.trainable)
        .map(|p| p.path)
        .collect();
    assert!(
        trainable.iter().all(|p| p.starts_with("stages.3.")
            || p.starts_with("final_conv")
            || p.starts_with("head.")),
        "{trainable:?}"
    );
    assert!(trainable.iter().any(|p| p == "head.fc.weight"));
    let x = dp_models::finetune::upsample(Tensor::<TB, 4>::ones([2, 3, 16, 16], &device), 32);
    assert_eq!(x.dims(), [2, 3, 32, 32]);
    assert_eq!(model.forward(x).dims(), [2, 3]);
}
