//! The fast per-example path of the CNN, a tiny WideResNet and a tiny NFNet against the
//! batch-of-one oracle, with K = 1 and K = 2 views; the ScatterNet heads likewise.

use super::TB;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use dp_core::loss::cross_entropy_per_row;
use dp_core::params::param_infos;
use dp_core::{clip_and_sum, ClipSpec, Clipping, PerExampleEngine};
use dp_models::{NfNetConfig, WideResNetConfig};
use std::ops::Range;

fn batch(
    rows: usize,
    [c, h, w]: [usize; 3],
    classes: usize,
) -> (Tensor<TB, 4>, Tensor<TB, 1, Int>) {
    let device = Default::default();
    TB::seed(&device, 3);
    let x = Tensor::random([rows, c, h, w], Distribution::Normal(0.0, 1.0), &device);
    let y: Vec<i64> = (0..rows).map(|i| (i % classes) as i64).collect();
    (x, Tensor::from_data(TensorData::new(y, [rows]), &device))
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let n: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    d / n.max(1e-30)
}

fn compare<M: AutodiffModule<TB>>(
    model: &M,
    forward: impl Fn(&M, Tensor<TB, 4>) -> Tensor<TB, 2>,
    rows: usize,
    views: usize,
    image: [usize; 3],
) {
    let (x, y) = batch(rows, image, 10);
    let losses = |m: &M, r: Range<usize>| {
        cross_entropy_per_row(forward(m, x.clone().slice(r.clone())), y.clone().slice(r))
    };
    let probe = ClipSpec::new(1e9, Clipping::Flat).unwrap();
    let raw = clip_and_sum(
        PerExampleEngine::BatchOfOne,
        model,
        rows,
        views,
        losses,
        &probe,
        0,
    )
    .unwrap();
    let mut norms = raw.norms().to_vec();
    norms.sort_by(f32::total_cmp);
    let clip = ClipSpec::new(norms[norms.len() / 2] as f64, Clipping::Flat).unwrap();
    let fast = clip_and_sum(PerExampleEngine::Fast, model, rows, views, losses, &clip, 0).unwrap();
    let oracle = clip_and_sum(
        PerExampleEngine::BatchOfOne,
        model,
        rows,
        views,
        losses,
        &clip,
        0,
    )
    .unwrap();
    for (a, b) in fast.norms().iter().zip(oracle.norms()) {
        assert!(((a - b) / b).abs() < 1e-4, "norm {a} vs oracle {b}");
    }
    for p in param_infos(model).into_iter().filter(|p| p.trainable) {
        let rel = relative_l2(
            &fast.gradient(p.id).unwrap(),
            &oracle.gradient(p.id).unwrap(),
        );
        assert!(rel < 1e-4, "{}: {rel:e}", p.path);
    }
}

#[test]
fn tiny_wide_resnet_fast_path_matches_the_oracle() {
    let device = Default::default();
    let model = WideResNetConfig::new(10, 1, 10)
        .with_groups(4)
        .with_input_size(8)
        .init::<TB>(&device)
        .unwrap();
    compare(&model, |m, x| m.forward(x), 4, 1, [3, 8, 8]);
    compare(&model, |m, x| m.forward(x), 6, 2, [3, 8, 8]);
}

#[test]
fn tiny_nfnet_fast_path_matches_the_oracle() {
    let device = Default::default();
    let mut config = NfNetConfig::tiny().with_input_size(16);
    config.depths = [1, 1, 1, 1];
    let mut model = config.init::<TB>(&device).unwrap();
    // SkipInit gains start at 0, which would zero every residual branch's gradient: start
    // them away from 0 so that every layer is exercised.
    for block in model.stages.iter_mut().flatten() {
        block.skipinit_gain.gain = block.skipinit_gain.gain.clone().map(|g| g.add_scalar(0.5));
    }
    compare(&model, |m, x| m.forward(x), 4, 1, [3, 16, 16]);
}

/// Tramèr & Boneh's CNN runs on hand-written CPU kernels (max-pool, tanh) and an im2col first
/// convolution whose im2col the per-example path reuses: none of it may mix examples.
#[test]
fn tanh_cnn_fast_path_matches_the_oracle() {
    let device = Default::default();
    let model = dp_models::TanhCnn::<TB>::new(10, &device).unwrap();
    compare(&model, |m, x| m.forward(x), 5, 1, [1, 28, 28]);
    compare(&model, |m, x| m.forward(x), 6, 2, [1, 28, 28]);
}

/// Tramèr & Boneh's ScatterNet heads on scattering-shaped features (a parameter-free
/// GroupNorm, then a linear model or a tanh CNN, with a max-pool in the colour head).
#[test]
fn scatternet_heads_fast_path_matches_the_oracle() {
    use dp_models::{ScatterHead, ScatterNetConfig};
    let device = Default::default();
    for (head, features) in [
        (ScatterHead::Linear, [81, 7, 7]),
        (ScatterHead::CnnGray, [81, 7, 7]),
        (ScatterHead::CnnColor, [243, 8, 8]),
    ] {
        let model = ScatterNetConfig::new(features, 27, head, 10)
            .init::<TB>(&device)
            .unwrap();
        compare(&model, |m, x| m.forward(x), 5, 1, features);
    }
    let two_views = ScatterNetConfig::new([81, 7, 7], 27, ScatterHead::CnnGray, 10)
        .init::<TB>(&device)
        .unwrap();
    compare(&two_views, |m, x| m.forward(x), 6, 2, [81, 7, 7]);
}
