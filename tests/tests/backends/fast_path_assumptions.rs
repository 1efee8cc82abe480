//! The fast per-example path checks its assumptions: a DP-aware layer whose leading dimension
//! is not the micro-batch's rows, and a parameter that also gets gradient from outside its
//! layer, are errors naming the layer or parameter, never a silent mis-clip. Each bad model is
//! a legitimate one for the batch-of-one oracle, which accepts it.
//!
//! What the checks prevent (observed with them disabled): the sequence-first, flattened and
//! shared-input models below ended in a burn panic (per-layer norms of 6, 24 or 1 rows
//! against the head's 4), and had the mis-shaped layer been the only one, or T equal to the
//! rows (the last shape test), the norms would have been of time steps, not examples, without
//! any error; the penalized and the tied models ran, their fast norms and sums silently
//! leaving out the gradient of the parameter's outside use.

use super::{Inner, TB};
use burn::module::Module;
use burn::tensor::activation::tanh;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::loss::cross_entropy_per_row;
use dp_core::{clip_and_sum, ClipSpec, ClippedSum, Clipping, DpError, PerExampleEngine};
use std::ops::Range;

/// Micro-batch rows.
const N: usize = 4;
/// Time steps.
const T: usize = 6;
/// Features.
const D: usize = 8;

#[derive(Module, Debug)]
struct Net<B: Backend> {
    a: Linear<B>,
    shared: Linear<B>,
    head: Linear<B>,
}

fn net() -> Net<TB> {
    let device = Default::default();
    Net {
        a: LinearConfig::new(D, 5).init(&device).unwrap(),
        shared: LinearConfig::new(3, 5).init(&device).unwrap(),
        head: LinearConfig::new(T * 5, 3).init(&device).unwrap(),
    }
}

/// How the network reads its `[N, T, D]` input.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// `a` on `[N, T, D]`: right.
    BatchFirst,
    /// `a` on `[T, N, D]`.
    SequenceFirst,
    /// `a` on `[N·T, D]`.
    Flattened,
    /// batch-first, plus `shared` on a constant `[1, 3]` broadcast over the batch.
    SharedInput,
}

impl<B: Backend> Net<B> {
    fn forward(&self, x: Tensor<B, 3>, layout: Layout) -> Tensor<B, 2> {
        let [n, t, d] = x.dims();
        let h = match layout {
            Layout::BatchFirst | Layout::SharedInput => self.a.forward(x),
            Layout::SequenceFirst => self.a.forward(x.swap_dims(0, 1)).swap_dims(0, 1),
            Layout::Flattened => self.a.forward(x.reshape([n * t, d])).reshape([n, t, 5]),
        };
        let mut h = tanh(h).reshape([n, t * 5]);
        if let Layout::SharedInput = layout {
            let query = Tensor::<B, 2>::ones([1, 3], &h.device());
            h = h + self.shared.forward(query).repeat_dim(1, t);
        }
        self.head.forward(h)
    }
}

/// Deterministic inputs (the backend's random generator is shared by parallel tests).
fn batch(rows: usize) -> (Tensor<TB, 3>, Tensor<TB, 1, Int>) {
    let device = Default::default();
    let values: Vec<f32> = (0..rows * T * D).map(|i| (i as f32 * 0.37).sin()).collect();
    let x = Tensor::from_data(TensorData::new(values, [rows, T, D]), &device);
    let labels: Vec<i64> = (0..rows as i64).map(|i| i % 3).collect();
    (
        x,
        Tensor::from_data(TensorData::new(labels, [rows]), &device),
    )
}

/// Both engines on `net` with the given per-row losses.
fn run<M, F>(engine: PerExampleEngine, model: &M, rows: usize, losses: F) -> dp_core::Result<Sum>
where
    M: burn::module::AutodiffModule<TB>,
    F: Fn(&M, Range<usize>) -> Tensor<TB, 1>,
{
    let clip = ClipSpec::new(1.0, Clipping::Flat).unwrap();
    clip_and_sum(engine, model, rows, 1, losses, &clip, 0)
}

type Sum = ClippedSum<Inner>;

/// The network for `layout`, with `shared` frozen where it is unused (else the fast path
/// refuses it as uncovered).
fn net_for(layout: Layout) -> Net<TB> {
    let mut model = net();
    if !matches!(layout, Layout::SharedInput) {
        model.shared = model.shared.no_grad();
    }
    model
}

fn run_layout(
    engine: PerExampleEngine,
    model: &Net<TB>,
    layout: Layout,
    rows: usize,
) -> dp_core::Result<Sum> {
    let (x, y) = batch(rows);
    run(engine, model, rows, |m: &Net<TB>, r: Range<usize>| {
        cross_entropy_per_row(
            m.forward(x.clone().slice(r.clone()), layout),
            y.clone().slice(r),
        )
    })
}

fn shape_error(layout: Layout) -> String {
    let model = net_for(layout);
    // The oracle takes the model as it is: the layout is legitimate, only not batch-first.
    let oracle = run_layout(PerExampleEngine::BatchOfOne, &model, layout, N).unwrap();
    assert_eq!(oracle.examples(), N);
    match run_layout(PerExampleEngine::Fast, &model, layout, N) {
        Err(DpError::Shape(message)) => message,
        Err(other) => panic!("{layout:?}: wrong error {other}"),
        Ok(sum) => panic!("{layout:?}: accepted, {} examples", sum.examples()),
    }
}

/// The largest relative difference between the fast and the oracle norms.
fn worst_norm_error(layout: Layout, rows: usize) -> f32 {
    let model = net_for(layout);
    let fast = run_layout(PerExampleEngine::Fast, &model, layout, rows).unwrap();
    let oracle = run_layout(PerExampleEngine::BatchOfOne, &model, layout, rows).unwrap();
    assert_eq!(fast.examples(), rows);
    fast.norms()
        .iter()
        .zip(oracle.norms())
        .map(|(a, b)| ((a - b) / b).abs())
        .fold(0.0f32, f32::max)
}

#[test]
fn batch_first_layout_is_accepted_and_matches_the_oracle() {
    let worst = worst_norm_error(Layout::BatchFirst, N);
    assert!(worst < 1e-4, "fast and oracle norms differ by {worst:e}");
}

#[test]
fn sequence_first_input_is_an_error_naming_the_layer_and_its_shape() {
    let message = shape_error(Layout::SequenceFirst);
    assert!(message.contains("layer `a` (Linear)"), "{message}");
    assert!(message.contains(&format!("{:?}", [T, N, D])), "{message}");
    assert!(message.contains(&format!("{N} rows")), "{message}");
}

#[test]
fn flattened_input_is_an_error_naming_the_layer_and_its_shape() {
    let message = shape_error(Layout::Flattened);
    assert!(message.contains("layer `a` (Linear)"), "{message}");
    assert!(message.contains(&format!("{:?}", [N * T, D])), "{message}");
}

#[test]
fn shared_input_broadcast_over_the_batch_is_an_error_naming_the_layer() {
    let message = shape_error(Layout::SharedInput);
    assert!(message.contains("layer `shared` (Linear)"), "{message}");
    assert!(message.contains("[1, 3]"), "{message}");
    assert!(!message.contains("layer `a`"), "{message}");
}

/// The hole the shape check cannot close: sequence-first with as many steps as rows passes it
/// and mis-attributes gradients (each "example" is a time step), so its norms differ from the
/// oracle's. Documented in `PerExampleEngine::Fast`; this test shows why that note is needed.
#[test]
fn sequence_first_with_as_many_steps_as_rows_passes_the_shape_check_but_misattributes() {
    let worst = worst_norm_error(Layout::SequenceFirst, T);
    assert!(worst > 1e-2, "fast and oracle norms agree ({worst:e})");
}

fn penalized(model: &Net<TB>, engine: PerExampleEngine, lambda: f64) -> dp_core::Result<Sum> {
    let (x, y) = batch(N);
    run(engine, model, N, |m: &Net<TB>, r: Range<usize>| {
        let rows = r.len();
        let ce = cross_entropy_per_row(
            m.forward(x.clone().slice(r.clone()), Layout::BatchFirst),
            y.clone().slice(r),
        );
        // An L2 penalty on a's weight, added to every row's loss.
        let penalty = m.a.weight.val().square().sum().mul_scalar(lambda);
        ce + penalty.repeat_dim(0, rows)
    })
}

#[test]
fn a_penalty_on_a_layers_weight_in_the_loss_is_an_error_naming_the_parameter() {
    let mut model = net();
    model.shared = model.shared.no_grad();
    let oracle = penalized(&model, PerExampleEngine::BatchOfOne, 1.0).unwrap();
    let without = penalized(&model, PerExampleEngine::BatchOfOne, 0.0).unwrap();
    // The penalty changes the examples' gradients (what the fast path could not see).
    let changed = oracle.norms().iter().zip(without.norms());
    assert!(changed.into_iter().any(|(a, b)| (a - b).abs() > 1e-2 * b));
    match penalized(&model, PerExampleEngine::Fast, 1.0) {
        Err(DpError::UncoveredParameters(paths)) => {
            assert_eq!(paths.len(), 1, "{paths:?}");
            assert!(paths[0].starts_with("a.weight"), "{paths:?}");
            assert!(paths[0].contains("outside its DP-aware layer"), "{paths:?}");
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("a penalty on a.weight was accepted"),
    }
}

impl Net<TB> {
    /// The same network with only `a` trainable.
    fn only_a_trainable(self) -> Self {
        Self {
            shared: self.shared.no_grad(),
            head: self.head.no_grad(),
            a: self.a,
        }
    }
}

#[test]
fn a_weight_tied_to_a_plain_product_is_an_error_naming_the_parameter() {
    // An autoencoder whose decoder is the encoder's weight, transposed, outside any layer.
    let model = net().only_a_trainable();
    let (x, _) = batch(N);
    let losses = |m: &Net<TB>, r: Range<usize>| {
        let rows = r.len();
        let x = x.clone().slice(r);
        let code = tanh(m.a.forward(x.clone())).reshape([rows * T, 5]);
        let decoded = code.matmul(m.a.weight.val().transpose());
        let error = decoded - x.reshape([rows * T, D]);
        error
            .square()
            .reshape([rows, T * D])
            .sum_dim(1)
            .reshape([rows])
    };
    let oracle = run(PerExampleEngine::BatchOfOne, &model, N, losses).unwrap();
    assert_eq!(oracle.examples(), N);
    match run(PerExampleEngine::Fast, &model, N, losses) {
        Err(DpError::UncoveredParameters(paths)) => {
            assert_eq!(paths.len(), 1, "{paths:?}");
            assert!(paths[0].starts_with("a.weight"), "{paths:?}");
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("a tied a.weight was accepted"),
    }
}

#[test]
fn a_layer_applied_twice_is_an_error_naming_its_parameters() {
    let mut model = net();
    model.shared = model.shared.no_grad();
    let (x, y) = batch(N);
    let losses = |m: &Net<TB>, r: Range<usize>| {
        let x = x.clone().slice(r.clone());
        let h = tanh(m.a.forward(x.clone()) + m.a.forward(x.mul_scalar(2.0)));
        let [n, t, _] = h.dims();
        cross_entropy_per_row(m.head.forward(h.reshape([n, t * 5])), y.clone().slice(r))
    };
    match run(PerExampleEngine::Fast, &model, N, losses) {
        Err(DpError::UncoveredParameters(paths)) => {
            assert_eq!(paths.len(), 2, "{paths:?}");
            assert!(paths[0].starts_with("a.weight"), "{paths:?}");
            assert!(
                paths.iter().all(|p| p.contains("more than once")),
                "{paths:?}"
            );
        }
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("a layer applied twice was accepted"),
    }
}
