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
    for head in [
        dp_models::ScatterHead::Linear,
        dp_models::ScatterHead::CnnGray,
    ] {
        let model = dp_models::ScatterNetConfig::new([81, 7, 7], 27, head, 10)
            .init::<Flex>(&device)
            .unwrap();
        validate_model(&model).unwrap();
    }
}

/// Parameter counts of the ScatterNet models: Tramèr & Boneh's linear model on 81×7×7
/// features has 3,969·10 + 10; the grayscale CNN head 81·9·16+16 + 16·9·32+32 + 512·32+32 +
/// 32·10+10; bad feature shapes are refused with what the head needs.
#[test]
fn scatternet_sizes_and_refusals() {
    use dp_models::{ScatterHead, ScatterNetConfig};
    let device = Default::default();
    let count = |features, head| {
        ScatterNetConfig::new(features, 27, head, 10)
            .init::<Flex>(&device)
            .unwrap()
            .num_params()
    };
    assert_eq!(count([81, 7, 7], ScatterHead::Linear), 39_700);
    assert_eq!(
        count([81, 7, 7], ScatterHead::CnnGray),
        81 * 9 * 16 + 16 + 16 * 9 * 32 + 32 + 512 * 32 + 32 + 32 * 10 + 10
    );
    assert_eq!(
        count([243, 8, 8], ScatterHead::CnnColor),
        243 * 9 * 64 + 64 + 64 * 9 * 64 + 64 + 1024 * 10 + 10
    );
    let wrong = ScatterNetConfig::new([243, 8, 8], 27, ScatterHead::CnnGray, 10)
        .init::<Flex>(&device)
        .unwrap_err()
        .to_string();
    assert!(wrong.contains("7×7"), "{wrong}");
    let groups = ScatterNetConfig::new([81, 7, 7], 10, ScatterHead::Linear, 10)
        .init::<Flex>(&device)
        .unwrap_err()
        .to_string();
    assert!(groups.contains("num_groups"), "{groups}");
}

/// The scattering transform against Kymatio 0.3.0's `Scattering2D(J=2, L=8)` on a Fashion-MNIST
/// image, a noise image and an RGB image (`scripts/make_scattering_reference.py`), every
/// coefficient within the file's absolute tolerance (1e-4).
#[test]
fn scattering_matches_kymatio() {
    use dp_models::scattering::Scattering2D;
    let data: serde_json::Value =
        serde_json::from_str(include_str!("../data/scattering_reference.json")).unwrap();
    let tolerance = data["tolerance_abs"].as_f64().unwrap();
    let images = data["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    let mut worst = 0f64;
    for image in images {
        let name = image["name"].as_str().unwrap();
        let dims: Vec<usize> = image["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let pixels: Vec<f32> = image["pixels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32 / 255.0)
            .collect();
        let expected: Vec<f64> = image["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let scattering = Scattering2D::new(2, 8, [dims[0], dims[1], dims[2]]).unwrap();
        let out_shape: Vec<usize> = image["output_shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(scattering.output_shape().to_vec(), out_shape, "{name}");
        let got = scattering.transform_batch(&pixels).unwrap();
        assert_eq!(got.len(), expected.len(), "{name}");
        let mut failures = Vec::new();
        for (k, (g, e)) in got.iter().zip(&expected).enumerate() {
            let err = (f64::from(*g) - e).abs();
            worst = worst.max(err);
            if err > tolerance {
                failures.push(format!("{name}[{k}]: ours {g}, Kymatio {e}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} coefficients differ:\n{}",
            failures.len(),
            got.len(),
            failures[..failures.len().min(20)].join("\n")
        );
    }
    eprintln!("scattering vs Kymatio: worst absolute difference {worst:.2e}");
}
