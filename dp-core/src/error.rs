//! The one error type of this crate.

use dp_accountant::AccountantError;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, DpError>;

/// A layer that mixes examples, found by [`crate::validate_model`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffendingLayer {
    /// Path of the layer in the model, e.g. `block1.norm`.
    pub path: String,
    /// Its type, e.g. `BatchNorm`.
    pub kind: String,
    /// Why it breaks per-example privacy.
    pub reason: String,
}

/// Everything that can go wrong in private training.
#[derive(Debug, thiserror::Error)]
pub enum DpError {
    /// A numeric parameter is outside its domain.
    #[error("{name} ({symbol} = {value}) must be {constraint}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// Symbol in the docs.
        symbol: &'static str,
        /// The offending value.
        value: String,
        /// The constraint it broke.
        constraint: &'static str,
    },
    /// The accountant refused an event or a query.
    #[error(transparent)]
    Accountant(#[from] AccountantError),
    /// Running this step would exceed the privacy budget; nothing was charged or touched.
    #[error(
        "step {step}: the step would spend ε = {would_spend} at δ = {delta}, above the budget \
         ε = {budget}; no data was touched and nothing was charged"
    )]
    BudgetExceeded {
        /// The step that was refused (0-based).
        step: u64,
        /// ε after the step.
        would_spend: f64,
        /// The budget.
        budget: f64,
        /// δ of the budget.
        delta: f64,
    },
    /// A per-example gradient was NaN or infinite; no update was applied, the budget stays
    /// charged.
    #[error(
        "step {step}: non-finite per-example gradient ({detail}); no update was applied and the \
         privacy cost of the step stays charged"
    )]
    NonFiniteGradient {
        /// The step (0-based).
        step: u64,
        /// Where it was found.
        detail: String,
    },
    /// The model contains layers that mix examples (e.g. BatchNorm).
    #[error("the model mixes examples, so per-example privacy cannot hold: {}", describe(.0))]
    CrossExampleLayers(Vec<OffendingLayer>),
    /// Trainable parameters outside DP-aware layers: the fast path would miss their gradients.
    #[error(
        "trainable parameters outside dp-core's DP-aware layers: {}; build the model from \
         dp_core::layers or use the batch-of-one engine (PerExampleEngine::BatchOfOne)",
        .0.join(", ")
    )]
    UncoveredParameters(Vec<String>),
    /// Tensor shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A checkpoint could not be written or read; nothing was overwritten.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The requested device is not usable.
    #[error("device unavailable: {0}")]
    DeviceUnavailable(String),
    /// A collective operation between data-parallel peers failed.
    #[error("collective: {0}")]
    Collective(String),
}

fn describe(layers: &[OffendingLayer]) -> String {
    layers
        .iter()
        .map(|l| format!("{} ({}): {}", l.path, l.kind, l.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DpError {
    /// Shorthand for [`DpError::InvalidParameter`].
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
