//! The fast per-example path against the batch-of-one oracle on one device: per layer type
//! and option, whole models (the CNN, WRN-16-4 at a small batch, NFNet-tiny), K = 2 views and
//! per-layer clipping. Each case clips at the median oracle norm, so both clipped and
//! untouched examples occur, and reports the largest relative error of a per-example norm and
//! the error of the whole clipped sum (over every parameter) relative to its norm.
//! `dp-bench --mode check --device cuda|wgpu|cpu` prints the table.

use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::activation::tanh;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use dp_core::layers::{
    Conv2d, Conv2dConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig, ScalarGain, WsConv2d,
    WsConv2dConfig,
};
use dp_core::loss::cross_entropy_per_row;
use dp_core::params::param_infos;
use dp_core::{clip_and_sum, ClipSpec, Clipping, DpError, PerExampleEngine, Result};
use dp_models::{NfNetConfig, TanhCnn, WideResNetConfig};
use std::ops::Range;

/// Largest relative error a case may show in f32 on a GPU (matrix products reorder sums).
pub const TOLERANCE: f64 = 1e-3;

/// One case of the check.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CheckRow {
    /// What was compared.
    pub case: String,
    /// Examples in the micro-batch.
    pub examples: usize,
    /// max over examples of |fast − oracle| / oracle, of the per-example norms.
    pub norm_error: f64,
    /// ‖fast − oracle‖ / ‖oracle‖ of the clipped sum over all parameters.
    pub sum_error: f64,
    /// Both errors within [`TOLERANCE`].
    pub pass: bool,
}

/// One convolution-like layer (each optional), then a linear head.
#[derive(Module, Debug)]
struct Block<B: Backend> {
    conv: Option<Conv2d<B>>,
    ws: Option<WsConv2d<B>>,
    norm: Option<GroupNorm<B>>,
    gain: Option<ScalarGain<B>>,
    head: Linear<B>,
}

impl<B: Backend> Block<B> {
    fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
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

fn shape_error(e: impl std::fmt::Display) -> DpError {
    DpError::Shape(e.to_string())
}

/// Random images `[rows, c, h, w]` and labels below 10.
fn batch<B: Backend>(
    rows: usize,
    [c, h, w]: [usize; 3],
    seed: u64,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    B::seed(device, seed);
    let x = Tensor::random([rows, c, h, w], Distribution::Normal(0.0, 1.0), device);
    let y: Vec<i64> = (0..rows as i64).map(|i| (i * 7 + 3) % 10).collect();
    (x, Tensor::from_data(TensorData::new(y, [rows]), device))
}

/// A micro-batch: rows (examples × views), views per example, image shape, clipping.
#[derive(Clone, Copy)]
struct Batch(usize, usize, [usize; 3], Clipping);

fn compare<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    case: &str,
    model: &M,
    forward: impl Fn(&M, Tensor<AB, 4>) -> Tensor<AB, 2>,
    Batch(rows, views, image, clipping): Batch,
    device: &AB::Device,
) -> Result<CheckRow> {
    let (x, y) = batch::<AB>(rows, image, rows as u64 + views as u64, device);
    let losses = |m: &M, r: Range<usize>| {
        cross_entropy_per_row(forward(m, x.clone().slice(r.clone())), y.clone().slice(r))
    };
    let run = |engine, c: f64| {
        let clip = ClipSpec::new(c, clipping)?;
        clip_and_sum(engine, model, rows, views, losses, &clip, 0)
    };
    let mut norms = run(PerExampleEngine::BatchOfOne, 1e9)?.norms().to_vec();
    norms.sort_by(f32::total_cmp);
    let c = f64::from(norms[norms.len() / 2]).max(1e-6);
    let fast = run(PerExampleEngine::Fast, c)?;
    let oracle = run(PerExampleEngine::BatchOfOne, c)?;
    let norm_error = fast
        .norms()
        .iter()
        .zip(oracle.norms())
        .map(|(a, b)| f64::from((a - b).abs()) / f64::from(*b).max(1e-30))
        .fold(0.0, f64::max);
    let (mut diff, mut base) = (0.0f64, 0.0f64);
    for p in param_infos(model).into_iter().filter(|p| p.trainable) {
        let (Some(a), Some(b)) = (fast.gradient(p.id), oracle.gradient(p.id)) else {
            return Err(DpError::Shape(format!(
                "{case}: no clipped sum for {}",
                p.path
            )));
        };
        for (a, b) in a.iter().zip(&b) {
            diff += f64::from(a - b).powi(2);
            base += f64::from(*b).powi(2);
        }
    }
    let sum_error = diff.sqrt() / base.sqrt().max(1e-30);
    let examples = rows / views;
    let pass = fast.examples() == examples && norm_error <= TOLERANCE && sum_error <= TOLERANCE;
    Ok(CheckRow {
        case: case.into(),
        examples,
        norm_error,
        sum_error,
        pass,
    })
}

fn block<B: Backend>(
    conv: Option<Conv2dConfig>,
    ws: Option<(Conv2dConfig, bool)>,
    norm: Option<(usize, usize)>,
    head_features: usize,
    device: &B::Device,
) -> Result<Block<B>> {
    let ws = match ws {
        None => None,
        Some((config, bias_and_gain)) => {
            let c_out = config.channels[1];
            let layer = WsConv2dConfig::new(config).init::<B>(device)?;
            Some(if bias_and_gain {
                WsConv2d {
                    bias: Some(Param::from_tensor(Tensor::random(
                        [c_out],
                        Distribution::Normal(0.5, 0.5),
                        device,
                    ))),
                    gain: Param::from_tensor(Tensor::random(
                        [c_out],
                        Distribution::Uniform(0.5, 2.0),
                        device,
                    )),
                    ..layer
                }
            } else {
                layer
            })
        }
    };
    Ok(Block {
        conv: conv.map(|c| c.init(device)).transpose()?,
        ws,
        norm: norm
            .map(|(g, c)| GroupNormConfig::new(g, c).init(device))
            .transpose()?,
        gain: norm.map(|_| ScalarGain::new(0.5, device)),
        head: LinearConfig::new(head_features, 10).init(device)?,
    })
}

/// Every case on `device`, in order; progress on stderr.
pub fn run<AB: AutodiffBackend>(device: &AB::Device) -> Result<Vec<CheckRow>> {
    let mut rows = Vec::new();
    let mut push = |row: Result<CheckRow>| -> Result<()> {
        let row = row?;
        eprintln!(
            "  {:<44} norms {:.1e}  sums {:.1e}  {}",
            row.case,
            row.norm_error,
            row.sum_error,
            if row.pass { "ok" } else { "FAIL" }
        );
        rows.push(row);
        Ok(())
    };
    let f = |m: &Block<AB>, x| m.forward(x);
    let image = [4, 9, 8];
    let convs: [(&str, Conv2dConfig, usize); 4] = [
        (
            "conv2d 3×3 stride 2 padding 1",
            Conv2dConfig::new([4, 6], [3, 3])
                .with_stride([2, 2])
                .with_padding([1, 1]),
            6 * 5 * 4,
        ),
        (
            "conv2d 3×2 dilation 2",
            Conv2dConfig::new([4, 6], [3, 2]).with_dilation([2, 2]),
            6 * 5 * 6,
        ),
        (
            "conv2d 3×3 groups 2 padding 1",
            Conv2dConfig::new([4, 6], [3, 3])
                .with_groups(2)
                .with_padding([1, 1]),
            6 * 9 * 8,
        ),
        (
            "conv2d 1×1 no bias",
            Conv2dConfig::new([4, 6], [1, 1]).with_bias(false),
            6 * 9 * 8,
        ),
    ];
    for (name, config, features) in convs {
        let model = block::<AB>(Some(config), None, None, features, device)?;
        push(compare(
            name,
            &model,
            f,
            Batch(8, 1, image, Clipping::Flat),
            device,
        ))?;
    }
    let gram = Conv2dConfig::new([4, 16], [3, 3]).with_stride([3, 3]);
    // 2×2 output positions, d = 36, o = 16: P would be over twice the activations.
    let model = block::<AB>(None, Some((gram, true)), None, 16 * 2 * 2, device)?;
    let flat = |rows, views, image| Batch(rows, views, image, Clipping::Flat);
    let per_layer = |rows, views, image| Batch(rows, views, image, Clipping::PerLayer);
    let name = "ws_conv2d Gram route, bias and gain";
    push(compare(name, &model, f, flat(8, 1, [4, 6, 6]), device))?;
    let explicit = Conv2dConfig::new([4, 6], [3, 3]).with_padding([1, 1]);
    let model = block::<AB>(None, Some((explicit, true)), None, 6 * 9 * 8, device)?;
    let name = "ws_conv2d explicit route, bias and gain";
    push(compare(name, &model, f, flat(8, 1, image), device))?;
    let conv = Conv2dConfig::new([4, 6], [3, 3])
        .with_stride([2, 2])
        .with_padding([1, 1]);
    let ws = Conv2dConfig::new([6, 6], [3, 3]).with_padding([1, 1]);
    let model = block::<AB>(
        Some(conv),
        Some((ws, false)),
        Some((3, 6)),
        6 * 5 * 4,
        device,
    )?;
    let name = "conv, ws_conv, group_norm, scalar_gain";
    push(compare(name, &model, f, flat(8, 1, image), device))?;
    let name = "the same, K = 2 views, per-layer clipping";
    push(compare(name, &model, f, per_layer(8, 2, image), device))?;
    let cnn = TanhCnn::<AB>::new(10, device).map_err(shape_error)?;
    let mnist = [1, 28, 28];
    for (name, batch) in [
        ("fmnist-cnn, 16 examples", flat(16, 1, mnist)),
        ("fmnist-cnn, K = 2", flat(16, 2, mnist)),
    ] {
        push(compare(name, &cnn, |m, x| m.forward(x), batch, device))?;
    }
    let wrn = WideResNetConfig::new(16, 4, 10)
        .init::<AB>(device)
        .map_err(shape_error)?;
    let cifar = [3, 32, 32];
    for (name, batch) in [
        ("wrn16-4, 4 examples 3×32×32", flat(4, 1, cifar)),
        ("wrn16-4, K = 2, per-layer clipping", per_layer(4, 2, cifar)),
    ] {
        push(compare(name, &wrn, |m, x| m.forward(x), batch, device))?;
    }
    let mut config = NfNetConfig::tiny().with_input_size(16);
    config.depths = [1, 1, 1, 1];
    let mut nfnet = config.init::<AB>(device).map_err(shape_error)?;
    // SkipInit gains start at 0, which would zero every residual branch's gradient.
    for block in nfnet.stages.iter_mut().flatten() {
        block.skipinit_gain.gain = block.skipinit_gain.gain.clone().map(|g| g.add_scalar(0.5));
    }
    let name = "nfnet-tiny, 4 examples 3×16×16";
    push(compare(
        name,
        &nfnet,
        |m, x| m.forward(x),
        flat(4, 1, [3, 16, 16]),
        device,
    ))?;
    Ok(rows)
}
