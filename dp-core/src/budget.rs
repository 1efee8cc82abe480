//! The privacy budget of a run, and its check before every step.
//!
//! Asking the accountant before every step is cheap with RDP but costs a PLD composition
//! (milliseconds, more as steps grow). So the check asks once how many more steps of the
//! current event fit ([`dp_accountant::calibrate::steps_within`], monotone in the number of
//! steps), then counts down; a step of another event asks again. The steps allowed are those
//! of asking before every step.

use crate::error::{DpError, Result};
use dp_accountant::{calibrate, DpEvent, PrivacyAccountant};
use serde::{Deserialize, Serialize};

/// A target privacy budget: no step may take ε past `epsilon` at `delta`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
}

/// Steps of one event known to fit in the budget.
#[derive(Clone, Debug, Default)]
pub(crate) struct Headroom {
    known: Option<(DpEvent, u64)>,
}

impl Headroom {
    /// Checks that one more `event` after what `spent` has composed stays within `budget`;
    /// `steps` is the index of the step, for the error. Nothing is counted: call
    /// [`Headroom::charged`] once the step is charged.
    pub(crate) fn check(
        &mut self,
        spent: &dyn PrivacyAccountant,
        event: &DpEvent,
        budget: &Budget,
        steps: u64,
    ) -> Result<()> {
        let fits = matches!(&self.known, Some((known, left)) if known == event && *left > 0);
        if fits {
            return Ok(());
        }
        // Look ahead as far as the run has come (at least 1,024 steps): the lookahead doubles
        // the run each time, so the searches cost O(log² T) queries in all.
        let lookahead = steps.max(1024);
        let left = calibrate::steps_within(spent, event, budget.epsilon, budget.delta, lookahead)?;
        self.known = Some((event.clone(), left));
        if left == 0 {
            let mut after = spent.box_clone();
            after.compose(event)?;
            return Err(DpError::BudgetExceeded {
                step: steps,
                would_spend: after.epsilon(budget.delta)?,
                budget: budget.epsilon,
                delta: budget.delta,
            });
        }
        Ok(())
    }

    /// One step of `event` was charged.
    pub(crate) fn charged(&mut self, event: &DpEvent) {
        match &mut self.known {
            Some((known, left)) if known == event && *left > 0 => *left -= 1,
            _ => self.known = None,
        }
    }
}
