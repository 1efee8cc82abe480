//! Device-to-host reads on the private step's hot path, counted by `dp_core::readback`: one
//! per micro-batch (the per-example norms, with the doubts of the weight-standardized Gram
//! route in the same read), none for noise, the update or the EMA. A micro-batch whose doubts
//! are raised (here: a WS gain of exactly 0 on the Gram route) is recomputed exactly, which
//! costs a second read. Mutation: reading the smallest |γr| back to decide the route (as
//! dp-core did before) fails the first test ("3 micro-batches, 6 reads").

use crate::common::ConvNet;

use super::TB;
use burn::module::Param;
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::layers::{
    Conv2dConfig, GroupNormConfig, LinearConfig, ScalarGain, WsConv2d, WsConv2dConfig,
};
use dp_core::loss::cross_entropy_per_row;
use dp_core::readback::host_reads;
use dp_core::sampler::{FixedSizeSampler, Sampler};
use dp_core::{clip_and_sum, ClipSpec, Clipping, DpOptimizer, DpSgdConfig, PerExampleEngine};
use std::ops::Range;

type Data = (Tensor<TB, 4>, Tensor<TB, 1, Int>);

fn data(rows: usize) -> Data {
    let device = Default::default();
    TB::seed(&device, 11);
    let x = Tensor::random([rows, 4, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let y: Vec<i64> = (0..rows as i64).map(|i| i % 3).collect();
    (x, Tensor::from_data(TensorData::new(y, [rows]), &device))
}

/// Conv, a WS conv on the Gram route (4 output positions, d = 36, o = 16: the output is kept
/// and its norms take the closed form), GroupNorm, a scalar gain and a head; the WS gain of
/// channel 0 is `gain0`.
fn net(gain0: f32) -> ConvNet<TB> {
    let device = Default::default();
    let ws = WsConv2dConfig::new(Conv2dConfig::new([4, 16], [3, 3]).with_stride([3, 3]))
        .init::<TB>(&device)
        .unwrap();
    let mut gains = vec![1.3f32; 16];
    gains[0] = gain0;
    let gain = Tensor::from_data(TensorData::new(gains, [16]), &device);
    ConvNet {
        conv: Some(
            Conv2dConfig::new([4, 4], [3, 3])
                .with_padding([1, 1])
                .init(&device)
                .unwrap(),
        ),
        ws: Some(WsConv2d {
            gain: Param::from_tensor(gain),
            ..ws
        }),
        norm: Some(GroupNormConfig::new(4, 16).init(&device).unwrap()),
        gain: Some(ScalarGain::new(0.5, &device)),
        head: LinearConfig::new(16 * 2 * 2, 3).init(&device).unwrap(),
    }
}

fn rows_of(data: &Data, indices: &[usize]) -> Data {
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let idx =
        Tensor::<TB, 1, Int>::from_data(TensorData::new(idx, [indices.len()]), &Default::default());
    (
        data.0.clone().select(0, idx.clone()),
        data.1.clone().select(0, idx),
    )
}

#[test]
fn a_private_step_reads_the_device_once_per_micro_batch() {
    let (n, batch_size, micro) = (12, 8, 3);
    let all = data(n);
    let model = net(1.3);
    let mut config = DpSgdConfig::new(1.0, 1.0);
    config.ema_decay = Some(0.9);
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<TB, ConvNet<TB>>(),
        config,
        AccountantConfig::default_for(AccountantKind::Rdp)
            .build(NeighboringRelation::ReplaceOne)
            .unwrap(),
    )
    .unwrap();
    let batch = FixedSizeSampler::new(n as u64, batch_size)
        .unwrap()
        .next_batch();
    let micro_batches = batch.micro_batches(micro).count();
    assert_eq!(micro_batches, 3);
    let before = host_reads();
    let model = opt
        .step(
            model,
            &batch,
            micro,
            0.1,
            |idx| rows_of(&all, idx),
            |m, d, r| {
                cross_entropy_per_row(
                    m.forward(d.0.clone().slice(r.clone())),
                    d.1.clone().slice(r),
                )
            },
        )
        .unwrap();
    let reads = host_reads() - before;
    assert_eq!(
        reads, micro_batches as u64,
        "{micro_batches} micro-batches, {reads} reads"
    );
    drop(model);
}

#[test]
fn a_raised_doubt_recomputes_the_micro_batch_at_the_cost_of_one_more_read() {
    let all = data(6);
    let losses = |m: &ConvNet<TB>, r: Range<usize>| {
        cross_entropy_per_row(
            m.forward(all.0.clone().slice(r.clone())),
            all.1.clone().slice(r),
        )
    };
    let clip = ClipSpec::new(1e9, Clipping::Flat).unwrap();
    for (gain0, expected) in [(1.3, 1), (0.0, 2)] {
        let model = net(gain0);
        let before = host_reads();
        let sum = clip_and_sum(PerExampleEngine::Fast, &model, 6, 1, losses, &clip, 0).unwrap();
        assert_eq!(
            host_reads() - before,
            expected,
            "WS gain of channel 0 = {gain0}"
        );
        assert!(sum.norms().iter().all(|n| n.is_finite() && *n > 0.0));
    }
}
