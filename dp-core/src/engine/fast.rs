//! The one-backward per-example path (see [`crate::tape`] and [`crate::per_example`]).

use super::checks::{check_coverage, check_rows, check_untaped};
use super::{norms_of, ClippedSum};
use crate::clipping::ClipSpec;
use crate::error::{DpError, Result};
use crate::params::ParamInfo;
use crate::tape;
use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

pub(super) fn clip_and_sum<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    model: &M,
    rows: usize,
    views: usize,
    losses: &dyn Fn(&M, Range<usize>) -> Tensor<AB, 1>,
    clip: &ClipSpec,
    params: &[ParamInfo],
) -> Result<ClippedSum<AB::InnerBackend>> {
    // The Gram route of weight-standardized layers takes two shortcuts that are inaccurate in
    // rare cases (a gain γ_c near 0; gradients the standardization removes almost entirely).
    // Whether they were is read with the norms, in the micro-batch's one read; if so, the
    // micro-batch is recomputed forming every such layer's per-example gradients.
    match attempt(model, rows, views, losses, clip, params, false)? {
        Some(sum) => Ok(sum),
        None => attempt(model, rows, views, losses, clip, params, true)?.ok_or_else(|| {
            DpError::Shape("the exact route of the per-example norms raised a doubt".into())
        }),
    }
}

/// One pass over the micro-batch; `None` if a doubt was raised (never with `exact`).
fn attempt<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    model: &M,
    rows: usize,
    views: usize,
    losses: &dyn Fn(&M, Range<usize>) -> Tensor<AB, 1>,
    clip: &ClipSpec,
    params: &[ParamInfo],
    exact: bool,
) -> Result<Option<ClippedSum<AB::InnerBackend>>> {
    let trainable: HashSet<ParamId> = params.iter().map(|p| p.id).collect();
    // The layers use their trainable parameters detached while recording: the probes carry
    // their gradients, and any gradient a parameter still gets comes from elsewhere.
    let (loss, records) = tape::record::<AB, _>(trainable.clone(), || losses(model, 0..rows));
    if loss.dims() != [rows] {
        return Err(DpError::Shape(format!(
            "the loss has shape {:?}, expected [{rows}] (one per row)",
            loss.dims()
        )));
    }
    check_coverage(&records, params)?;
    check_rows(&records, params, rows)?;
    let mut grads = loss.sum().backward();
    // The output gradient of every layer, taken out of the gradient store.
    let outputs: Vec<_> = records
        .into_iter()
        .map(|record| {
            let g = record
                .probe
                .grad_remove(&mut grads)
                .unwrap_or_else(|| Tensor::zeros(record.probe.dims(), &record.probe.device()));
            (record.data, g)
        })
        .collect();
    check_untaped(model, &grads, params, &trainable)?;
    drop(grads);
    // Layer by layer: form the per-example norms, keep only what the clipped sum will need.
    let mut prepared = Vec::with_capacity(outputs.len());
    let mut squared = Vec::with_capacity(outputs.len());
    let mut doubts = Vec::new();
    for (data, g) in outputs {
        let mut layer = data.prepare(g, views, exact)?;
        squared.push(layer.squared_norms()?);
        doubts.extend(layer.doubts());
        layer.compact()?;
        prepared.push(layer);
    }
    let examples = rows / views;
    if squared.is_empty() {
        // Nothing trainable: every example's gradient is zero.
        return Ok(Some(ClippedSum {
            sums: HashMap::new(),
            norms: vec![0.0; examples],
        }));
    }
    let total = squared
        .iter()
        .skip(1)
        .fold(squared[0].clone(), |acc, s| acc + s.clone());
    // The micro-batch's one read: the norms, then the doubts.
    let mut read = norms_of(total, doubts);
    if read.len() < examples {
        return Err(DpError::Shape(format!(
            "reading {examples} per-example norms from the device gave {} values",
            read.len()
        )));
    }
    if read[examples..].iter().any(|doubt| *doubt > 0.0) {
        return Ok(None);
    }
    read.truncate(examples);
    let factors = clip.factors(&squared);
    let mut out = ClippedSum {
        sums: HashMap::new(),
        norms: read,
    };
    for (layer, factor) in prepared.into_iter().zip(factors) {
        for (id, grad) in layer.weighted_sums(factor)? {
            out.sums.insert(id, grad);
        }
    }
    Ok(Some(out))
}
