//! WideResNet and NFNet: parameter counts against their published sizes and timm, and no
//! cross-example layers. The fast per-example path of the models against the batch-of-one
//! oracle, on every test backend: `model_oracle.rs`.

use burn::backend::Flex;
use burn::module::Module;
use dp_core::validate_model;
use dp_models::{NfNetConfig, WideResNetConfig};

/// WRN-d-k parameter count from the architecture description (De et al. 2022 / jax_privacy):
/// 3×3 WS conv to 16, stages of (d−4)/6 blocks (GN, WS conv 3×3, GN, WS conv 3×3; a GN + 1×1
/// WS conv shortcut on each stage's first block), final GN, linear. WS convs carry weight,
/// gain and bias; GN a scale and a shift.
fn wrn_params(depth: usize, k: usize, classes: usize) -> usize {
    let n = (depth - 4) / 6;
    let ws = |ci: usize, co: usize, kk: usize| kk * kk * ci * co + 2 * co;
    let gn = |c: usize| 2 * c;
    let (mut total, mut c) = (ws(3, 16, 3), 16);
    for stage in 0..3 {
        let w = (16 * k) << stage;
        for i in 0..n {
            if i == 0 {
                total += gn(c) + ws(c, w, 1);
            }
            total += gn(c) + ws(c, w, 3) + gn(w) + ws(w, w, 3);
            c = w;
        }
    }
    total + gn(c) + c * classes + classes
}

#[test]
fn wide_resnet_sizes_match_the_published_ones() {
    let device = Default::default();
    // Zagoruyko & Komodakis 2016, Table 1: WRN-16-4 2.7M, WRN-40-4 8.9M parameters.
    for (depth, k, published) in [(16, 4, 2.7e6), (40, 4, 8.9e6)] {
        let model = WideResNetConfig::new(depth, k, 10)
            .init::<Flex>(&device)
            .unwrap();
        let count = model.num_params();
        assert_eq!(count, wrn_params(depth, k, 10), "WRN-{depth}-{k}");
        assert!(
            (count as f64 / published - 1.0).abs() < 0.03,
            "WRN-{depth}-{k}: {count}"
        );
    }
    assert!(WideResNetConfig::new(15, 4, 10)
        .init::<Flex>(&device)
        .is_err());
}

#[test]
fn nfnet_sizes_match_timm() {
    // timm 1.0.31: sum(p.numel() for p in timm.create_model('dm_nfnet_fX').parameters())
    // (tests/data/README.md).
    let device = Default::default();
    for (config, timm) in [
        (NfNetConfig::f0(), 71_489_284usize),
        (NfNetConfig::f1(), 132_634_256),
        (NfNetConfig::f2(), 193_779_228),
        (NfNetConfig::f3(), 254_924_200),
    ] {
        let model = config.init::<Flex>(&device).unwrap();
        assert_eq!(model.num_params(), timm, "{:?}", config.depths);
    }
}

#[test]
fn no_model_mixes_examples() {
    let device = Default::default();
    validate_model(
        &WideResNetConfig::new(16, 4, 10)
            .init::<Flex>(&device)
            .unwrap(),
    )
    .unwrap();
    validate_model(&NfNetConfig::tiny().init::<Flex>(&device).unwrap()).unwrap();
    validate_model(&dp_models::TanhCnn::<Flex>::new(10, &device).unwrap()).unwrap();
}
