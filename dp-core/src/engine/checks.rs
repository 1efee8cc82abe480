//! What the fast path checks before it trusts a tape: every trainable parameter recorded once,
//! every recorded layer batch-first, and no gradient reaching a parameter past its layer.

use crate::error::{DpError, Result};
use crate::params::ParamInfo;
use crate::tape::Record;
use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// Every trainable parameter must be recorded exactly once: a parameter outside the DP-aware
/// layers would get no gradient, and a layer applied twice (weight sharing) would have its
/// per-example norm computed per use instead of for the summed gradient.
pub(super) fn check_coverage<AB: AutodiffBackend>(
    records: &[Record<AB>],
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

/// Every recorded layer's input and output must lead with the micro-batch's `rows` (examples
/// × augmult views), since row i of every layer is read as row i of the batch. A
/// sequence-first `[T, N, …]`, a flattened `[N·T, …]` or a shared `[1, …]` input (broadcast
/// over the batch) would otherwise mis-attribute gradients to examples, or be summed into one
/// "example" whose norm is then broadcast to all. Lists every offending layer.
pub(super) fn check_rows<AB: AutodiffBackend>(
    records: &[Record<AB>],
    params: &[ParamInfo],
    rows: usize,
) -> Result<()> {
    let layer_of: HashMap<ParamId, &str> = params.iter().map(|p| (p.id, p.layer())).collect();
    let bad: Vec<String> = records
        .iter()
        .filter(|r| r.data.rows() != rows || r.probe.dims()[0] != rows)
        .map(|r| {
            let path = r
                .data
                .param_ids()
                .first()
                .and_then(|id| layer_of.get(id).copied())
                .unwrap_or("?");
            format!(
                "layer `{path}` ({}) got an input of shape {:?}, its output recorded as {:?} \
                 (leading dimensions {} and {})",
                r.data.kind(),
                r.data.input_dims(),
                r.probe.dims(),
                r.data.rows(),
                r.probe.dims()[0],
            )
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(DpError::Shape(format!(
        "the fast per-example path reads row i of every DP-aware layer as row i of the \
         micro-batch, which has {rows} rows (examples × augmult views), but {}; put the batch \
         dimension first (not sequence-first [T, N, …], flattened [N·T, …] or shared [1, …]), \
         or use PerExampleEngine::BatchOfOne",
        bad.join("; ")
    )))
}

/// Trainable parameters that the backward pass gave a gradient: DP-aware layers use their
/// parameters detached while recording ([`crate::tape::layer_value`]), so such a gradient
/// comes from a use outside the layer the tape does not see.
struct Untaped<'a, AB: AutodiffBackend> {
    grads: &'a AB::Gradients,
    trainable: &'a HashSet<ParamId>,
    found: Vec<ParamId>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Untaped<'_, AB> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if self.trainable.contains(&param.id) && param.val().grad(self.grads).is_some() {
            self.found.push(param.id);
        }
    }
}

/// Refuses a step in which a trainable parameter got gradient from outside its DP-aware layer
/// (weight tying with another module, a penalty on the parameter in the loss): the fast path
/// would silently leave that part out of the per-example gradients and their norms. Costs one
/// lookup per parameter: the layers' own uses are outside the autodiff graph.
pub(super) fn check_untaped<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    model: &M,
    grads: &AB::Gradients,
    params: &[ParamInfo],
    trainable: &HashSet<ParamId>,
) -> Result<()> {
    let mut visitor = Untaped::<AB> {
        grads,
        trainable,
        found: Vec::new(),
    };
    model.visit(&mut visitor);
    if visitor.found.is_empty() {
        return Ok(());
    }
    let paths: Vec<String> = params
        .iter()
        .filter(|p| visitor.found.contains(&p.id))
        .map(|p| {
            format!(
                "{} (also used outside its DP-aware layer: weight tying or a penalty on the \
                 parameter in the loss; apply a penalty as weight decay of the inner optimizer)",
                p.path
            )
        })
        .collect();
    Err(DpError::UncoveredParameters(paths))
}
