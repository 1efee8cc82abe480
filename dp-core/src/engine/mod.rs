//! Per-example clipping of one micro-batch: the fast one-backward path and the batch-of-one
//! oracle, behind one interface.

mod batch_of_one;
mod checks;
mod fast;

use crate::clipping::ClipSpec;
use crate::error::{DpError, Result};
use crate::params::{param_infos, ParamInfo};
use crate::per_example::FlatGrad;
use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;

/// How per-example gradients are computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerExampleEngine {
    /// One backward pass through probes on the DP-aware layers ([`crate::layers`]); every
    /// trainable parameter must belong to such a layer.
    ///
    /// # Privacy
    /// The per-example gradients are formed from each layer's recorded input and output
    /// gradient, so they are example i's gradient only if row i of every DP-aware layer
    /// depends on example i alone (rows = examples × augmult views). Checked before any norm
    /// is computed, each an error rather than a mis-clip:
    /// - every trainable parameter is recorded by exactly one layer call
    ///   ([`crate::DpError::UncoveredParameters`]);
    /// - every recorded layer's input and output lead with the micro-batch's rows
    ///   ([`crate::DpError::Shape`], naming the layer and its shape): a sequence-first
    ///   `[T, N, …]`, a flattened `[N·T, …]` or a shared `[1, …]` input is refused;
    /// - no trainable parameter gets gradient from outside its layer (weight tying with
    ///   another module, a penalty on the parameter in the loss): the layers use their
    ///   parameters detached while recording, so such a gradient shows up as a parameter
    ///   gradient after the backward pass, at the cost of one look-up per parameter
    ///   ([`crate::DpError::UncoveredParameters`]).
    ///
    /// Not detectable from shapes, and not covered: a layout whose leading dimension equals
    /// the rows by coincidence (sequence-first with T = N rows, a batch transposed or permuted
    /// before a layer), and operations that mix rows (BatchNorm, attention across the batch;
    /// [`crate::validate_model`] finds the known layers). Check a new model once against
    /// [`PerExampleEngine::BatchOfOne`], which makes none of these assumptions.
    #[default]
    Fast,
    /// One forward and backward pass per example: works for any burn module, slowly. The
    /// reference the fast path is tested against.
    BatchOfOne,
}

/// The sum over a micro-batch of clipped per-example gradients.
#[derive(Clone, Debug)]
pub struct ClippedSum<B: Backend> {
    pub(crate) sums: HashMap<ParamId, FlatGrad<B>>,
    norms: Vec<f32>,
}

impl<B: Backend> ClippedSum<B> {
    /// An empty sum (no examples).
    pub(crate) fn empty() -> Self {
        Self {
            sums: HashMap::new(),
            norms: Vec::new(),
        }
    }

    /// The L2 norm of each example's gradient before clipping, over all trainable parameters.
    pub fn norms(&self) -> &[f32] {
        &self.norms
    }

    /// Number of examples summed.
    pub fn examples(&self) -> usize {
        self.norms.len()
    }

    /// The summed clipped gradient of one parameter, flattened.
    pub fn gradient(&self, id: ParamId) -> Option<Vec<f32>> {
        self.sums
            .get(&id)
            .map(|g| crate::readback::to_host(g.values.clone()))
    }

    /// Adds another micro-batch's sum.
    pub(crate) fn merge(&mut self, other: ClippedSum<B>) {
        for (id, grad) in other.sums {
            match self.sums.get_mut(&id) {
                Some(existing) => existing.values = existing.values.clone() + grad.values,
                None => {
                    self.sums.insert(id, grad);
                }
            }
        }
        self.norms.extend(other.norms);
    }
}

/// Clips and sums the per-example gradients of one micro-batch.
///
/// `losses(model, rows)` must return the loss of each row in `rows` (shape `[rows.len()]`) of
/// the micro-batch, which holds `rows / views` examples with their `views` augmented views in
/// consecutive rows. An example's gradient is the mean of its views' gradients.
pub fn clip_and_sum<AB, M, F>(
    engine: PerExampleEngine,
    model: &M,
    rows: usize,
    views: usize,
    losses: F,
    clip: &ClipSpec,
    step: u64,
) -> Result<ClippedSum<AB::InnerBackend>>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
    F: Fn(&M, Range<usize>) -> Tensor<AB, 1>,
{
    if views == 0 || !rows.is_multiple_of(views) {
        return Err(DpError::Shape(format!(
            "{rows} rows are not a whole number of examples with augmult K = {views}"
        )));
    }
    if rows == 0 {
        return Ok(ClippedSum::empty());
    }
    let params: Vec<ParamInfo> = param_infos(model)
        .into_iter()
        .filter(|p| p.trainable)
        .collect();
    let out = match engine {
        PerExampleEngine::Fast => fast::clip_and_sum(model, rows, views, &losses, clip, &params)?,
        PerExampleEngine::BatchOfOne => {
            batch_of_one::clip_and_sum(model, rows, views, &losses, clip, &params)?
        }
    };
    if let Some((i, bad)) = out.norms.iter().enumerate().find(|(_, n)| !n.is_finite()) {
        return Err(DpError::NonFiniteGradient {
            step,
            detail: format!("example {i} of the micro-batch has gradient norm {bad}"),
        });
    }
    Ok(out)
}

/// Examples per im2col chunk of a convolution whose per-example gradients are formed
/// explicitly, for `examples` examples of `views` views, `positions` output positions, fan-in
/// `fan_in` per group and `groups` groups: exposed so that tests can make sure they take
/// several chunks. Not a stable interface.
#[doc(hidden)]
pub fn conv_chunk_examples(
    examples: usize,
    views: usize,
    positions: usize,
    fan_in: usize,
    groups: usize,
) -> usize {
    crate::per_example::chunk_examples(examples, views, positions, fan_in, groups)
}

/// Reads a `[E]` tensor of squared norms as norms, followed by the one-element `extra`
/// tensors, in one read.
fn norms_of<B: Backend>(squared: Tensor<B, 1>, extra: Vec<Tensor<B, 1>>) -> Vec<f32> {
    let norms = squared.sqrt();
    if extra.is_empty() {
        return crate::readback::to_host(norms);
    }
    let mut all = vec![norms];
    all.extend(extra);
    crate::readback::to_host(Tensor::cat(all, 0))
}
