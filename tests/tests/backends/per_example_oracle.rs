//! The fast one-backward per-example path against the batch-of-one oracle: per-example norms
//! and clipped sums within 1e-4 relative (f32), per layer type (every convolution option),
//! for whole small models, with augmentation multiplicity K > 1, flat and per-layer clipping.

use crate::common::ConvNet;

use super::TB;
use burn::module::Module;
use burn::tensor::activation::{log_softmax, tanh};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use dp_core::layers::{
    Conv2dConfig, GroupNormConfig, Linear, LinearConfig, ScalarGain, WsConv2dConfig,
};
use dp_core::params::param_infos;
use dp_core::{clip_and_sum, ClipSpec, Clipping, PerExampleEngine};
use std::ops::Range;

/// Per-row cross-entropy.
fn per_row_loss<B: Backend>(logits: Tensor<B, 2>, targets: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let n = targets.dims()[0];
    log_softmax(logits, 1)
        .gather(1, targets.reshape([n, 1]))
        .reshape([n])
        .neg()
}

struct Case {
    inputs: Tensor<TB, 4>,
    targets: Tensor<TB, 1, Int>,
}

fn case(rows: usize, shape: [usize; 3], classes: usize, seed: u64) -> Case {
    let device = Default::default();
    TB::seed(&device, seed);
    let inputs = Tensor::random(
        [rows, shape[0], shape[1], shape[2]],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let labels: Vec<i64> = (0..rows)
        .map(|i| ((i as u64 * 7 + seed) % classes as u64) as i64)
        .collect();
    let targets = Tensor::from_data(TensorData::new(labels, [rows]), &device);
    Case { inputs, targets }
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let base: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
    diff / base.max(1e-30)
}

/// Runs both engines and compares norms and every clipped sum.
fn compare<M, F>(model: &M, rows: usize, views: usize, forward: F, clipping: Clipping)
where
    M: burn::module::AutodiffModule<TB>,
    F: Fn(&M, Tensor<TB, 4>) -> Tensor<TB, 2>,
{
    let c = case(rows, [2, 9, 8], 3, rows as u64 + views as u64);
    let losses = |m: &M, r: Range<usize>| {
        per_row_loss(
            forward(m, c.inputs.clone().slice(r.clone())),
            c.targets.clone().slice(r),
        )
    };
    // First pass with a huge C to see the norms, then clip at their median so that both
    // clipped and untouched examples occur.
    let probe = ClipSpec::new(1e9, clipping).unwrap();
    let unclipped = clip_and_sum(
        PerExampleEngine::BatchOfOne,
        model,
        rows,
        views,
        losses,
        &probe,
        0,
    )
    .unwrap();
    let mut norms = unclipped.norms().to_vec();
    norms.sort_by(f32::total_cmp);
    let clip = ClipSpec::new(norms[norms.len() / 2] as f64, clipping).unwrap();
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
    assert_eq!(fast.examples(), rows / views);
    assert_eq!(oracle.examples(), rows / views);
    for (i, (a, b)) in fast.norms().iter().zip(oracle.norms()).enumerate() {
        let rel = ((a - b) / b).abs();
        assert!(
            rel < 1e-4,
            "example {i}: norm {a} vs oracle {b} (relative {rel:e})"
        );
    }
    for p in param_infos(model).into_iter().filter(|p| p.trainable) {
        let a = fast
            .gradient(p.id)
            .unwrap_or_else(|| panic!("fast path lacks {}", p.path));
        let b = oracle.gradient(p.id).unwrap();
        let rel = relative_l2(&a, &b);
        assert!(
            rel < 1e-4,
            "{}: clipped sum differs by {rel:e} (relative L2)",
            p.path
        );
    }
}

fn head(features: usize, device: &burn::tensor::Device<TB>) -> Linear<TB> {
    LinearConfig::new(features, 3).init(device).unwrap()
}

fn conv_net(config: Conv2dConfig, out_hw: usize) -> ConvNet<TB> {
    let device = Default::default();
    let c_out = config.channels[1];
    ConvNet {
        conv: Some(config.init(&device).unwrap()),
        ws: None,
        norm: None,
        gain: None,
        head: head(c_out * out_hw, &device),
    }
}

#[test]
fn linear_layer_matches_the_oracle() {
    let device = Default::default();
    let model = ConvNet::<TB> {
        conv: None,
        ws: None,
        norm: None,
        gain: None,
        head: head(2 * 9 * 8, &device),
    };
    compare(&model, 7, 1, |m, x| m.forward(x), Clipping::Flat);
}

#[test]
fn linear_layer_on_sequences_matches_the_oracle() {
    #[derive(Module, Debug)]
    struct Seq<B: Backend> {
        a: Linear<B>,
        b: Linear<B>,
    }
    let device = Default::default();
    let model = Seq::<TB> {
        a: LinearConfig::new(8, 5).init(&device).unwrap(),
        b: LinearConfig::new(5 * 18, 3).init(&device).unwrap(),
    };
    // [N, 2, 9, 8] read as a sequence of 18 tokens of width 8.
    compare(
        &model,
        6,
        1,
        |m, x| {
            let n = x.dims()[0];
            let h = tanh(m.a.forward(x.reshape([n, 18, 8])));
            m.b.forward(h.reshape([n, 18 * 5]))
        },
        Clipping::Flat,
    );
}

#[test]
fn conv2d_matches_the_oracle_for_every_option() {
    let base = Conv2dConfig::new([2, 4], [3, 3]);
    // (config, output H·W for a 9×8 input)
    let cases = [
        (base.clone(), 7 * 6),
        (base.clone().with_stride([2, 1]), 4 * 6),
        (base.clone().with_padding([1, 2]), 9 * 10),
        (base.clone().with_asymmetric_padding([0, 1], [1, 0]), 8 * 7),
        (base.clone().with_dilation([2, 2]), 5 * 4),
        (base.clone().with_groups(2), 7 * 6),
        (base.clone().with_bias(false), 7 * 6),
        (Conv2dConfig::new([2, 6], [1, 1]).with_stride([2, 2]), 5 * 4),
        (
            Conv2dConfig::new([2, 4], [4, 4])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .with_groups(2)
                .with_dilation([1, 2]),
            4 * 2,
        ),
    ];
    for (config, out_hw) in cases {
        let model = conv_net(config.clone(), out_hw);
        compare(&model, 5, 1, |m, x| m.forward(x), Clipping::Flat);
    }
}

#[test]
fn ws_conv2d_matches_the_oracle() {
    let device = Default::default();
    for (config, out_hw) in [
        (
            Conv2dConfig::new([2, 4], [3, 3]).with_padding([1, 1]),
            9 * 8,
        ),
        (
            Conv2dConfig::new([2, 4], [3, 3])
                .with_stride([2, 2])
                .with_groups(2),
            4 * 3,
        ),
    ] {
        let model = ConvNet::<TB> {
            conv: None,
            ws: Some(WsConv2dConfig::new(config.clone()).init(&device).unwrap()),
            norm: None,
            gain: None,
            head: head(4 * out_hw, &device),
        };
        compare(&model, 6, 1, |m, x| m.forward(x), Clipping::Flat);
    }
}

#[test]
fn group_norm_and_scalar_gain_match_the_oracle() {
    let device = Default::default();
    let mut gain = ScalarGain::<TB>::new(0.3, &device);
    gain = gain.clone();
    let model = ConvNet::<TB> {
        conv: Some(
            Conv2dConfig::new([2, 4], [3, 3])
                .with_padding([1, 1])
                .init(&device)
                .unwrap(),
        ),
        ws: None,
        norm: Some(GroupNormConfig::new(2, 4).init(&device).unwrap()),
        gain: Some(gain),
        head: head(4 * 9 * 8, &device),
    };
    compare(&model, 6, 1, |m, x| m.forward(x), Clipping::Flat);
}

fn whole_model() -> ConvNet<TB> {
    let device = Default::default();
    ConvNet::<TB> {
        conv: Some(
            Conv2dConfig::new([2, 4], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1])
                .init(&device)
                .unwrap(),
        ),
        ws: Some(
            WsConv2dConfig::new(
                Conv2dConfig::new([4, 6], [3, 3])
                    .with_padding([1, 1])
                    .with_groups(2),
            )
            .init(&device)
            .unwrap(),
        ),
        norm: Some(GroupNormConfig::new(3, 6).init(&device).unwrap()),
        gain: Some(ScalarGain::new(0.5, &device)),
        head: head(6 * 5 * 4, &device),
    }
}

#[test]
fn whole_model_matches_the_oracle_with_flat_and_per_layer_clipping() {
    let model = whole_model();
    compare(&model, 8, 1, |m, x| m.forward(x), Clipping::Flat);
    compare(&model, 8, 1, |m, x| m.forward(x), Clipping::PerLayer);
}

#[test]
fn augmentation_multiplicity_averages_views_before_clipping() {
    let model = whole_model();
    compare(&model, 12, 4, |m, x| m.forward(x), Clipping::Flat);
    compare(&model, 9, 3, |m, x| m.forward(x), Clipping::PerLayer);
}

#[test]
fn frozen_parameters_get_no_gradient() {
    let mut model = whole_model();
    model.conv = model.conv.map(|c| c.no_grad());
    compare(&model, 6, 1, |m, x| m.forward(x), Clipping::Flat);
    let c = case(6, [2, 9, 8], 3, 1);
    let losses = |m: &ConvNet<TB>, r: Range<usize>| {
        per_row_loss(
            m.forward(c.inputs.clone().slice(r.clone())),
            c.targets.clone().slice(r),
        )
    };
    let out = clip_and_sum(
        PerExampleEngine::Fast,
        &model,
        6,
        1,
        losses,
        &ClipSpec::new(1.0, Clipping::Flat).unwrap(),
        0,
    )
    .unwrap();
    let conv = model.conv.as_ref().unwrap();
    assert!(out.gradient(conv.weight.id).is_none());
}
