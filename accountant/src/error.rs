//! The one error type of this crate.

use crate::event::NeighboringRelation;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, AccountantError>;

/// Everything that can go wrong while accounting.
///
/// Messages name the parameter, its value and the constraint it broke, e.g.
/// `noise_multiplier (σ = -1) must be > 0 and finite`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccountantError {
    /// A numeric parameter is outside its domain.
    #[error("{name} ({symbol} = {value}) must be {constraint}")]
    InvalidParameter {
        /// Parameter name as used in this crate (`noise_multiplier`, `delta`, ...).
        name: &'static str,
        /// Symbol used in the docs (σ, q, δ, ...).
        symbol: &'static str,
        /// The offending value, formatted.
        value: String,
        /// The constraint it must satisfy.
        constraint: &'static str,
    },
    /// The accountant cannot analyse this event; its state is unchanged.
    #[error("the {accountant} accountant cannot compose {event} under {relation}: {reason}")]
    UnsupportedEvent {
        /// Which accountant refused.
        accountant: &'static str,
        /// A short description of the refused (sub-)event.
        event: String,
        /// The neighbouring relation of the accountant.
        relation: NeighboringRelation,
        /// Why, and what to use instead.
        reason: String,
    },
    /// A calibration target cannot be reached within the search range.
    #[error("target unreachable: {0}")]
    Unreachable(String),
    /// A step count overflowed `u64` while composing.
    #[error("step count overflow while composing {0}")]
    CountOverflow(String),
    /// The privacy loss distribution would need more grid points than allowed.
    #[error(
        "the privacy loss distribution needs {needed} grid points, more than the limit of {limit}; \
         use a larger value_discretization_interval or the RDP accountant"
    )]
    GridTooLarge {
        /// Grid points that would be needed.
        needed: u128,
        /// The configured limit.
        limit: usize,
    },
    /// A computation produced a non-finite or otherwise unusable number.
    #[error("numerical failure: {0}")]
    Numerical(String),
}

impl AccountantError {
    /// Shorthand for [`AccountantError::InvalidParameter`].
    pub fn invalid(
        name: &'static str,
        symbol: &'static str,
        value: impl ToString,
        constraint: &'static str,
    ) -> Self {
        Self::InvalidParameter {
            name,
            symbol,
            value: value.to_string(),
            constraint,
        }
    }
}

/// Checks `0 < delta < 1`.
pub(crate) fn check_delta(delta: f64) -> Result<()> {
    if delta > 0.0 && delta < 1.0 {
        Ok(())
    } else {
        Err(AccountantError::invalid("delta", "δ", delta, "in (0, 1)"))
    }
}

/// Checks `epsilon >= 0` and not NaN (∞ is allowed).
pub(crate) fn check_epsilon(epsilon: f64) -> Result<()> {
    if epsilon >= 0.0 {
        Ok(())
    } else {
        Err(AccountantError::invalid("epsilon", "ε", epsilon, ">= 0"))
    }
}

/// Turns a NaN into an error: no NaN ever leaves this crate.
pub(crate) fn not_nan(value: f64, what: &str) -> Result<f64> {
    if value.is_nan() {
        Err(AccountantError::Numerical(format!(
            "{what} evaluated to NaN"
        )))
    } else {
        Ok(value)
    }
}
