//! Calibration: the noise multiplier that reaches a target ε, the most steps a budget allows.
//!
//! Both rest on monotonicity (ε falls with σ and grows with the number of steps) and on a
//! generic bracketing root finder, as dp_accounting's `mechanism_calibration` does.

use crate::accountant::{AccountantConfig, PrivacyAccountant};
use crate::error::{check_delta, AccountantError, Result};
use crate::event::{DpEvent, NeighboringRelation};

/// Default relative tolerance of [`calibrate_noise_multiplier`].
pub const DEFAULT_RELATIVE_TOLERANCE: f64 = 1e-4;

/// The noise multipliers σ that calibration searches, and that the `dp-accountant` CLI
/// accepts: below, ε is astronomically large (or the PLD grid too large); above, ε is
/// negligible for any realistic number of steps.
pub const NOISE_MULTIPLIER_RANGE: (f64, f64) = (1e-6, 1e6);

/// A bracket [lo, hi] of a monotone predicate: `pred(lo)` is false and `pred(hi)` is true.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bracket {
    /// The largest point known to fail.
    pub lo: f64,
    /// The smallest point known to satisfy.
    pub hi: f64,
}

/// Narrows a bracket of a monotone predicate (false below the threshold, true above) until
/// hi/lo − 1 ≤ `relative_tolerance`, by bisection in log space. `lo` and `hi` must be > 0.
///
/// The predicate may fail; its error is returned.
///
/// ```
/// use dp_accountant::calibrate::bracket_threshold;
/// let b = bracket_threshold(|x| Ok(x * x >= 2.0), 1.0, 2.0, 1e-9)?;
/// assert!(b.hi >= 2f64.sqrt() && b.lo < 2f64.sqrt() && b.hi / b.lo - 1.0 <= 1e-9);
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
pub fn bracket_threshold(
    mut pred: impl FnMut(f64) -> Result<bool>,
    lo: f64,
    hi: f64,
    relative_tolerance: f64,
) -> Result<Bracket> {
    let mut b = Bracket { lo, hi };
    while b.hi / b.lo - 1.0 > relative_tolerance {
        let mid = (b.lo * b.hi).sqrt();
        if mid <= b.lo || mid >= b.hi {
            break;
        }
        if pred(mid)? {
            b.hi = mid;
        } else {
            b.lo = mid;
        }
    }
    Ok(b)
}

/// The smallest noise multiplier σ (within `relative_tolerance`, rounded up) for which
/// `event_for(σ)` costs at most `target_epsilon` at `delta`.
///
/// The search covers [`NOISE_MULTIPLIER_RANGE`]: if even its lower end reaches the target,
/// a σ near that end is returned. A σ for which the accountant cannot compute ε (a PLD loss
/// grid over `max_grid_points`) counts as not reaching the target, so with PLD the answer is
/// at least the smallest σ the accountant can certify.
///
/// # Privacy
/// The returned σ is the upper end of the final bracket, so recomputing ε with it gives
/// ε ≤ `target_epsilon` with the same accountant.
///
/// ```
/// use dp_accountant::{calibrate, AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
/// let config = AccountantConfig::default_for(AccountantKind::Rdp);
/// let sigma = calibrate::calibrate_noise_multiplier(
///     &config, NeighboringRelation::AddOrRemoveOne,
///     |s| DpEvent::poisson_gaussian(4096.0 / 50000.0, s).self_composed(875),
///     1.0, 1e-5, calibrate::DEFAULT_RELATIVE_TOLERANCE)?;
/// assert!((sigma - 9.8896).abs() < 0.01); // dp_accounting 0.6: 9.88956
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
pub fn calibrate_noise_multiplier(
    config: &AccountantConfig,
    relation: NeighboringRelation,
    event_for: impl Fn(f64) -> DpEvent,
    target_epsilon: f64,
    delta: f64,
    relative_tolerance: f64,
) -> Result<f64> {
    check_delta(delta)?;
    if !(target_epsilon > 0.0 && target_epsilon.is_finite()) {
        return Err(AccountantError::invalid(
            "target_epsilon",
            "ε",
            target_epsilon,
            "> 0 and finite",
        ));
    }
    let meets = |sigma: f64| -> Result<bool> {
        let mut accountant = config.build(relation)?;
        let epsilon = accountant
            .compose(&event_for(sigma))
            .and_then(|()| accountant.epsilon(delta));
        match epsilon {
            // Small σ can need a loss grid over the PLD limit, for one step (in `compose`) or
            // for the composition (built lazily by `epsilon`). Counting such a σ as failing is
            // on the safe side: the answer is then a larger σ whose ε was computed in full.
            Err(AccountantError::GridTooLarge { .. }) => Ok(false),
            other => Ok(other? <= target_epsilon),
        }
    };
    // Find a bracket by doubling from σ = 1.
    let (mut lo, mut hi) = (1.0, 1.0);
    if meets(1.0)? {
        while meets(lo)? {
            hi = lo;
            lo /= 2.0;
            if lo < NOISE_MULTIPLIER_RANGE.0 {
                return Ok(hi);
            }
        }
    } else {
        while !meets(hi)? {
            lo = hi;
            hi *= 2.0;
            if hi > NOISE_MULTIPLIER_RANGE.1 {
                return Err(AccountantError::Unreachable(format!(
                    "ε = {target_epsilon} at δ = {delta} needs a noise multiplier above {}",
                    NOISE_MULTIPLIER_RANGE.1
                )));
            }
        }
    }
    Ok(bracket_threshold(meets, lo, hi, relative_tolerance)?.hi)
}

/// The largest number of repetitions of `step` (at most `max_steps`) whose composition costs
/// at most `target_epsilon` at `delta`; an error if even one step costs more.
///
/// A result equal to `max_steps` means only that the budget allows *at least* that many: the
/// search does not look beyond the cap. It takes at most about 2·log₂(`max_steps`)
/// evaluations of the accountant.
///
/// ```
/// use dp_accountant::{calibrate, AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
/// let config = AccountantConfig::default_for(AccountantKind::Rdp);
/// let step = DpEvent::poisson_gaussian(4096.0 / 50000.0, 3.0);
/// let steps = calibrate::max_steps(&config, NeighboringRelation::AddOrRemoveOne, &step,
///     8.0, 1e-5, 1_000_000)?;
/// assert!(steps > 2468);
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
pub fn max_steps(
    config: &AccountantConfig,
    relation: NeighboringRelation,
    step: &DpEvent,
    target_epsilon: f64,
    delta: f64,
    max_steps: u64,
) -> Result<u64> {
    check_target(target_epsilon, delta)?;
    let meets = |steps: u64| -> Result<bool> {
        Ok(epsilon_after(config.build(relation)?, step, steps, delta)? <= target_epsilon)
    };
    if !meets(1)? {
        return Err(AccountantError::Unreachable(format!(
            "a single step already costs more than ε = {target_epsilon} at δ = {delta}"
        )));
    }
    largest_meeting(meets, max_steps)
}

/// ε at `delta` of `accountant` after it composes `steps` repetitions of `step`.
fn epsilon_after(
    mut accountant: Box<dyn PrivacyAccountant>,
    step: &DpEvent,
    steps: u64,
    delta: f64,
) -> Result<f64> {
    accountant.compose(&step.clone().self_composed(steps))?;
    accountant.epsilon(delta)
}

/// How many more repetitions of `step` the accountant `spent` can take, at most `max_steps`,
/// while its ε at `delta` stays within `target_epsilon`: 0 when the next step already goes
/// past it. The search is [`max_steps`]'s, starting from what `spent` has composed; an error
/// of the accountant beyond the first step (a PLD grid grown past its limit, say) ends the
/// search there, as if the budget were exceeded: the answer can only be smaller.
///
/// A caller that charges one step at a time can use the answer for that many steps instead
/// of asking the accountant before each (what `dp_core`'s budget check does).
///
/// ```
/// use dp_accountant::{calibrate, DpEvent, PrivacyAccountant, RdpAccountant};
/// let step = DpEvent::poisson_gaussian(0.01, 1.0);
/// let mut spent = RdpAccountant::new();
/// spent.compose(&step.clone().self_composed(100))?;
/// let more = calibrate::steps_within(&spent, &step, 3.0, 1e-5, 1_000_000)?;
/// spent.compose(&step.clone().self_composed(more))?;
/// assert!(spent.epsilon(1e-5)? <= 3.0);
/// spent.compose(&step)?;
/// assert!(spent.epsilon(1e-5)? > 3.0);
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
pub fn steps_within(
    spent: &dyn PrivacyAccountant,
    step: &DpEvent,
    target_epsilon: f64,
    delta: f64,
    max_steps: u64,
) -> Result<u64> {
    check_target(target_epsilon, delta)?;
    if max_steps == 0 {
        return Ok(0);
    }
    let epsilon_after = |steps: u64| epsilon_after(spent.box_clone(), step, steps, delta);
    if epsilon_after(1)? > target_epsilon {
        return Ok(0);
    }
    largest_meeting(
        |steps| Ok(matches!(epsilon_after(steps), Ok(e) if e <= target_epsilon)),
        max_steps,
    )
}

/// A target ε must be ≥ 0 (and δ valid).
fn check_target(target_epsilon: f64, delta: f64) -> Result<()> {
    check_delta(delta)?;
    if target_epsilon.is_nan() || target_epsilon < 0.0 {
        return Err(AccountantError::invalid(
            "target_epsilon",
            "ε",
            target_epsilon,
            ">= 0",
        ));
    }
    Ok(())
}

/// The largest count in [1, `max_steps`] that `meets`, given that 1 does and that `meets` is
/// monotone (true up to a threshold, false after).
fn largest_meeting(mut meets: impl FnMut(u64) -> Result<bool>, max_steps: u64) -> Result<u64> {
    // Exponential search for a failing count, then integer bisection. The search stops at
    // the cap: doubling saturates at u64::MAX, so testing `bad > max_steps` alone never ends
    // when the cap is u64::MAX and the budget allows it.
    let (mut good, mut bad) = (1u64, 2u64);
    loop {
        if bad >= max_steps {
            if meets(max_steps)? {
                return Ok(max_steps);
            }
            bad = max_steps;
            break;
        }
        if !meets(bad)? {
            break;
        }
        good = bad;
        bad = bad.saturating_mul(2);
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if meets(mid)? {
            good = mid;
        } else {
            bad = mid;
        }
    }
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accountant::AccountantKind;
    use crate::pld::PldConfig;

    fn epsilon_of(config: &AccountantConfig, event: &DpEvent, delta: f64) -> f64 {
        let mut accountant = config.build(NeighboringRelation::AddOrRemoveOne).unwrap();
        accountant.compose(event).unwrap();
        accountant.epsilon(delta).unwrap()
    }

    #[test]
    fn pld_grid_over_the_limit_while_composing_counts_as_not_reaching_the_target() {
        // A coarse grid with a small limit: one step fits down to σ ≈ 0.04, ten composed steps
        // only from σ ≈ 0.1, where ε ≈ 1000 lies. The composition's GridTooLarge is raised by
        // `epsilon`, not `compose`; it used to end the calibration with an error.
        let config = AccountantConfig::Pld(PldConfig {
            value_discretization_interval: 1e-2,
            max_grid_points: 100_000,
            ..PldConfig::default()
        });
        let run = |sigma| DpEvent::poisson_gaussian(0.01, sigma).self_composed(10);
        let relation = NeighboringRelation::AddOrRemoveOne;
        let sigma = calibrate_noise_multiplier(&config, relation, run, 1000.0, 1e-5, 1e-3).unwrap();
        assert!(sigma < 0.5, "{sigma}");
        assert!(epsilon_of(&config, &run(sigma), 1e-5) <= 1000.0, "{sigma}");
    }

    #[test]
    fn large_targets_calibrate_below_a_thousandth() {
        // One unsampled Gaussian step: ε = 10⁶ at δ = 1e-5 needs σ ≈ 7.4e-4 by RDP
        // (ε ≈ α/(2σ²) at α = 1.1), below the old search floor of 1e-3 (which gave σ ≈ 2e-3).
        let config = AccountantConfig::default_for(AccountantKind::Rdp);
        let relation = NeighboringRelation::AddOrRemoveOne;
        let sigma =
            calibrate_noise_multiplier(&config, relation, DpEvent::gaussian, 1e6, 1e-5, 1e-4)
                .unwrap();
        assert!(sigma < 1e-3, "{sigma}");
        assert!(epsilon_of(&config, &DpEvent::gaussian(sigma), 1e-5) <= 1e6);
        assert!(epsilon_of(&config, &DpEvent::gaussian(sigma * (1.0 - 1e-3)), 1e-5) > 1e6);
    }

    #[test]
    fn max_steps_at_a_cap_of_u64_max_returns_the_cap() {
        // Doubling saturates at u64::MAX; this search used to loop forever.
        let config = AccountantConfig::default_for(AccountantKind::Rdp);
        let step = DpEvent::poisson_gaussian(1e-15, 1.0);
        let relation = NeighboringRelation::AddOrRemoveOne;
        let steps = max_steps(&config, relation, &step, 1.0, 1e-5, u64::MAX).unwrap();
        assert_eq!(steps, u64::MAX);
    }
}
