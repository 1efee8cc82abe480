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

fn rdp() -> Box<dyn dp_accountant::PrivacyAccountant> {
    AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap()
}

#[test]
fn the_budget_admits_exactly_the_steps_the_accountant_allows_and_refuses_the_next_at_no_cost() {
    let (sigma, q, n, delta, budget) = (1.5, 0.1, 50u64, 1e-5, 1.25);
    // k from the accountant alone: ε(k steps) ≤ budget < ε(k + 1 steps).
    let epsilon_after = |steps: u64| {
        let mut accountant = rdp();
        let event = DpEvent::poisson_gaussian(q, sigma).self_composed(steps);
        accountant.compose(&event).unwrap();
        accountant.epsilon(delta).unwrap()
    };
    let k = (1..100u64)
        .find(|&k| epsilon_after(k + 1) > budget)
        .unwrap();
    assert!(k >= 3, "only {k} steps fit: the test needs several");
    assert!(epsilon_after(k) <= budget && budget < epsilon_after(k + 1));

    let mut model = Lin {
        fc: LinearConfig::new(4, 3)
            .init::<TB>(&Default::default())
            .unwrap(),
    };
    let mut config = DpSgdConfig::new(sigma, 1.0);
    config.budget = Some(Budget {
        epsilon: budget,
        delta,
    });
    let inner = SgdConfig::new().init::<TB, Lin<TB>>();
    let mut opt = DpOptimizer::new(&model, inner, config, rdp()).unwrap();
    let mut sampler = PoissonSampler::seeded(n, q, 0).unwrap();
    for taken in 1..=k {
        let batch = sampler.next_batch();
        model = opt.step(model, &batch, 8, 0.1, load, ce).unwrap();
        assert_eq!(opt.steps(), taken);
    }
    let spent = opt.epsilon(delta).unwrap();
    assert!(
        (spent / epsilon_after(k) - 1.0).abs() < 1e-9,
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
            assert_eq!(step, k);
            assert!((would_spend / epsilon_after(k + 1) - 1.0).abs() < 1e-9);
            assert_eq!((b, d), (budget, delta));
        }
        Err(other) => panic!("step {} refused with {other}", k + 1),
        Ok(_) => panic!("step {} taken beyond the budget", k + 1),
    }
    assert_eq!(opt.epsilon(delta).unwrap(), spent, "the refusal changed ε");
    assert_eq!(opt.accountant().ledger(), &ledger);
    assert_eq!(opt.steps(), k);
}
