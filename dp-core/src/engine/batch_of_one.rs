//! The batch-of-one oracle: one forward and backward pass per example, for any burn module.

use super::{norms_of, ClippedSum};
use crate::clipping::ClipSpec;
use crate::error::Result;
use crate::params::{flatten_gradients, ParamInfo};
use crate::per_example::FlatGrad;
use burn::module::{AutodiffModule, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use std::collections::HashMap;
use std::ops::Range;

pub(super) fn clip_and_sum<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    model: &M,
    rows: usize,
    views: usize,
    losses: &dyn Fn(&M, Range<usize>) -> Tensor<AB, 1>,
    clip: &ClipSpec,
    params: &[ParamInfo],
) -> Result<ClippedSum<AB::InnerBackend>> {
    // Layers for per-layer clipping: parameters grouped by the module that holds them.
    let mut layer_of: HashMap<ParamId, usize> = HashMap::new();
    let mut layers: Vec<&str> = Vec::new();
    for p in params {
        let index = layers
            .iter()
            .position(|l| *l == p.layer())
            .unwrap_or_else(|| {
                layers.push(p.layer());
                layers.len() - 1
            });
        layer_of.insert(p.id, index);
    }
    let mut sums: HashMap<ParamId, FlatGrad<AB::InnerBackend>> = HashMap::new();
    let mut all_norms = Vec::new();
    for example in 0..rows / views {
        let loss = losses(model, example * views..(example + 1) * views)
            .sum()
            .div_scalar(views as f64);
        let mut grads = GradientsParams::from_grads(loss.backward(), model);
        let flat = flatten_gradients::<AB, M>(model, &mut grads);
        let device = loss.device();
        let mut squared = vec![Tensor::<AB::InnerBackend, 1>::zeros([1], &device); layers.len()];
        for (id, grad) in &flat {
            let layer = layer_of.get(id).copied().unwrap_or(0);
            squared[layer] = squared[layer].clone() + grad.values.clone().square().sum();
        }
        let factors = clip.factors(&squared);
        let total = squared
            .iter()
            .skip(1)
            .fold(squared[0].clone(), |acc, s| acc + s.clone());
        all_norms.extend(norms_of(total, Vec::new()));
        for (id, grad) in flat {
            let factor = factors[layer_of.get(&id).copied().unwrap_or(0)].clone();
            let scaled = grad.values * factor;
            match sums.get_mut(&id) {
                Some(sum) => sum.values = sum.values.clone() + scaled,
                None => {
                    sums.insert(
                        id,
                        FlatGrad {
                            values: scaled,
                            dims: grad.dims,
                        },
                    );
                }
            }
        }
    }
    Ok(ClippedSum {
        sums,
        norms: all_norms,
    })
}
