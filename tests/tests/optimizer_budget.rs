//! The privacy budget over several steps: exactly the steps the accountant allows are taken,
//! the next one is refused, and the refusal charges nothing. The number of steps that fit is
//! computed with the accountant crate alone (a self-composed event), not with the optimizer.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::loss::cross_entropy_per_row;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{Budget, DpError, DpOptimizer, DpSgdConfig};
use std::ops::Range;

type TB = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Lin<B: Backend> {
    fc: Linear<B>,
}

type Data = (Tensor<TB, 2>, Tensor<TB, 1, Int>);

/// Rows `indices` of a deterministic dataset of 4 features and 3 classes.
fn load(indices: &[usize]) -> Data {
    let device = Default::default();
    let x: Vec<f32> = indices
        .iter()
        .flat_map(|&i| (0..4).map(move |j| ((i * 4 + j) * 37 % 101) as f32 / 50.0 - 1.0))
        .collect();
    let y: Vec<i64> = indices.iter().map(|&i| (i % 3) as i64).collect();
    let n = indices.len();
    (
        Tensor::from_data(TensorData::new(x, [n, 4]), &device),
        Tensor::from_data(TensorData::new(y, [n]), &device),
    )
}

fn ce(m: &Lin<TB>, data: &Data, r: Range<usize>) -> Tensor<TB, 1> {
    cross_entropy_per_row(
        m.fc.forward(data.0.clone().slice(r.clone())),
        data.1.clone().slice(r),
    )
}

fn accountant(kind: AccountantKind) -> Box<dyn dp_accountant::PrivacyAccountant> {
    AccountantConfig::default_for(kind)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap()
}

/// ε after `before` steps at rate `q0` and then `steps` at `q`, by the accountant alone.
fn epsilon_after(
    kind: AccountantKind,
    sigma: f64,
    q0: f64,
    before: u64,
    q: f64,
    steps: u64,
) -> f64 {
    let mut acc = accountant(kind);
    if before > 0 {
        acc.compose(&DpEvent::poisson_gaussian(q0, sigma).self_composed(before))
            .unwrap();
    }
    acc.compose(&DpEvent::poisson_gaussian(q, sigma).self_composed(steps))
        .unwrap();
    acc.epsilon(1e-5).unwrap()
}

fn lin() -> Lin<TB> {
    Lin {
        fc: LinearConfig::new(4, 3)
            .init::<TB>(&Default::default())
            .unwrap(),
    }
}

/// Takes `before` steps at rate `q0`, then steps at `q` until the budget refuses one, and
/// checks that exactly the steps the accountant allows were taken and the refusal charged
/// nothing. The check before a step counts down steps known to fit (one search per event),
/// so a change of event must be searched again.
fn admits_exactly_what_fits(
    kind: AccountantKind,
    q0: f64,
    before: u64,
    q: f64,
    budget: f64,
    fewest: u64,
) {
    let (sigma, n, delta) = (1.5, 50u64, 1e-5);
    // k from the accountant alone: ε(k steps) ≤ budget < ε(k + 1 steps).
    let after = |k| epsilon_after(kind, sigma, q0, before, q, k);
    let k = (0..200u64).find(|&k| after(k + 1) > budget).unwrap();
    assert!(k >= fewest, "only {k} steps fit: the test needs {fewest}");
    assert!(after(k) <= budget && budget < after(k + 1));

    let mut model = lin();
    let mut config = DpSgdConfig::new(sigma, 1.0);
    config.budget = Some(Budget {
        epsilon: budget,
        delta,
    });
    let inner = SgdConfig::new().init::<TB, Lin<TB>>();
    let mut opt = DpOptimizer::new(&model, inner, config, accountant(kind)).unwrap();
    let mut first = PoissonSampler::seeded(n, q0, 0).unwrap();
    for _ in 0..before {
        model = opt
            .step(model, &first.next_batch(), 8, 0.1, load, ce)
            .unwrap();
    }
    let mut sampler = PoissonSampler::seeded(n, q, 0).unwrap();
    for taken in 1..=k {
        let batch = sampler.next_batch();
        model = opt.step(model, &batch, 8, 0.1, load, ce).unwrap();
        assert_eq!(opt.steps(), before + taken);
    }
    let spent = opt.epsilon(delta).unwrap();
    assert!(
        (spent / after(k) - 1.0).abs() < 1e-9,
        "{spent} after {k} steps"
    );
    let ledger = opt.accountant().ledger().clone();
    let batch = sampler.next_batch();
    let refused = opt.step(
        model,
        &batch,
        8,
        0.1,
        |_: &[usize]| -> Data { panic!("step k + 1 ran: data loaded beyond the budget") },
        ce,
    );
    match refused {
        Err(DpError::BudgetExceeded {
            step,
            would_spend,
            budget: b,
            delta: d,
        }) => {
            assert_eq!(step, before + k);
            assert!((would_spend / after(k + 1) - 1.0).abs() < 1e-9);
            assert_eq!((b, d), (budget, delta));
        }
        Err(other) => panic!("step {} refused with {other}", k + 1),
        Ok(_) => panic!("step {} taken beyond the budget", k + 1),
    }
    assert_eq!(opt.epsilon(delta).unwrap(), spent, "the refusal changed ε");
    assert_eq!(opt.accountant().ledger(), &ledger);
    assert_eq!(opt.steps(), before + k);
}

#[test]
fn the_budget_admits_exactly_the_steps_the_accountant_allows_and_refuses_the_next_at_no_cost() {
    admits_exactly_what_fits(AccountantKind::Rdp, 0.1, 0, 0.1, 1.25, 3);
    admits_exactly_what_fits(AccountantKind::Pld, 0.1, 0, 0.1, 1.25, 3);
}

#[test]
fn a_costlier_event_after_cheap_steps_is_checked_anew() {
    // 20 cheap steps (q = 0.02) leave room for many more of them; steps at q = 0.2 must be
    // refused where the accountant says, not after the cheap event's count, and a first
    // step at q = 1 (ε > 3 alone) at once.
    for kind in [AccountantKind::Rdp, AccountantKind::Pld] {
        admits_exactly_what_fits(kind, 0.02, 20, 0.2, 3.0, 3);
        admits_exactly_what_fits(kind, 0.02, 20, 1.0, 3.0, 0);
    }
}
