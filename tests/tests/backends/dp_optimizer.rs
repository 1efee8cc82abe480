//! The DP optimizer end to end: noise distribution (with power), one update against the
//! reference formula, clipping properties, micro-batching, budget, NaN handling, validator,
//! checkpoints.

use super::TB;
use burn::module::Module;
use burn::optim::{AdamConfig, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::params::param_infos;
use dp_core::sampler::{FixedSizeSampler, PoissonSampler, Sampler};
use dp_core::{Budget, DpError, DpOptimizer, DpSgdConfig, PerExampleEngine};
use std::ops::Range;

#[derive(Module, Debug)]
struct Lin<B: Backend> {
    fc: Linear<B>,
}

fn lin(d_in: usize, d_out: usize) -> Lin<TB> {
    Lin {
        fc: LinearConfig::new(d_in, d_out)
            .init(&Default::default())
            .unwrap(),
    }
}

fn accountant(relation: NeighboringRelation) -> Box<dyn dp_accountant::PrivacyAccountant> {
    AccountantConfig::default_for(AccountantKind::Rdp)
        .build(relation)
        .unwrap()
}

fn values<const D: usize>(t: Tensor<TB, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn params(model: &Lin<TB>) -> Vec<f32> {
    let mut v = values(model.fc.weight.val());
    v.extend(values(model.fc.bias.as_ref().unwrap().val()));
    v
}

/// A dataset of `n` rows of `d` features (deterministic) with labels.
fn data(n: usize, d: usize) -> (Tensor<TB, 2>, Tensor<TB, 1, Int>) {
    let device = Default::default();
    let x: Vec<f32> = (0..n * d)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [n, d]), &device),
        Tensor::from_data(TensorData::new(y, [n]), &device),
    )
}

fn rows_of(
    x: &Tensor<TB, 2>,
    y: &Tensor<TB, 1, Int>,
    indices: &[usize],
) -> (Tensor<TB, 2>, Tensor<TB, 1, Int>) {
    let device = Default::default();
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let idx = Tensor::<TB, 1, Int>::from_data(TensorData::new(idx, [indices.len()]), &device);
    (x.clone().select(0, idx.clone()), y.clone().select(0, idx))
}

fn ce(m: &Lin<TB>, data: &(Tensor<TB, 2>, Tensor<TB, 1, Int>), r: Range<usize>) -> Tensor<TB, 1> {
    cross_entropy_per_row(
        m.fc.forward(data.0.clone().slice(r.clone())),
        data.1.clone().slice(r),
    )
}

/// Kolmogorov–Smirnov statistic of `samples` against N(0, std²).
fn ks_statistic(samples: &[f64], std: f64) -> f64 {
    let mut z: Vec<f64> = samples.iter().map(|s| s / std).collect();
    z.sort_by(f64::total_cmp);
    let n = z.len() as f64;
    let cdf = |x: f64| 0.5 * libm_erfc(-x / std::f64::consts::SQRT_2);
    z.iter().enumerate().fold(0.0, |d: f64, (i, &x)| {
        let f = cdf(x);
        d.max((f - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - f).abs())
    })
}

fn libm_erfc(x: f64) -> f64 {
    // erfc via the complementary error function of the standard library's f64 (no std erfc):
    // Abramowitz & Stegun 7.1.26 is too coarse for a KS test, so use the relation with the
    // normal CDF computed by a high-precision series (W. J. Cody's rational approximations
    // are in libm; the accountant crate depends on it).
    dp_accountant_erfc(x)
}

fn dp_accountant_erfc(x: f64) -> f64 {
    // Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7): ample for KS at
    // n = 10 000, whose critical value is 0.027.
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// The noise added by one step on an empty Poisson batch, rescaled to the noise itself:
/// with SGD (lr 1) the update is −noise/(qN).
fn noise_of_empty_step(
    sigma: f64,
    clip: f64,
    relation: NeighboringRelation,
    seed: u64,
) -> Vec<f64> {
    let model = lin(100, 100); // 10 100 parameters
    let config = DpSgdConfig::new(sigma, clip);
    // Poisson sampling under replace-one is analysed by the PLD accountant only.
    let accountant = AccountantConfig::default_for(AccountantKind::Pld)
        .build(relation)
        .unwrap();
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        config,
        accountant,
    )
    .unwrap()
    .with_noise(GaussianNoise::seeded(seed));
    let (q, n) = (0.001, 10u64);
    let mut sampler = PoissonSampler::seeded(n, q, seed).unwrap();
    let batch = (0..1000)
        .map(|_| sampler.next_batch())
        .find(|b| b.indices().is_empty())
        .unwrap();
    let before = params(&model);
    let step = opt.begin_step(&batch).unwrap();
    let after = params(&opt.finish_step(step, model, 1.0).unwrap());
    let expected = q * n as f64;
    before
        .iter()
        .zip(after)
        .map(|(b, a)| (*b as f64 - a as f64) * expected)
        .collect()
}

/// KS critical value at α = 1e-6 for n samples: √(ln(2/α)/(2n)) (the asymptotic Kolmogorov
/// distribution, P(√n·D > x) ≈ 2e^{−2x²}; Massey 1951). A correct σ fails with probability
/// 1e-6; the seeds are fixed, so the outcome is deterministic.
fn ks_critical(n: usize) -> f64 {
    ((2.0f64 / 1e-6).ln() / (2.0 * n as f64)).sqrt()
}

#[test]
fn noise_is_gaussian_with_std_sigma_times_sensitivity_and_wrong_sigmas_are_detected() {
    let (sigma, clip) = (1.3, 0.7);
    for (relation, sensitivity) in [
        (NeighboringRelation::AddOrRemoveOne, clip),
        (NeighboringRelation::ReplaceOne, 2.0 * clip),
    ] {
        let noise = noise_of_empty_step(sigma, clip, relation, 11);
        let critical = ks_critical(noise.len());
        let d = ks_statistic(&noise, sigma * sensitivity);
        assert!(
            d < critical,
            "{relation}: KS {d} ≥ {critical} with the right σ"
        );
        // Power: an optimizer whose σ were off by 2/3 or 3/2 is caught.
        for factor in [2.0 / 3.0, 1.5] {
            let wrong = noise_of_empty_step(sigma * factor, clip, relation, 12);
            let d = ks_statistic(&wrong, sigma * sensitivity);
            assert!(d > critical, "{relation}: σ×{factor} not detected (KS {d})");
        }
    }
}

#[test]
fn one_update_equals_the_reference_formula() {
    // Loss per row = Σ_j output_j: per-example gradients are W: a ⊗ 1, b: 1 — by hand.
    let (d_in, d_out, n) = (5, 3, 6);
    let model = lin(d_in, d_out);
    let (x, _) = data(n, d_in);
    let (sigma, clip, lr, seed) = (0.8, 1.5, 0.1, 3);
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        DpSgdConfig::new(sigma, clip),
        accountant(NeighboringRelation::ReplaceOne),
    )
    .unwrap()
    .with_noise(GaussianNoise::seeded(seed));
    let mut sampler = FixedSizeSampler::seeded(n as u64, n as u64, 0).unwrap();
    let batch = sampler.next_batch();
    let before = params(&model);
    let mut step = opt.begin_step(&batch).unwrap();
    opt.accumulate(&mut step, &model, n, |m, r| {
        m.fc.forward(x.clone().slice(r)).sum_dim(1).reshape([-1])
    })
    .unwrap();
    let after = params(&opt.finish_step(step, model, lr).unwrap());
    // Reference.
    let xs = values(x);
    let mut sum = vec![0.0f64; d_in * d_out + d_out];
    for i in 0..n {
        let a = &xs[i * d_in..(i + 1) * d_in];
        let norm =
            ((a.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() + 1.0) * d_out as f64).sqrt();
        let c = (clip / norm).min(1.0);
        for (k, av) in a.iter().enumerate() {
            for j in 0..d_out {
                sum[k * d_out + j] += c * *av as f64;
            }
        }
        for j in 0..d_out {
            sum[d_in * d_out + j] += c;
        }
    }
    let mut noise = GaussianNoise::seeded(seed);
    let std = sigma * 2.0 * clip; // replace-one: sensitivity 2C
    let mut noises = noise.sample(d_in * d_out, std).unwrap(); // weight first, then bias
    noises.extend(noise.sample(d_out, std).unwrap());
    for i in 0..sum.len() {
        let expected = before[i] as f64 - lr * (sum[i] + noises[i] as f64) / n as f64;
        assert!(
            (after[i] as f64 - expected).abs() < 1e-5,
            "coordinate {i}: {} vs {expected}",
            after[i]
        );
    }
}

fn clipped_single(model: &Lin<TB>, x: Tensor<TB, 2>, y: Tensor<TB, 1, Int>, clip: f64) -> Vec<f32> {
    let spec = dp_core::ClipSpec::new(clip, dp_core::Clipping::Flat).unwrap();
    let d = (x, y);
    let out = dp_core::clip_and_sum(
        PerExampleEngine::Fast,
        model,
        1,
        1,
        |m, r| ce(m, &d, r),
        &spec,
        0,
    )
    .unwrap();
    let mut g = out.gradient(model.fc.weight.id).unwrap();
    g.extend(out.gradient(model.fc.bias.as_ref().unwrap().id).unwrap());
    g
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

#[test]
fn clipping_bounds_the_norm_and_leaves_small_gradients_untouched() {
    let model = lin(8, 3);
    let (x, y) = data(4, 8);
    for i in 0..4 {
        let (xi, yi) = (x.clone().slice(i..i + 1), y.clone().slice(i..i + 1));
        let unclipped = clipped_single(&model, xi.clone(), yi.clone(), 1e9);
        let full = norm(&unclipped);
        // Clipped to half its norm: exactly C, same direction.
        let clipped = clipped_single(&model, xi.clone(), yi.clone(), full / 2.0);
        assert!((norm(&clipped) - full / 2.0).abs() < 1e-5 * full);
        for (c, u) in clipped.iter().zip(&unclipped) {
            assert!((c * 2.0 - u).abs() < 1e-5 * full as f32);
        }
        // C above the norm: untouched.
        let kept = clipped_single(&model, xi, yi, full * 1.01);
        assert!(kept
            .iter()
            .zip(&unclipped)
            .all(|(a, b)| (a - b).abs() < 1e-6));
    }
}

#[test]
fn clipping_is_global_not_per_tensor() {
    // Loss = Σ outputs: the weight gradient has norm ‖a‖√d_out, the bias gradient √d_out.
    let model = lin(4, 1);
    let x = Tensor::<TB, 2>::from_data(
        TensorData::new(vec![3.0f32, 0.0, 0.0, 0.0], [1, 4]),
        &Default::default(),
    );
    let spec = dp_core::ClipSpec::new(1.0, dp_core::Clipping::Flat).unwrap();
    let out = dp_core::clip_and_sum(
        PerExampleEngine::Fast,
        &model,
        1,
        1,
        |m, r| m.fc.forward(x.clone().slice(r)).sum_dim(1).reshape([-1]),
        &spec,
        0,
    )
    .unwrap();
    let w = out.gradient(model.fc.weight.id).unwrap();
    let b = out.gradient(model.fc.bias.as_ref().unwrap().id).unwrap();
    // Total norm √(9+1): both tensors scaled by 1/√10, so the weight keeps 3/√10, not 1.
    assert!((norm(&w) - 3.0 / 10f64.sqrt()).abs() < 1e-6, "{}", norm(&w));
    assert!((norm(&b) - 1.0 / 10f64.sqrt()).abs() < 1e-6);
}

#[test]
fn micro_batch_sizes_do_not_change_the_update() {
    let (n, d) = (11, 6);
    let full = data(n, d);
    let initial = lin(d, 3);
    let run = |micro: usize| {
        let model = initial.clone();
        let mut opt = DpOptimizer::new(
            &model,
            SgdConfig::new().init::<TB, Lin<TB>>(),
            DpSgdConfig::new(1.0, 0.5),
            accountant(NeighboringRelation::ReplaceOne),
        )
        .unwrap()
        .with_noise(GaussianNoise::seeded(5));
        let mut sampler = FixedSizeSampler::seeded(n as u64, 9, 1).unwrap();
        let batch = sampler.next_batch();
        let model = opt
            .step(
                model,
                &batch,
                micro,
                0.5,
                |idx| rows_of(&full.0, &full.1, idx),
                ce,
            )
            .unwrap();
        params(&model)
    };
    let reference = run(9);
    for micro in [1, 2, 4, 7] {
        let other = run(micro);
        let diff = reference
            .iter()
            .zip(&other)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "micro-batch {micro}: max difference {diff}");
    }
}

#[test]
fn a_step_over_budget_is_refused_before_touching_data_and_charges_nothing() {
    let model = lin(4, 2);
    let mut config = DpSgdConfig::new(1.0, 1.0);
    config.budget = Some(Budget {
        epsilon: 2.0,
        delta: 1e-5,
    });
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        config,
        accountant(NeighboringRelation::AddOrRemoveOne),
    )
    .unwrap();
    let mut sampler = PoissonSampler::seeded(100, 0.2, 0).unwrap();
    let mut model = model;
    let mut refused = None;
    for _ in 0..100 {
        let batch = sampler.next_batch();
        let before = opt.accountant().ledger().clone();
        match opt.step(
            model.clone(),
            &batch,
            8,
            0.1,
            |_: &[usize]| -> (Tensor<TB, 2>, Tensor<TB, 1, Int>) { unreachable_data() },
            ce,
        ) {
            Ok(m) => model = m,
            Err(DpError::BudgetExceeded { would_spend, .. }) => {
                assert_eq!(
                    opt.accountant().ledger(),
                    &before,
                    "a refused step charged the accountant"
                );
                assert!(would_spend > 2.0);
                refused = Some(opt.epsilon(1e-5).unwrap());
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let spent = refused.expect("the budget is reached within 100 steps");
    assert!(spent <= 2.0);
}

fn unreachable_data() -> (Tensor<TB, 2>, Tensor<TB, 1, Int>) {
    // Data is loaded only for steps within budget: return a batch of the right shape.
    data(0, 4)
}

#[test]
fn non_finite_gradients_are_an_error_naming_the_step_with_no_update_and_budget_kept() {
    let model = lin(3, 2);
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        DpSgdConfig::new(1.0, 1.0),
        accountant(NeighboringRelation::ReplaceOne),
    )
    .unwrap();
    let mut sampler = FixedSizeSampler::seeded(4, 4, 0).unwrap();
    let batch = sampler.next_batch();
    let x = Tensor::<TB, 2>::from_data(
        TensorData::new(
            vec![
                1.0f32,
                f32::NAN,
                0.0,
                1.0,
                2.0,
                3.0,
                0.5,
                0.5,
                0.5,
                1.0,
                1.0,
                1.0,
            ],
            [4, 3],
        ),
        &Default::default(),
    );
    let y = Tensor::<TB, 1, Int>::from_data(
        TensorData::new(vec![0i64, 1, 0, 1], [4]),
        &Default::default(),
    );
    let before = params(&model);
    let mut step = opt.begin_step(&batch).unwrap();
    let err = opt
        .accumulate(&mut step, &model, 4, |m, r| {
            ce(m, &(x.clone(), y.clone()), r)
        })
        .unwrap_err();
    match err {
        DpError::NonFiniteGradient { step, ref detail } => {
            assert_eq!(step, 0);
            assert!(detail.contains("example 0"), "{detail}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(params(&model), before);
    assert!(
        opt.epsilon(1e-5).unwrap() > 0.0,
        "the budget of the failed step stays charged"
    );
}

#[test]
fn models_with_batch_norm_are_refused_listing_every_layer() {
    #[derive(Module, Debug)]
    struct Bad<B: Backend> {
        fc: Linear<B>,
        bn1: burn::nn::BatchNorm<B>,
        inner: Vec<burn::nn::BatchNorm<B>>,
    }
    let device = Default::default();
    let bad = Bad::<TB> {
        fc: LinearConfig::new(2, 2).init(&device).unwrap(),
        bn1: burn::nn::BatchNormConfig::new(2).init(&device),
        inner: vec![burn::nn::BatchNormConfig::new(2).init(&device)],
    };
    let Err(DpError::CrossExampleLayers(layers)) = DpOptimizer::new(
        &bad,
        SgdConfig::new().init::<TB, Bad<TB>>(),
        DpSgdConfig::new(1.0, 1.0),
        accountant(NeighboringRelation::AddOrRemoveOne),
    ) else {
        panic!("BatchNorm accepted");
    };
    let paths: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
    assert_eq!(paths, ["bn1", "inner.0"]);
    assert!(layers[0].reason.contains("GroupNorm"));
}

#[test]
fn plain_burn_modules_need_the_batch_of_one_engine() {
    #[derive(Module, Debug)]
    struct Plain<B: Backend> {
        fc: burn::nn::Linear<B>,
    }
    let device = Default::default();
    let model = Plain::<TB> {
        fc: burn::nn::LinearConfig::new(4, 3).init(&device),
    };
    let (x, y) = data(5, 4);
    let losses = |m: &Plain<TB>, r: Range<usize>| {
        cross_entropy_per_row(m.fc.forward(x.clone().slice(r.clone())), y.clone().slice(r))
    };
    let spec = dp_core::ClipSpec::new(1.0, dp_core::Clipping::Flat).unwrap();
    let err =
        dp_core::clip_and_sum(PerExampleEngine::Fast, &model, 5, 1, losses, &spec, 0).unwrap_err();
    assert!(
        matches!(err, DpError::UncoveredParameters(ref p) if p.len() == 2),
        "{err}"
    );
    let ok = dp_core::clip_and_sum(PerExampleEngine::BatchOfOne, &model, 5, 1, losses, &spec, 0)
        .unwrap();
    assert_eq!(ok.examples(), 5);
}

#[test]
fn adam_and_momentum_are_wrapped_and_the_ema_follows() {
    let (n, d) = (16, 6);
    let full = data(n, d);
    let model = lin(d, 3);
    let mut config = DpSgdConfig::new(0.5, 1.0);
    config.ema_decay = Some(0.9);
    let mut adam = DpOptimizer::new(
        &model,
        AdamConfig::new().init::<TB, Lin<TB>>(),
        config.clone(),
        accountant(NeighboringRelation::AddOrRemoveOne),
    )
    .unwrap();
    let momentum = SgdConfig::new().with_momentum(Some(
        burn::optim::momentum::MomentumConfig::new()
            .with_momentum(0.9)
            .with_dampening(0.0),
    ));
    let mut sgd = DpOptimizer::new(
        &model,
        momentum.init::<TB, Lin<TB>>(),
        config,
        accountant(NeighboringRelation::AddOrRemoveOne),
    )
    .unwrap();
    let mut sampler = PoissonSampler::seeded(n as u64, 0.5, 2).unwrap();
    let (mut a, mut b) = (model.clone(), model.clone());
    for _ in 0..3 {
        let batch = sampler.next_batch();
        a = adam
            .step(a, &batch, 4, 0.01, |i| rows_of(&full.0, &full.1, i), ce)
            .unwrap();
        b = sgd
            .step(b, &batch, 4, 0.01, |i| rows_of(&full.0, &full.1, i), ce)
            .unwrap();
    }
    assert_ne!(params(&a), params(&model));
    assert_ne!(params(&b), params(&model));
    let ema = adam.ema_model().unwrap();
    let ema_w = ema
        .fc
        .weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap();
    assert_ne!(
        ema_w,
        values(a.fc.weight.val()),
        "the EMA lags the parameters"
    );
    assert_eq!(adam.steps(), 3);
    assert_eq!(param_infos(&a).len(), 2);
}
