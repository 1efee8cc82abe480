//! Privacy events: what a mechanism did, as a value an accountant can compose.
//!
//! The vocabulary follows Google's dp_accounting (`DpEvent`): a training step of DP-SGD with
//! Poisson sampling is `PoissonSampled { sampling_rate, event: Gaussian { noise_multiplier } }`,
//! a whole run is that event `SelfComposed` over the number of steps.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which datasets count as neighbours.
///
/// # Privacy
/// The guarantee an accountant reports holds for pairs of datasets related this way.
/// `noise_multiplier` is always the ratio of the noise standard deviation to the L2
/// sensitivity *under this relation*: with clipping norm C the sensitivity of a clipped sum is
/// C under add-or-remove-one and 2C under replace-one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeighboringRelation {
    /// Neighbours differ by adding or removing one record (the dataset size is private).
    #[default]
    AddOrRemoveOne,
    /// Neighbours differ by replacing one record with another (the dataset size is public).
    ReplaceOne,
}

impl fmt::Display for NeighboringRelation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AddOrRemoveOne => "add-or-remove-one",
            Self::ReplaceOne => "replace-one",
        })
    }
}

/// A privacy event: a description of a randomized computation on the data.
///
/// Events nest: a sampled event wraps the mechanism run on the sample, a composed event lists
/// events run one after the other.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpEvent {
    /// Touches no data: costs nothing.
    NoOp,
    /// Releases data without protection: ε = ∞.
    NonPrivate,
    /// The Gaussian mechanism: noise of standard deviation `noise_multiplier` × sensitivity.
    Gaussian {
        /// σ, the noise standard deviation over the L2 sensitivity. Must be finite and > 0.
        noise_multiplier: f64,
    },
    /// `event` run on a Poisson sample: each record independently with probability
    /// `sampling_rate`.
    PoissonSampled {
        /// q, the probability that a record is in the sample, in (0, 1].
        sampling_rate: f64,
        /// The mechanism run on the sample.
        event: Box<DpEvent>,
    },
    /// `event` run on a uniformly random subset of exactly `sample_size` of the
    /// `dataset_size` records, drawn afresh for each event (replace-one neighbours only).
    SampledWithoutReplacement {
        /// m, the number of records in the sample.
        sample_size: u64,
        /// N, the number of records in the dataset.
        dataset_size: u64,
        /// The mechanism run on the sample.
        event: Box<DpEvent>,
    },
    /// `event` run `count` times.
    SelfComposed {
        /// The repeated event.
        event: Box<DpEvent>,
        /// How many times; 0 means nothing happened.
        count: u64,
    },
    /// Events run one after the other.
    Composed(Vec<DpEvent>),
}

impl DpEvent {
    /// `Gaussian { noise_multiplier }`.
    pub fn gaussian(noise_multiplier: f64) -> Self {
        Self::Gaussian { noise_multiplier }
    }

    /// One DP-SGD step with Poisson sampling: `PoissonSampled { q, Gaussian { σ } }`.
    ///
    /// ```
    /// use dp_accountant::DpEvent;
    /// let step = DpEvent::poisson_gaussian(0.01, 1.1);
    /// let run = step.self_composed(10_000);
    /// assert!(matches!(run, DpEvent::SelfComposed { count: 10_000, .. }));
    /// ```
    pub fn poisson_gaussian(sampling_rate: f64, noise_multiplier: f64) -> Self {
        Self::PoissonSampled {
            sampling_rate,
            event: Box::new(Self::gaussian(noise_multiplier)),
        }
    }

    /// One DP-SGD step on a uniformly random batch of exactly `sample_size` records.
    pub fn without_replacement_gaussian(
        sample_size: u64,
        dataset_size: u64,
        noise_multiplier: f64,
    ) -> Self {
        Self::SampledWithoutReplacement {
            sample_size,
            dataset_size,
            event: Box::new(Self::gaussian(noise_multiplier)),
        }
    }

    /// This event repeated `count` times.
    pub fn self_composed(self, count: u64) -> Self {
        Self::SelfComposed {
            event: Box::new(self),
            count,
        }
    }

    /// A short human-readable description, used in error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::NoOp => "NoOp".into(),
            Self::NonPrivate => "NonPrivate".into(),
            Self::Gaussian { noise_multiplier } => format!("Gaussian(σ = {noise_multiplier})"),
            Self::PoissonSampled {
                sampling_rate,
                event,
            } => {
                format!("PoissonSampled(q = {sampling_rate}, {})", event.describe())
            }
            Self::SampledWithoutReplacement {
                sample_size,
                dataset_size,
                event,
            } => format!(
                "SampledWithoutReplacement(m = {sample_size}, N = {dataset_size}, {})",
                event.describe()
            ),
            Self::SelfComposed { event, count } => {
                format!("SelfComposed({}, count = {count})", event.describe())
            }
            Self::Composed(events) => format!("Composed([{} events])", events.len()),
        }
    }
}
