//! The ledger: the canonical record of everything an accountant has composed.
//!
//! Every event is flattened into a multiset of base mechanisms with counts. Identical
//! mechanisms are merged, so `count = 6`, `SelfComposed(e, 6)` and `Composed([e; 6])` give the
//! same ledger and therefore bit-for-bit the same ε. The ledger is what a checkpoint stores.

use crate::error::{AccountantError, Result};
use crate::event::{DpEvent, NeighboringRelation};
use serde::{Deserialize, Serialize};

/// A base mechanism that an accountant knows how to analyse.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// The Gaussian mechanism on the whole dataset.
    Gaussian {
        /// σ.
        noise_multiplier: f64,
    },
    /// The Gaussian mechanism on a Poisson sample with rate q < 1.
    PoissonGaussian {
        /// q.
        sampling_rate: f64,
        /// σ.
        noise_multiplier: f64,
    },
    /// The Gaussian mechanism on a uniformly random subset of fixed size m < N.
    WithoutReplacementGaussian {
        /// m.
        sample_size: u64,
        /// N.
        dataset_size: u64,
        /// σ.
        noise_multiplier: f64,
    },
}

impl Mechanism {
    /// The noise multiplier σ of the mechanism.
    pub fn noise_multiplier(&self) -> f64 {
        match *self {
            Self::Gaussian { noise_multiplier }
            | Self::PoissonGaussian {
                noise_multiplier, ..
            }
            | Self::WithoutReplacementGaussian {
                noise_multiplier, ..
            } => noise_multiplier,
        }
    }
}

/// The multiset of mechanisms composed so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    entries: Vec<(Mechanism, u64)>,
    non_private: bool,
}

impl Ledger {
    /// An empty ledger: nothing has been spent.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flattens `event` into a ledger of its own, checking every parameter.
    pub fn from_event(event: &DpEvent) -> Result<Self> {
        let mut ledger = Self::new();
        ledger.add_event(event, 1)?;
        Ok(ledger)
    }

    /// The (mechanism, count) pairs, in order of first appearance.
    pub fn entries(&self) -> &[(Mechanism, u64)] {
        &self.entries
    }

    /// Whether a `NonPrivate` event was composed (then ε = ∞).
    pub fn is_non_private(&self) -> bool {
        self.non_private
    }

    /// Whether nothing with a privacy cost has been composed.
    pub fn is_empty(&self) -> bool {
        !self.non_private && self.entries.iter().all(|(_, c)| *c == 0)
    }

    /// Total number of mechanism invocations recorded.
    pub fn total_count(&self) -> u64 {
        self.entries
            .iter()
            .map(|(_, c)| *c)
            .fold(0u64, u64::saturating_add)
    }

    /// Merges another ledger into this one; on overflow nothing changes.
    pub fn merge(&mut self, other: &Ledger) -> Result<()> {
        let mut merged = self.clone();
        for (mechanism, count) in &other.entries {
            merged.push(*mechanism, *count)?;
        }
        merged.non_private |= other.non_private;
        *self = merged;
        Ok(())
    }

    fn push(&mut self, mechanism: Mechanism, count: u64) -> Result<()> {
        if count == 0 {
            return Ok(());
        }
        if let Some(entry) = self.entries.iter_mut().find(|(m, _)| *m == mechanism) {
            entry.1 = entry
                .1
                .checked_add(count)
                .ok_or_else(|| AccountantError::CountOverflow(format!("{mechanism:?}")))?;
        } else {
            self.entries.push((mechanism, count));
        }
        Ok(())
    }

    fn add_event(&mut self, event: &DpEvent, count: u64) -> Result<()> {
        match event {
            DpEvent::NoOp => Ok(()),
            DpEvent::NonPrivate => {
                if count > 0 {
                    self.non_private = true;
                }
                Ok(())
            }
            DpEvent::Gaussian { noise_multiplier } => {
                let sigma = check_sigma(*noise_multiplier)?;
                self.push(
                    Mechanism::Gaussian {
                        noise_multiplier: sigma,
                    },
                    count,
                )
            }
            DpEvent::PoissonSampled {
                sampling_rate,
                event: inner,
            } => {
                let q = check_sampling_rate(*sampling_rate)?;
                let sigma = effective_noise_multiplier(inner, event)?;
                let mechanism = if q == 1.0 {
                    Mechanism::Gaussian {
                        noise_multiplier: sigma,
                    }
                } else {
                    Mechanism::PoissonGaussian {
                        sampling_rate: q,
                        noise_multiplier: sigma,
                    }
                };
                self.push(mechanism, count)
            }
            DpEvent::SampledWithoutReplacement {
                sample_size,
                dataset_size,
                event: inner,
            } => {
                check_sample_size(*sample_size, *dataset_size)?;
                let sigma = effective_noise_multiplier(inner, event)?;
                let mechanism = if sample_size == dataset_size {
                    Mechanism::Gaussian {
                        noise_multiplier: sigma,
                    }
                } else {
                    Mechanism::WithoutReplacementGaussian {
                        sample_size: *sample_size,
                        dataset_size: *dataset_size,
                        noise_multiplier: sigma,
                    }
                };
                self.push(mechanism, count)
            }
            DpEvent::SelfComposed {
                event: inner,
                count: inner_count,
            } => {
                let total = count
                    .checked_mul(*inner_count)
                    .ok_or_else(|| AccountantError::CountOverflow(event.describe()))?;
                self.add_event(inner, total)
            }
            DpEvent::Composed(events) => events.iter().try_for_each(|e| self.add_event(e, count)),
        }
    }
}

/// Checks that an accountant with `relation` supports every mechanism of `ledger`.
pub(crate) fn check_supported(
    ledger: &Ledger,
    accountant: &'static str,
    relation: NeighboringRelation,
    supports: impl Fn(&Mechanism, NeighboringRelation) -> std::result::Result<(), String>,
) -> Result<()> {
    for (mechanism, _) in ledger.entries() {
        if let Err(reason) = supports(mechanism, relation) {
            return Err(AccountantError::UnsupportedEvent {
                accountant,
                event: format!("{mechanism:?}"),
                relation,
                reason,
            });
        }
    }
    Ok(())
}

fn check_sigma(sigma: f64) -> Result<f64> {
    if sigma.is_finite() && sigma > 0.0 {
        Ok(sigma)
    } else {
        Err(AccountantError::invalid(
            "noise_multiplier",
            "σ",
            sigma,
            "> 0 and finite",
        ))
    }
}

fn check_sampling_rate(q: f64) -> Result<f64> {
    if q > 0.0 && q <= 1.0 {
        Ok(q)
    } else {
        Err(AccountantError::invalid(
            "sampling_rate",
            "q",
            q,
            "in (0, 1]",
        ))
    }
}

fn check_sample_size(sample_size: u64, dataset_size: u64) -> Result<()> {
    if dataset_size == 0 {
        return Err(AccountantError::invalid(
            "dataset_size",
            "N",
            dataset_size,
            ">= 1",
        ));
    }
    if sample_size == 0 || sample_size > dataset_size {
        return Err(AccountantError::invalid(
            "sample_size",
            "m",
            sample_size,
            "in [1, dataset_size]",
        ));
    }
    Ok(())
}

/// The σ of the single Gaussian equivalent to a nest of Gaussians run on one sample
/// (`SelfComposed` of k Gaussians of σ is one Gaussian of σ/√k; `Composed` adds σ⁻²).
///
/// Computed as σ_min/√(Σ kᵢ(σ_min/σᵢ)²), so no σ⁻² overflows or underflows: a single Gaussian
/// keeps its σ exactly, for every finite σ > 0 (σ⁻² of 1e-300 or 1e300 is not a float).
fn effective_noise_multiplier(inner: &DpEvent, outer: &DpEvent) -> Result<f64> {
    let unsupported = || AccountantError::UnsupportedEvent {
        accountant: "any",
        event: outer.describe(),
        relation: NeighboringRelation::AddOrRemoveOne,
        reason: "the event run on a sample must be Gaussian, or a composition of Gaussians".into(),
    };
    /// Pushes (σ, repetitions) of every Gaussian in `e`; `None` if `e` holds anything else.
    fn gaussians(e: &DpEvent, count: f64, out: &mut Vec<(f64, f64)>) -> Option<Result<()>> {
        match e {
            DpEvent::Gaussian { noise_multiplier } => {
                Some(check_sigma(*noise_multiplier).map(|s| out.push((s, count))))
            }
            DpEvent::SelfComposed { event, count: k } => gaussians(event, count * *k as f64, out),
            DpEvent::Composed(events) if !events.is_empty() => {
                for e in events {
                    if let Err(err) = gaussians(e, count, out)? {
                        return Some(Err(err));
                    }
                }
                Some(Ok(()))
            }
            _ => None,
        }
    }
    let mut found = Vec::new();
    gaussians(inner, 1.0, &mut found).ok_or_else(unsupported)??;
    let smallest = found
        .iter()
        .filter(|(_, count)| *count > 0.0)
        .map(|(sigma, _)| *sigma)
        .fold(f64::INFINITY, f64::min);
    let total: f64 = found
        .iter()
        .map(|(sigma, count)| count * (smallest / sigma).powi(2))
        .sum();
    if smallest.is_finite() && total > 0.0 && total.is_finite() {
        Ok(smallest / total.sqrt())
    } else {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composition_forms_give_identical_ledgers() {
        let step = DpEvent::poisson_gaussian(0.01, 1.1);
        let a = Ledger::from_event(&step.clone().self_composed(6)).unwrap();
        let b = Ledger::from_event(&DpEvent::Composed(vec![step.clone(); 6])).unwrap();
        let mut c = Ledger::new();
        for _ in 0..6 {
            c.merge(&Ledger::from_event(&step).unwrap()).unwrap();
        }
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.total_count(), 6);
    }

    #[test]
    fn bad_parameters_are_refused_with_their_name() {
        let err = Ledger::from_event(&DpEvent::poisson_gaussian(1.5, 1.0)).unwrap_err();
        assert!(err.to_string().contains("sampling_rate (q = 1.5)"), "{err}");
        let err = Ledger::from_event(&DpEvent::gaussian(-1.0)).unwrap_err();
        assert!(
            err.to_string().contains("noise_multiplier (σ = -1)"),
            "{err}"
        );
        let err = Ledger::from_event(&DpEvent::gaussian(f64::NAN)).unwrap_err();
        assert!(err.to_string().contains("noise_multiplier"), "{err}");
    }

    #[test]
    fn sampling_everything_is_the_plain_gaussian() {
        let a = Ledger::from_event(&DpEvent::poisson_gaussian(1.0, 2.0)).unwrap();
        let b = Ledger::from_event(&DpEvent::without_replacement_gaussian(5, 5, 2.0)).unwrap();
        let expected = vec![(
            Mechanism::Gaussian {
                noise_multiplier: 2.0,
            },
            1,
        )];
        assert_eq!(a.entries(), expected.as_slice());
        assert_eq!(b.entries(), expected.as_slice());
    }

    #[test]
    fn nested_gaussians_on_one_sample_merge_into_one() {
        let inner = DpEvent::Composed(vec![DpEvent::gaussian(2.0), DpEvent::gaussian(2.0)]);
        let event = DpEvent::PoissonSampled {
            sampling_rate: 0.1,
            event: Box::new(inner),
        };
        let ledger = Ledger::from_event(&event).unwrap();
        let sigma = ledger.entries()[0].0.noise_multiplier();
        assert!((sigma - 2.0 / 2f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn extreme_noise_multipliers_on_a_sample_keep_their_value() {
        for sigma in [1e-300, 1e300, f64::MIN_POSITIVE, f64::MAX] {
            let ledger = Ledger::from_event(&DpEvent::poisson_gaussian(0.01, sigma)).unwrap();
            assert_eq!(ledger.entries()[0].0.noise_multiplier(), sigma);
        }
        let inner = DpEvent::Composed(vec![DpEvent::gaussian(1e300), DpEvent::gaussian(1e300)]);
        let event = DpEvent::PoissonSampled {
            sampling_rate: 0.1,
            event: Box::new(inner),
        };
        let sigma = Ledger::from_event(&event).unwrap().entries()[0]
            .0
            .noise_multiplier();
        assert!(
            (sigma / (1e300 / 2f64.sqrt()) - 1.0).abs() < 1e-15,
            "{sigma}"
        );
    }

    #[test]
    fn count_overflow_is_an_error_and_changes_nothing() {
        let mut ledger =
            Ledger::from_event(&DpEvent::gaussian(1.0).self_composed(u64::MAX)).unwrap();
        let before = ledger.clone();
        let more = Ledger::from_event(&DpEvent::gaussian(1.0)).unwrap();
        assert!(matches!(
            ledger.merge(&more),
            Err(AccountantError::CountOverflow(_))
        ));
        assert_eq!(ledger, before);
    }
}
