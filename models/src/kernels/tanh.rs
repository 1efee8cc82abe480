//! tanh with a fused forward and backward pass.

use super::{
    cast, f32_values, flex_tensor, from_primitive, is, primitive, unary_node, FlexAutodiff,
};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops};
use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor};
use burn_flex::FlexTensor;
use rayon::prelude::*;

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// tanh(x), as 1 − 2/(e^{2x} + 1).
///
/// On `flex` one pass forward and one pass backward (g·(1 − y²) from the saved output); burn
/// 0.21's own `tanh` there is libm's `tanhf` on one thread, recomputed in the backward pass.
/// Elsewhere it is burn's tanh. Absolute error within a few float ulps of 1.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// let x = Tensor::<Flex, 1>::from_floats([-30.0, -0.5, 0.0, 0.25, 4.0], &Default::default());
/// let y: Vec<f32> = dp_models::kernels::tanh::tanh(x).into_data().to_vec().unwrap();
/// let exact = [-1.0f32, -0.5f32.tanh(), 0.0, 0.25f32.tanh(), 4.0f32.tanh()];
/// assert!(y.iter().zip(exact).all(|(a, b)| (a - b).abs() < 1e-6));
/// ```
pub fn tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if is::<B, FlexAutodiff>() {
        let x = primitive(cast::<_, Tensor<FlexAutodiff, D>>(x));
        return cast(from_primitive::<FlexAutodiff, D>(tracked::<D>(x)));
    }
    if is::<B, Flex>() {
        let x = primitive(cast::<_, Tensor<Flex, D>>(x));
        return cast(from_primitive::<Flex, D>(forward(&x).unwrap_or_else(
            || primitive(burn_tanh(from_primitive::<Flex, D>(x))),
        )));
    }
    burn_tanh(x)
}

fn burn_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    burn::tensor::activation::tanh(x)
}

#[derive(Debug)]
struct Tanh;

impl Backward<Flex, 1> for Tanh {
    /// The output y.
    type State = FlexTensor;

    fn backward(self, ops: Ops<FlexTensor, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let y = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| derivative(grad, &y));
    }
}

fn tracked<const D: usize>(x: FloatTensor<FlexAutodiff>) -> FloatTensor<FlexAutodiff> {
    let Some(y) = forward(&x.primitive) else {
        return primitive(burn_tanh(from_primitive::<FlexAutodiff, D>(x)));
    };
    unary_node(Tanh, &x, y.clone(), y)
}

/// tanh of an f32 tensor (`None` if not f32).
fn forward(x: &FlexTensor) -> Option<FlexTensor> {
    let values = f32_values(x)?;
    let mut y = vec![0.0f32; values.len()];
    y.par_chunks_mut(CHUNK)
        .zip(values.par_chunks(CHUNK))
        .for_each(|(y, x)| tanh_into(y, x));
    Some(flex_tensor(y, x.layout().shape().to_vec()))
}

/// `y = tanh(x)` element by element, with AVX2's 8 lanes where the CPU has them (the same
/// exactly rounded operations on every path: no fused multiply-add, so the same values).
fn tanh_into(y: &mut [f32], x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above), all `tanh_into_avx2` requires.
        unsafe { tanh_into_avx2(y, x) };
        return;
    }
    tanh_into_portable(y, x);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn tanh_into_avx2(y: &mut [f32], x: &[f32]) {
    tanh_into_portable(y, x);
}

#[inline(always)]
fn tanh_into_portable(y: &mut [f32], x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = 1.0 - 2.0 / (exp(2.0 * x) + 1.0);
    }
}

/// e^t for tanh: exact to about one part in 10⁷, t clamped to ±40 (tanh is ±1 in f32 long
/// before that), NaN kept. Written so that the compiler vectorizes the loop over a slice
/// (libm's `expf` is a call per value, which took most of the forward pass of tanh): e^t =
/// 2^k·e^r with k = round(t·log₂e) and |r| ≤ ln2/2, e^r by its Taylor polynomial to degree 7
/// (remainder below |r|⁸/8! < 6·10⁻⁹), 2^k written into the exponent bits.
#[inline(always)]
fn exp(t: f32) -> f32 {
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer (for |t·log₂e| < 2²²).
    const ROUND: f32 = 12_582_912.0;
    // ln 2 in two parts: k·LN2_HI is exact for |k| < 2⁹.
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let t = t.clamp(-40.0, 40.0);
    let shifted = t * std::f32::consts::LOG2_E + ROUND;
    let k = shifted - ROUND;
    let r = (t - k * LN2_HI) - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // k ∈ [−58, 58] sits in the low mantissa bits of `shifted` (whose bits are those of
    // 1.5·2²³ plus k): 2^k is a normal f32, its exponent field k + 127, with no float-to-int
    // conversion (which does not vectorize). A NaN t gives NaN through r.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(k_bits.wrapping_add(127) << 23);
    p * scale
}

/// g·(1 − y²).
fn derivative(grad: FlexTensor, y: &FlexTensor) -> FlexTensor {
    let grad = match grad.dtype() {
        DType::F32 => grad,
        _ => primitive(from_primitive::<Flex, 1>(grad).cast(DType::F32)),
    };
    let (g, y_values) = (
        f32_values(&grad).unwrap_or_default(),
        f32_values(y).unwrap_or_default(),
    );
    let mut out = vec![0.0f32; g.len()];
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(y_values.par_chunks(CHUNK)))
        .for_each(|(out, (g, y))| {
            for ((o, &g), &y) in out.iter_mut().zip(g).zip(y) {
                *o = g * (1.0 - y * y);
            }
        });
    flex_tensor(out, y.layout().shape().to_vec())
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tensor};

    type AB = Autodiff<Flex>;

    #[test]
    fn values_and_gradients_equal_burns_tanh() {
        let device = Default::default();
        let x = Tensor::<Flex, 1>::random([10_000], Distribution::Normal(0.0, 3.0), &device);
        let w = Tensor::<Flex, 1>::random([10_000], Distribution::Normal(0.0, 1.0), &device);
        let run = |fast: bool| {
            let xa = Tensor::<AB, 1>::from_inner(x.clone()).require_grad();
            let y = if fast {
                super::tanh(xa.clone())
            } else {
                burn::tensor::activation::tanh(xa.clone())
            };
            let loss = (y.clone() * Tensor::from_inner(w.clone())).sum();
            let grads = loss.backward();
            let g = xa
                .grad(&grads)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            (y.inner().into_data().to_vec::<f32>().unwrap(), g)
        };
        let (fast_y, fast_g) = run(true);
        let (y, g) = run(false);
        let worst = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        assert!(worst(&fast_y, &y) < 5e-7, "values: {}", worst(&fast_y, &y));
        assert!(
            worst(&fast_g, &g) < 5e-6,
            "gradients: {}",
            worst(&fast_g, &g)
        );
    }

    /// The vectorizable e^t against f64's exp on a fine grid of the clamped range (relative
    /// error, worst measured 9.7e-8; without the degree-7 term 2.5e-7), and at the edges: ±∞ and large values clamp, NaN stays.
    #[test]
    fn exp_is_accurate_over_the_clamped_range() {
        let mut worst = 0f64;
        for i in -400_000..=400_000 {
            let t = i as f32 * 1e-4;
            let exact = (t as f64).exp();
            worst = worst.max(((super::exp(t) as f64) - exact).abs() / exact);
        }
        eprintln!("e^t: worst relative error {worst:.3e}");
        assert!(worst < 1.5e-7, "relative error {worst}");
        assert_eq!(super::exp(f32::INFINITY), super::exp(40.0));
        assert_eq!(super::exp(-1e30), super::exp(-40.0));
        assert!(super::exp(f32::NAN).is_nan());
        let ends = Tensor::<Flex, 1>::from_floats(
            [f32::NEG_INFINITY, f32::INFINITY, f32::NAN],
            &Default::default(),
        );
        let y: Vec<f32> = super::tanh(ends).into_data().to_vec().unwrap();
        assert_eq!(&y[..2], &[-1.0, 1.0]);
        assert!(y[2].is_nan());
    }

    /// The AVX2 path (where this CPU has it) and the portable one give the same bits.
    #[test]
    fn every_path_gives_the_same_values() {
        let x: Vec<f32> = (0..10_007)
            .map(|i| (i as f32 * 0.7919).sin() * 12.0)
            .collect();
        let (mut fast, mut portable) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        super::tanh_into(&mut fast, &x);
        super::tanh_into_portable(&mut portable, &x);
        assert!(fast
            .iter()
            .zip(&portable)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(fast
            .iter()
            .zip(&x)
            .all(|(y, x)| (y - x.tanh()).abs() < 5e-7));
    }
}
