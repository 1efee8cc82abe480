//! Walking a model's parameters: what is trainable, and moving flattened gradients in and out
//! of burn's rank-typed `GradientsParams`.

use crate::per_example::FlatGrad;
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// One float parameter of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    /// Its id.
    pub id: ParamId,
    /// Its path in the model, e.g. `conv1.weight`.
    pub path: String,
    /// Its shape.
    pub dims: Vec<usize>,
    /// Whether it requires grad (frozen parameters do not).
    pub trainable: bool,
}

impl ParamInfo {
    /// The path of the module that holds the parameter (the "layer" of per-layer clipping).
    pub fn layer(&self) -> &str {
        self.path.rsplit_once('.').map_or("", |(layer, _)| layer)
    }

    /// Number of scalars.
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
}

#[derive(Default)]
struct Collector {
    path: Vec<String>,
    out: Vec<ParamInfo>,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        self.out.push(ParamInfo {
            id: param.id,
            path: self.path.join("."),
            dims: value.dims().to_vec(),
            trainable: value.is_require_grad(),
        });
    }
}

/// Every float parameter of `module`, in declaration order.
pub fn param_infos<B: Backend, M: Module<B>>(module: &M) -> Vec<ParamInfo> {
    let mut collector = Collector::default();
    module.visit(&mut collector);
    collector.out
}

struct Register<'a, IB: Backend> {
    flat: &'a mut HashMap<ParamId, FlatGrad<IB>>,
    out: GradientsParams,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Register<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        if let Some(grad) = self.flat.remove(&param.id) {
            if let Ok(dims) = <[usize; D]>::try_from(grad.dims.as_slice()) {
                self.out
                    .register::<AB::InnerBackend, D>(param.id, grad.values.reshape(dims));
            }
        }
    }
}

/// Puts flattened gradients into burn's `GradientsParams` for `module`'s optimizer.
pub(crate) fn to_gradients_params<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    module: &M,
    mut flat: HashMap<ParamId, FlatGrad<AB::InnerBackend>>,
) -> GradientsParams {
    let mut visitor = Register::<AB::InnerBackend> {
        flat: &mut flat,
        out: GradientsParams::new(),
    };
    module.visit(&mut visitor);
    visitor.out
}

struct Extract<'a, IB: Backend> {
    grads: &'a mut GradientsParams,
    out: Vec<(ParamId, FlatGrad<IB>)>,
}

impl<AB: AutodiffBackend> ModuleVisitor<AB> for Extract<'_, AB::InnerBackend> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AB, D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            return;
        }
        let dims = value.dims();
        let grad = self
            .grads
            .remove::<AB::InnerBackend, D>(param.id)
            .unwrap_or_else(|| Tensor::zeros(dims, &value.device()));
        self.out.push((
            param.id,
            FlatGrad {
                values: grad.reshape([-1]),
                dims: dims.to_vec(),
            },
        ));
    }
}

/// The gradients of `module`'s trainable parameters, flattened (zeros where absent).
pub(crate) fn flatten_gradients<AB: AutodiffBackend, M: AutodiffModule<AB>>(
    module: &M,
    grads: &mut GradientsParams,
) -> Vec<(ParamId, FlatGrad<AB::InnerBackend>)> {
    let mut visitor = Extract::<AB::InnerBackend> {
        grads,
        out: Vec::new(),
    };
    module.visit(&mut visitor);
    visitor.out
}
