//! Properties every accountant must have, run on both: the contract of `PrivacyAccountant`,
//! composition identities, monotonicity, the q = 1 closed forms, calibration round trips.

use dp_accountant::{
    calibrate, AccountantConfig, AccountantError, AccountantKind, DpEvent, NeighboringRelation,
    PrivacyAccountant,
};
use proptest::prelude::*;

const KINDS: [AccountantKind; 2] = [AccountantKind::Rdp, AccountantKind::Pld];

fn fresh(kind: AccountantKind) -> Box<dyn PrivacyAccountant> {
    AccountantConfig::default_for(kind)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap()
}

fn epsilon_of(kind: AccountantKind, event: &DpEvent, delta: f64) -> f64 {
    let mut a = fresh(kind);
    a.compose(event).unwrap();
    a.epsilon(delta).unwrap()
}

#[test]
fn no_events_cost_nothing() {
    for kind in KINDS {
        let a = fresh(kind);
        assert_eq!(a.epsilon(1e-5).unwrap(), 0.0, "{kind}");
        assert_eq!(a.delta(0.0).unwrap(), 0.0, "{kind}");
        let mut b = fresh(kind);
        b.compose(&DpEvent::NoOp.self_composed(1000)).unwrap();
        assert_eq!(b.epsilon(1e-5).unwrap(), 0.0, "{kind}");
    }
}

#[test]
fn non_private_events_cost_everything() {
    for kind in KINDS {
        let mut a = fresh(kind);
        a.compose(&DpEvent::Composed(vec![
            DpEvent::poisson_gaussian(0.01, 1.0),
            DpEvent::NonPrivate,
        ]))
        .unwrap();
        assert_eq!(a.epsilon(1e-5).unwrap(), f64::INFINITY, "{kind}");
        assert_eq!(a.delta(100.0).unwrap(), 1.0, "{kind}");
    }
}

#[test]
fn unsupported_events_are_refused_and_leave_the_accountant_unchanged() {
    let step = DpEvent::poisson_gaussian(0.01, 1.0).self_composed(100);
    for kind in KINDS {
        for relation in [
            NeighboringRelation::AddOrRemoveOne,
            NeighboringRelation::ReplaceOne,
        ] {
            let config = AccountantConfig::default_for(kind);
            let mut a = config.build(relation).unwrap();
            let base = DpEvent::gaussian(2.0).self_composed(10);
            a.compose(&base).unwrap();
            let (before_ledger, before_eps) = (a.ledger().clone(), a.epsilon(1e-5).unwrap());
            // Each accountant refuses something: RDP, Poisson under replace-one and fixed-size
            // sampling under add-or-remove; PLD, fixed-size sampling.
            let refused = match (kind, relation) {
                (AccountantKind::Rdp, NeighboringRelation::ReplaceOne) => step.clone(),
                _ => DpEvent::without_replacement_gaussian(256, 60_000, 1.0),
            };
            // Composed with a supported event first: all or nothing.
            let event = DpEvent::Composed(vec![DpEvent::gaussian(1.0), refused]);
            let err = a.compose(&event).unwrap_err();
            assert!(
                matches!(err, AccountantError::UnsupportedEvent { .. }),
                "{kind} {relation}: {err}"
            );
            assert!(a.check(&event).is_err());
            assert_eq!(a.ledger(), &before_ledger, "{kind} {relation}");
            assert_eq!(a.epsilon(1e-5).unwrap(), before_eps, "{kind} {relation}");
        }
    }
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    for kind in KINDS {
        let mut a = fresh(kind);
        assert!(a.compose(&DpEvent::poisson_gaussian(0.0, 1.0)).is_err());
        assert!(a
            .compose(&DpEvent::poisson_gaussian(0.1, f64::NAN))
            .is_err());
        assert!(a
            .compose(&DpEvent::without_replacement_gaussian(10, 5, 1.0))
            .is_err());
        a.compose(&DpEvent::poisson_gaussian(0.1, 1.0)).unwrap();
        for bad in [0.0, 1.0, -1.0, f64::NAN] {
            assert!(a.epsilon(bad).is_err(), "{kind} δ = {bad}");
        }
        assert!(a.delta(-1.0).is_err());
        assert!(a.delta(f64::NAN).is_err());
    }
}

#[test]
fn the_three_forms_of_repetition_agree_exactly() {
    let step = DpEvent::poisson_gaussian(0.02, 1.3);
    for kind in KINDS {
        let mut one_by_one = fresh(kind);
        for _ in 0..6 {
            one_by_one.compose(&step).unwrap();
        }
        let self_composed = epsilon_of(kind, &step.clone().self_composed(6), 1e-5);
        let composed = epsilon_of(kind, &DpEvent::Composed(vec![step.clone(); 6]), 1e-5);
        assert_eq!(one_by_one.epsilon(1e-5).unwrap(), self_composed, "{kind}");
        assert_eq!(composed, self_composed, "{kind}");
    }
}

#[test]
fn heterogeneous_composition_lies_between_its_parts() {
    // σ changing mid-run: 500 steps at σ = 0.8 then 500 at σ = 1.5.
    let low = DpEvent::poisson_gaussian(0.01, 0.8);
    let high = DpEvent::poisson_gaussian(0.01, 1.5);
    for kind in KINDS {
        let mixed = DpEvent::Composed(vec![
            low.clone().self_composed(500),
            high.clone().self_composed(500),
        ]);
        let e_mixed = epsilon_of(kind, &mixed, 1e-5);
        let e_low = epsilon_of(kind, &low.clone().self_composed(1000), 1e-5);
        let e_high = epsilon_of(kind, &high.clone().self_composed(1000), 1e-5);
        assert!(
            e_high < e_mixed && e_mixed < e_low,
            "{kind}: {e_high} {e_mixed} {e_low}"
        );
    }
}

#[test]
fn full_batch_lies_between_the_exact_gaussian_and_opendps_zcdp_bound() {
    use opendp::combinators::make_zCDP_to_approxDP;
    use opendp::domains::AtomDomain;
    use opendp::measurements::make_gaussian;
    use opendp::measures::ZeroConcentratedDivergence;
    use opendp::metrics::AbsoluteDistance;
    for (sigma, steps) in [(1.0, 1u64), (2.0, 100), (5.0, 1000), (0.8, 10)] {
        let delta = 1e-5;
        // T Gaussians of σ are one Gaussian of σ/√T; opendp's continuous-order zCDP conversion.
        let meas = make_gaussian::<_, _, ZeroConcentratedDivergence>(
            AtomDomain::<f64>::new_non_nan(),
            AbsoluteDistance::<f64>::default(),
            sigma / (steps as f64).sqrt(),
            None,
        )
        .unwrap();
        let profile = make_zCDP_to_approxDP(meas).unwrap().map(&1.0).unwrap();
        let zcdp = profile.epsilon(delta).unwrap();
        let event = DpEvent::poisson_gaussian(1.0, sigma).self_composed(steps);
        let pld = epsilon_of(AccountantKind::Pld, &event, delta);
        let rdp = epsilon_of(AccountantKind::Rdp, &event, delta);
        // The exact ε (Balle & Wang 2018) is what PLD computes in closed form for q = 1; it
        // lies below any valid bound, and RDP over a finite order grid is no tighter than
        // opendp's optimum over all orders.
        assert!(pld <= zcdp, "σ={sigma} T={steps}: pld {pld} > zCDP {zcdp}");
        assert!(
            rdp >= zcdp * (1.0 - 1e-9),
            "σ={sigma} T={steps}: rdp {rdp} < zCDP {zcdp}"
        );
        assert!(
            rdp <= zcdp * 1.05,
            "σ={sigma} T={steps}: rdp {rdp} far above zCDP {zcdp}"
        );
    }
}

#[test]
fn calibrated_noise_recomputes_to_the_target_with_both_accountants() {
    for kind in KINDS {
        for (q, steps, target) in [(0.01, 1000u64, 2.0), (4096.0 / 50000.0, 875, 8.0)] {
            let config = AccountantConfig::default_for(kind);
            let relation = NeighboringRelation::AddOrRemoveOne;
            let event = |s: f64| DpEvent::poisson_gaussian(q, s).self_composed(steps);
            let sigma =
                calibrate::calibrate_noise_multiplier(&config, relation, event, target, 1e-5, 1e-4)
                    .unwrap();
            let spent = epsilon_of(kind, &event(sigma), 1e-5);
            assert!(
                spent <= target && spent > target * 0.995,
                "{kind}: σ={sigma} spends {spent}"
            );
            let slightly_less = epsilon_of(kind, &event(sigma * (1.0 - 2e-4)), 1e-5);
            assert!(slightly_less > target * 0.999, "{kind}: not the smallest σ");
        }
    }
}

#[test]
fn max_steps_is_the_last_count_within_budget() {
    for kind in KINDS {
        let config = AccountantConfig::default_for(kind);
        let step = DpEvent::poisson_gaussian(0.02, 1.0);
        let relation = NeighboringRelation::AddOrRemoveOne;
        let steps = calibrate::max_steps(&config, relation, &step, 2.0, 1e-5, 1_000_000).unwrap();
        assert!(epsilon_of(kind, &step.clone().self_composed(steps), 1e-5) <= 2.0);
        assert!(epsilon_of(kind, &step.clone().self_composed(steps + 1), 1e-5) > 2.0);
    }
}

#[test]
fn unreachable_targets_are_errors() {
    let config = AccountantConfig::default_for(AccountantKind::Rdp);
    let relation = NeighboringRelation::AddOrRemoveOne;
    let err = calibrate::max_steps(&config, relation, &DpEvent::gaussian(0.1), 0.5, 1e-5, 100)
        .unwrap_err();
    assert!(matches!(err, AccountantError::Unreachable(_)), "{err}");
    let err = calibrate::calibrate_noise_multiplier(
        &config,
        relation,
        |s| DpEvent::gaussian(s).self_composed(1),
        0.0,
        1e-5,
        1e-4,
    )
    .unwrap_err();
    assert!(
        matches!(err, AccountantError::InvalidParameter { .. }),
        "{err}"
    );
}

#[test]
fn restoring_from_a_ledger_reproduces_epsilon() {
    for kind in KINDS {
        let mut a = fresh(kind);
        a.compose(&DpEvent::poisson_gaussian(0.01, 1.1).self_composed(300))
            .unwrap();
        a.compose(&DpEvent::gaussian(20.0)).unwrap();
        let json = serde_json::to_string(a.ledger()).unwrap();
        let ledger = serde_json::from_str(&json).unwrap();
        let b = a
            .config()
            .restore(a.neighboring_relation(), &ledger)
            .unwrap();
        assert_eq!(a.epsilon(1e-6).unwrap(), b.epsilon(1e-6).unwrap(), "{kind}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn rdp_epsilon_grows_with_steps_and_rate_and_falls_with_noise(
        q in 1e-4f64..0.5, sigma in 0.5f64..10.0, steps in 1u64..100_000,
    ) {
        let e = |q: f64, s: f64, t: u64| epsilon_of(AccountantKind::Rdp, &DpEvent::poisson_gaussian(q, s).self_composed(t), 1e-5);
        let base = e(q, sigma, steps);
        prop_assert!(e(q, sigma, steps * 2) >= base);
        prop_assert!(e((q * 1.5).min(1.0), sigma, steps) >= base);
        prop_assert!(e(q, sigma * 1.2, steps) <= base);
    }

    #[test]
    fn pld_epsilon_grows_with_steps_and_rate_and_falls_with_noise(
        q in 1e-3f64..0.2, sigma in 0.8f64..5.0, steps in 1u64..2_000,
    ) {
        let e = |q: f64, s: f64, t: u64| epsilon_of(AccountantKind::Pld, &DpEvent::poisson_gaussian(q, s).self_composed(t), 1e-5);
        let base = e(q, sigma, steps);
        // PLD values carry discretization noise of order Δ = 1e-4.
        prop_assert!(e(q, sigma, steps * 2) >= base - 1e-4);
        prop_assert!(e(q * 1.5, sigma, steps) >= base - 1e-4);
        prop_assert!(e(q, sigma * 1.2, steps) <= base + 1e-4);
    }

    #[test]
    fn pld_is_never_looser_than_rdp_by_more_than_discretization(
        q in 1e-3f64..0.2, sigma in 0.8f64..5.0, steps in 1u64..2_000,
    ) {
        let event = DpEvent::poisson_gaussian(q, sigma).self_composed(steps);
        let pld = epsilon_of(AccountantKind::Pld, &event, 1e-5);
        let rdp = epsilon_of(AccountantKind::Rdp, &event, 1e-5);
        prop_assert!(pld <= rdp + 1e-3, "pld {} rdp {}", pld, rdp);
    }
}
