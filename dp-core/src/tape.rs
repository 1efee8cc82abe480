//! The recording tape of a private forward pass.
//!
//! DP-aware layers ([`crate::layers`]) behave as plain burn modules, except while a private
//! forward is running on the current thread: then each adds a zero "probe" tensor that
//! requires grad to its output and leaves its input on the tape. One backward pass of the
//! summed loss then yields, for every layer, the gradient with respect to its output (the
//! probe's gradient), from which per-example parameter gradients follow (see
//! [`crate::per_example`]). The tape lives in a thread-local slot, typed by backend, so a model
//! needs no special plumbing to be trained privately.

use crate::per_example::LayerData;
use burn::module::{Param, ParamId};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use std::any::Any;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;

thread_local! {
    static TAPE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// What a layer hands to the tape: its inputs as seen on the (autodiff) backend it runs on.
pub(crate) trait Tape<B: Backend> {
    /// Whether the parameter gets per-example gradients in this step (frozen ones do not).
    fn is_trainable(&self, id: ParamId) -> bool;
    /// Stores `data` and returns `output` plus a zero probe.
    fn probe(&mut self, output: Tensor<B, 3>, data: LayerData<B>) -> Tensor<B, 3>;
}

/// Runs `f` on the active tape of backend `B`, if any; `None` outside a private forward.
pub(crate) fn with_tape<B: Backend, R>(f: impl FnOnce(&mut dyn Tape<B>) -> R) -> Option<R> {
    TAPE.with(|slot| {
        let mut slot = slot.try_borrow_mut().ok()?;
        let tape = slot.as_mut()?.downcast_mut::<Box<dyn Tape<B>>>()?;
        Some(f(tape.as_mut()))
    })
}

/// The value of a DP-aware layer's parameter for the layer's own use: detached from the
/// autodiff graph while a private forward records it (its gradient comes from the probe), so
/// that any gradient the backward pass still gives the parameter comes from a use outside its
/// layer (weight tying, a penalty in the loss), which the fast path then refuses. The value
/// is also a leaf that requires no gradient (burn's `detach` keeps `require_grad`): otherwise
/// the backward pass would form every layer's batch weight gradient (as costly as the
/// per-example gradients of a convolution) only to drop it.
///
/// Call it outside [`with_tape`] closures (the tape is borrowed there).
pub(crate) fn layer_value<B: Backend, const D: usize>(param: &Param<Tensor<B, D>>) -> Tensor<B, D> {
    let taped = with_tape::<B, _>(|tape| tape.is_trainable(param.id)).unwrap_or(false);
    if taped {
        param.val().detach().set_require_grad(false)
    } else {
        param.val()
    }
}

/// One layer's entry: its data on the inner backend, and the probe on its output.
pub(crate) struct Record<AB: AutodiffBackend> {
    pub(crate) data: LayerData<AB::InnerBackend>,
    pub(crate) probe: Tensor<AB, 3>,
}

struct Recorder<AB: AutodiffBackend> {
    trainable: HashSet<ParamId>,
    records: Rc<RefCell<Vec<Record<AB>>>>,
}

impl<AB: AutodiffBackend> Tape<AB> for Recorder<AB> {
    fn is_trainable(&self, id: ParamId) -> bool {
        self.trainable.contains(&id)
    }

    fn probe(&mut self, output: Tensor<AB, 3>, data: LayerData<AB>) -> Tensor<AB, 3> {
        // A zero broadcast to the output's shape: a full-shape leaf (so its gradient is the
        // full dL/d(output)) backed by a single stored value (no output-sized allocation).
        let zero = Tensor::<AB::InnerBackend, 3>::zeros([1, 1, 1], &output.device());
        let probe = Tensor::<AB, 3>::from_inner(zero.expand(output.dims())).require_grad();
        self.records.borrow_mut().push(Record {
            data: data.into_inner(),
            probe: probe.clone(),
        });
        output + probe
    }
}

/// Runs `forward` with a tape for backend `AB` and returns its result with the records.
///
/// Only the parameters in `trainable` are recorded. A tape already in place (a nested private
/// forward) is kept aside and restored afterwards.
pub(crate) fn record<AB: AutodiffBackend, R>(
    trainable: HashSet<ParamId>,
    forward: impl FnOnce() -> R,
) -> (R, Vec<Record<AB>>) {
    let records = Rc::new(RefCell::new(Vec::new()));
    let tape: Box<dyn Tape<AB>> = Box::new(Recorder::<AB> {
        trainable,
        records: records.clone(),
    });
    let previous = TAPE.with(|slot| slot.borrow_mut().replace(Box::new(tape)));
    // Put the previous tape back even if `forward` panics.
    struct Restore(Option<Box<dyn Any>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            TAPE.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let guard = Restore(previous);
    let result = forward();
    drop(guard);
    let records = std::mem::take(&mut *records.borrow_mut());
    (result, records)
}
