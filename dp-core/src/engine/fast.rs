//! The one-backward per-example path (see [`crate::tape`] and [`crate::per_example`]).

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
    let trainable: HashSet<ParamId> = params.iter().map(|p| p.id).collect();
    // Parameters need no gradient of their own: the probes carry everything.
    let frozen = model.clone().no_grad();
    let (loss, records) = tape::record::<AB, _>(trainable.clone(), || losses(&frozen, 0..rows));
    if loss.dims() != [rows] {
        return Err(DpError::Shape(format!(
            "the loss has shape {:?}, expected [{rows}] (one per row)",
            loss.dims()
        )));
    }
    check_coverage(&records, params)?;
    let mut grads = loss.sum().backward();
    // Layer by layer: take the layer's output gradient out of the gradient store, form its
    // per-example norms, keep only what its clipped sum will need.
    let mut prepared = Vec::with_capacity(records.len());
    let mut squared = Vec::with_capacity(records.len());
    for record in records {
        let g = record
            .probe
            .grad_remove(&mut grads)
            .unwrap_or_else(|| Tensor::zeros(record.probe.dims(), &record.probe.device()));
        let mut layer = record.data.prepare(g, views)?;
        squared.push(layer.squared_norms()?);
        layer.compact()?;
        prepared.push(layer);
    }
    drop(grads);
    if squared.is_empty() {
        // Nothing trainable: every example's gradient is zero.
        return Ok(ClippedSum {
            sums: HashMap::new(),
            norms: vec![0.0; rows / views],
        });
    }
    let factors = clip.factors(&squared);
    let total = squared
        .iter()
        .skip(1)
        .fold(squared[0].clone(), |acc, s| acc + s.clone());
    let mut out = ClippedSum {
        sums: HashMap::new(),
        norms: norms_of(total),
    };
    for (layer, factor) in prepared.into_iter().zip(factors) {
        for (id, grad) in layer.weighted_sums(factor)? {
            out.sums.insert(id, grad);
        }
    }
    Ok(out)
}

/// Every trainable parameter must be recorded exactly once: a parameter outside the DP-aware
/// layers would get no gradient, and a layer applied twice (weight sharing) would have its
/// per-example norm computed per use instead of for the summed gradient.
fn check_coverage<AB: AutodiffBackend>(
    records: &[tape::Record<AB>],
    params: &[ParamInfo],
) -> Result<()> {
    let mut seen: HashMap<ParamId, usize> = HashMap::new();
    for record in records {
        for id in record.data.param_ids() {
            *seen.entry(id).or_default() += 1;
        }
    }
    let uncovered: Vec<String> = params
        .iter()
        .filter(|p| !seen.contains_key(&p.id))
        .map(|p| p.path.clone())
        .collect();
    if !uncovered.is_empty() {
        return Err(DpError::UncoveredParameters(uncovered));
    }
    let shared: Vec<String> = params
        .iter()
        .filter(|p| seen.get(&p.id).copied().unwrap_or(0) > 1)
        .map(|p| format!("{} (used more than once in the forward pass)", p.path))
        .collect();
    if !shared.is_empty() {
        return Err(DpError::UncoveredParameters(shared));
    }
    Ok(())
}
