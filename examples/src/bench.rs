//! Timing of non-private, private (fast path) and naive (batch-of-one) steps on one model.

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::audit::CanaryRows;
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::sampler::{FixedSizeSampler, Sampler};
use dp_core::{DpOptimizer, DpSgdConfig, PerExampleEngine, Result};
use std::time::Instant;

/// A model the benchmark can drive.
pub trait BenchModel<B: AutodiffBackend>: AutodiffModule<B> {
    /// Logits of a batch of images.
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2>;
}

impl<B: AutodiffBackend> BenchModel<B> for dp_models::TanhCnn<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: AutodiffBackend> BenchModel<B> for dp_models::WideResNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

impl<B: AutodiffBackend> BenchModel<B> for dp_models::NfNet<B> {
    fn logits(&self, x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward(x)
    }
}

/// A synthetic batch of images and labels (timing does not depend on the values).
pub struct Batch<B: AutodiffBackend> {
    /// `[N, C, H, W]`.
    pub inputs: Tensor<B, 4>,
    /// `[N]`.
    pub targets: Tensor<B, 1, Int>,
}

impl<B: AutodiffBackend> Batch<B> {
    /// Random standard-normal images of `shape` and labels below `classes`.
    pub fn random(batch: usize, shape: [usize; 3], classes: usize, device: &B::Device) -> Self {
        let inputs = Tensor::random(
            [batch, shape[0], shape[1], shape[2]],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let labels: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
        let targets = Tensor::from_data(TensorData::new(labels, [batch]), device);
        Self { inputs, targets }
    }
}

fn sync<B: AutodiffBackend>(device: &B::Device) {
    let _ = B::sync(device);
}

/// One non-private SGD step (mean loss, one backward).
pub fn nonprivate_step<B: AutodiffBackend, M: BenchModel<B>, O: Optimizer<M, B>>(
    model: M,
    optim: &mut O,
    batch: &Batch<B>,
) -> M {
    let loss =
        cross_entropy_per_row(model.logits(batch.inputs.clone()), batch.targets.clone()).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    optim.step(0.01, model, grads)
}

/// A DP optimizer for the benchmark: σ = 1, C = 1, `views` views per example, fixed-size
/// batches, seeded noise.
pub fn private_optimizer<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    engine: PerExampleEngine,
    views: usize,
) -> Result<DpOptimizer<B, M, impl Optimizer<M, B>>> {
    let config = DpSgdConfig {
        engine,
        augmult: views,
        ..DpSgdConfig::new(1.0, 1.0)
    };
    let accountant = AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::ReplaceOne)?;
    let optimizer = DpOptimizer::new(model, SgdConfig::new().init::<B, M>(), config, accountant)?;
    Ok(optimizer.with_noise(GaussianNoise::seeded(0)))
}

/// One private step on the whole batch as a single micro-batch.
pub fn private_step<B: AutodiffBackend, M: BenchModel<B>, O: Optimizer<M, B>>(
    model: M,
    optim: &mut DpOptimizer<B, M, O>,
    sampler: &mut FixedSizeSampler,
    batch: &Batch<B>,
) -> Result<M> {
    let sampled = sampler.next_batch();
    let rows = sampled.indices().len() * optim.config().augmult;
    let mut step = optim.begin_step(&sampled)?;
    optim.accumulate(&mut step, &model, rows, |m, r| {
        cross_entropy_per_row(
            m.logits(batch.inputs.clone().slice(r.clone())),
            batch.targets.clone().slice(r),
        )
    })?;
    optim.finish_step(step, model, 0.01)
}

/// Milliseconds taken by `f`, after synchronizing the device.
pub fn time_ms<B: AutodiffBackend, T>(device: &B::Device, f: impl FnOnce() -> T) -> (T, f64) {
    sync::<B>(device);
    let start = Instant::now();
    let out = f();
    sync::<B>(device);
    (out, start.elapsed().as_secs_f64() * 1e3)
}

/// The median of `values` (which must be non-empty).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A fixed-size sampler drawing `batch` of `batch` examples (the data is synthetic).
pub fn sampler(batch: usize) -> Result<FixedSizeSampler> {
    FixedSizeSampler::seeded(batch as u64, batch as u64, 0)
}

/// One example in this many is a canary in [`canary_rows`] (1%: about the share of 1,000
/// canaries, half of them in, among Fashion-MNIST's 60,000 examples, rounded up).
pub const CANARY_EVERY: usize = 100;

/// Canary rows for timing the audit's cost: one example in [`CANARY_EVERY`] is a canary (all
/// its views), the others real; the block has `canaries` coordinates. For `examples` examples
/// of `views` rows each.
pub fn canary_rows<B: AutodiffBackend>(
    examples: usize,
    views: usize,
    canaries: usize,
    device: &B::Device,
) -> Result<CanaryRows<B>> {
    let rows: Vec<Option<usize>> = (0..examples * views)
        .map(|r| {
            let e = r / views;
            e.is_multiple_of(CANARY_EVERY)
                .then_some((e / CANARY_EVERY) % canaries)
        })
        .collect();
    CanaryRows::new(canaries, &rows, dp_core::audit::DEFAULT_CANARY_NORM, device)
}

/// [`private_step`] for a model trained with canaries.
pub fn audited_private_step<B, M, O>(
    model: dp_core::audit::Audited<B, M>,
    optim: &mut DpOptimizer<B, dp_core::audit::Audited<B, M>, O>,
    sampler: &mut FixedSizeSampler,
    batch: &Batch<B>,
    canaries: &CanaryRows<B>,
) -> Result<dp_core::audit::Audited<B, M>>
where
    B: AutodiffBackend,
    M: BenchModel<B> + burn::module::ModuleDisplay,
    M::InnerModule: burn::module::ModuleDisplay,
    O: Optimizer<dp_core::audit::Audited<B, M>, B>,
{
    let sampled = sampler.next_batch();
    let rows = sampled.indices().len() * optim.config().augmult;
    let mut step = optim.begin_step(&sampled)?;
    optim.accumulate(&mut step, &model, rows, |m, r| {
        let real = cross_entropy_per_row(
            m.model.logits(batch.inputs.clone().slice(r.clone())),
            batch.targets.clone().slice(r.clone()),
        );
        let rows = canaries.slice(r);
        m.losses(real, rows.is_real, rows.inputs)
    })?;
    optim.finish_step(step, model, 0.01)
}
