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
    for (data, g) in outputs {
        let mut layer = data.prepare(g, views)?;
        squared.push(layer.squared_norms()?);
        layer.compact()?;
        prepared.push(layer);
    }
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
