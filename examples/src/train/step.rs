//! One private step of the loop, the same in one process and on every peer of a
//! data-parallel group: the micro-batches of a (shard of a) logical batch → K views → clipped
//! per-example sum → noise once → update.

use super::audit::CanaryAudit;
use super::classifier::Classifier;
use super::config::RunConfig;
use super::eval::tensors;
use super::parallel::agree_and_sum;
use crate::augment::Augment;
use crate::data::Split;
use crate::error::Result;
use crate::features::{batch_rows, Part};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor};
use dp_core::audit::CanaryRows;
use dp_core::collective::AllReduce;
use dp_core::sampler::SampledBatch;
use dp_core::DpOptimizer;
use std::cell::Cell;

/// What a step reads besides the model and optimizer.
pub struct StepData<'a> {
    /// The run's settings.
    pub config: &'a RunConfig,
    /// The data.
    pub split: &'a Split,
    /// The training augmentation (K views).
    pub augment: Augment,
    /// Seed of the augmentation randomness (OS entropy unless the run is seeded).
    pub augment_seed: u64,
    /// Input resolution of fine-tuning.
    pub resolution: Option<usize>,
}

/// A micro-batch's tensors: images and labels of its real examples (K views each) followed
/// by its canaries' rows (zero images, label 0), and which rows are canaries.
struct MicroBatch<B: Backend> {
    x: Tensor<B, 4>,
    y: Tensor<B, 1, Int>,
    canaries: Option<MicroBatchCanaries<B>>,
}

/// The canary rows of a [`MicroBatch`] (after its `real_rows` real rows).
struct MicroBatchCanaries<B: Backend> {
    rows: CanaryRows<B>,
    real_rows: usize,
}

fn micro_batch<B: Backend>(
    data: &StepData,
    audit: Option<&CanaryAudit>,
    indices: &[usize],
    step: u64,
    device: &B::Device,
) -> Result<MicroBatch<B>> {
    let augment = &data.augment;
    let rows = |indices: &[usize]| {
        batch_rows(
            data.split,
            Part::Train,
            indices,
            augment,
            data.augment_seed,
            step,
        )
    };
    let Some(audit) = audit else {
        let (values, labels, shape) = rows(indices)?;
        let (x, y) = tensors::<B>(values, labels, shape, data.resolution, device);
        return Ok(MicroBatch {
            x,
            y,
            canaries: None,
        });
    };
    let parts = audit.split(indices);
    let (mut values, mut labels, shape) = rows(&parts.real)?;
    let real_rows = labels.len();
    let canary_rows = parts.canaries.len() * augment.views;
    values.resize(
        values.len() + canary_rows * shape.iter().product::<usize>(),
        0.0,
    );
    labels.resize(real_rows + canary_rows, 0);
    let (x, y) = tensors::<B>(values, labels, shape, data.resolution, device);
    let canaries = audit
        .rows::<B>(parts.real.len(), &parts.canaries, device)?
        .map(|rows| MicroBatchCanaries { rows, real_rows });
    Ok(MicroBatch { x, y, canaries })
}

/// The training loss of a step: the sum over its real rows, and their number.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepLoss {
    /// Sum of the real rows' losses.
    pub sum: f64,
    /// Real rows.
    pub rows: usize,
}

/// Takes the private step on `batch` (a whole logical batch, or with `peer` this peer's shard
/// of it) and returns the updated model and the step's training loss. With `peer`, the peers
/// agree that every one of them accumulated its shard before the sum is all-reduced (if one
/// failed, all stop), and the loss is the whole group's.
#[allow(clippy::too_many_arguments)]
pub fn take_step<AB, M, O>(
    model: M,
    optimizer: &mut DpOptimizer<AB, M, O>,
    batch: &SampledBatch,
    audit: Option<&CanaryAudit>,
    data: &StepData,
    peer: Option<&dyn AllReduce<AB::InnerBackend>>,
    device: &AB::Device,
) -> Result<(M, StepLoss)>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    O: Optimizer<M, AB>,
{
    let step_index = optimizer.steps();
    let mut step = optimizer.begin_step(batch)?;
    let (sum, rows) = (Cell::new(0f64), Cell::new(0usize));
    for indices in batch.micro_batches(data.config.micro_batch) {
        let MicroBatch { x, y, canaries } =
            micro_batch::<AB>(data, audit, indices, step_index, device)?;
        let (n_rows, real_rows) = (y.dims()[0], canaries.as_ref().map(|c| c.real_rows));
        let canaries = canaries.map(|c| c.rows);
        optimizer.accumulate(&mut step, &model, n_rows, |m, r| {
            let canary_rows = canaries.as_ref().map(|c| c.slice(r.clone()));
            let mask = canary_rows.as_ref().map(|c| c.is_real.clone());
            let losses = m.train_losses(
                x.clone().slice(r.clone()),
                y.clone().slice(r.clone()),
                canary_rows,
            );
            // The training loss reported is the real rows' only.
            let real = match mask {
                Some(mask) => losses.clone() * mask,
                None => losses.clone(),
            };
            sum.set(sum.get() + real.sum().into_scalar().elem::<f64>());
            let real_in_r = real_rows.map_or(r.len(), |n| r.end.min(n).saturating_sub(r.start));
            rows.set(rows.get() + real_in_r);
            losses
        })?;
    }
    let lr = data.config.learning_rate;
    let loss = StepLoss {
        sum: sum.get(),
        rows: rows.get(),
    };
    match peer {
        Some(peer) => {
            // The group's loss: the sum over every peer's shard.
            let loss = agree_and_sum(peer, false, loss, device)?;
            Ok((
                optimizer.finish_step_all_reduced(step, model, lr, peer)?,
                loss,
            ))
        }
        None => Ok((optimizer.finish_step(step, model, lr)?, loss)),
    }
}
