//! The privacy loss distribution (PLD) accountant.

mod analytic;
pub(crate) use analytic::gaussian_sigma;
mod convolve;
mod discretize;
mod pmf;

use crate::accountant::{AccountantConfig, AccountantKind, PrivacyAccountant};
use crate::error::{check_delta, check_epsilon, AccountantError, Result};
use crate::event::NeighboringRelation;
use crate::ledger::{check_supported, Ledger, Mechanism};
use discretize::{discretize, LossPair};
use pmf::DiscretePld;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// Configuration of a [`PldAccountant`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PldConfig {
    /// Grid spacing Δ of the privacy losses (dp_accounting's `value_discretization_interval`).
    /// Smaller is tighter and slower.
    pub value_discretization_interval: f64,
    /// Largest number of grid points a distribution may need before composing is refused.
    pub max_grid_points: usize,
    /// Probability mass that truncating a composed distribution may move to +∞.
    pub tail_mass_truncation: f64,
}

impl Default for PldConfig {
    fn default() -> Self {
        Self {
            value_discretization_interval: 1e-4,
            max_grid_points: 1 << 25,
            tail_mass_truncation: 1e-15,
        }
    }
}

/// One mechanism's single-step distributions.
#[derive(Clone, Debug)]
enum SingleStep {
    /// Unsampled Gaussian: handled in closed form or discretized once merged.
    Gaussian(f64),
    /// Same distribution for removal and addition.
    Symmetric(Arc<DiscretePld>),
    /// Removal and addition differ (Poisson sampling under add-or-remove-one).
    Asymmetric {
        remove: Arc<DiscretePld>,
        add: Arc<DiscretePld>,
    },
}

/// (removal PLD, addition PLD, count) of one ledger entry.
type Part = (Arc<DiscretePld>, Arc<DiscretePld>, u64);

/// The composed distributions of the whole ledger.
#[derive(Debug)]
enum Composed {
    Gaussian(f64),
    Discrete {
        remove: DiscretePld,
        add: DiscretePld,
    },
}

/// Privacy accounting by privacy loss distributions (Meiser & Mohammadi 2018; Koskela et al.
/// 2020), as in dp_accounting's `PLDAccountant`: pessimistic connect-the-dots discretization
/// (Doroshenko et al. 2022), composition by FFT.
///
/// Tighter than RDP (here 1.07–5× smaller ε on the reference grid), at a cost of tens of
/// milliseconds per query at the default Δ = 1e-4.
///
/// # Privacy
/// * Poisson-subsampled Gaussian under add-or-remove-one: removal and addition have
///   different distributions; both are composed and the larger δ (or ε) is reported.
/// * Poisson-subsampled Gaussian under replace-one: the mixture pair with contributions ±½
///   (in units of the replace-one sensitivity 2C) — dp_accounting's `REPLACE_ONE` with twice
///   our noise multiplier.
/// * Unsampled Gaussians: merged exactly (σ_eff = (Σ σᵢ⁻²)^{−1/2}); alone, they use the
///   closed form of Balle & Wang 2018.
/// * Pessimism: the discretization dominates the true PLD; truncated tails go to +∞;
///   negative FFT outputs are clamped to 0; a bound on the FFT rounding per grid point and a
///   1e-9 relative margin are added to every δ; final formulas round up.
/// * Not supported (an error, state unchanged): sampling without replacement (use
///   [`crate::RdpAccountant`] with replace-one).
///
/// ```
/// use dp_accountant::{DpEvent, PldAccountant, PrivacyAccountant};
/// let mut accountant = PldAccountant::new();
/// accountant.compose(&DpEvent::poisson_gaussian(0.01, 1.0).self_composed(1000))?;
/// let epsilon = accountant.epsilon(1e-5)?;
/// assert!((epsilon - 1.8282).abs() < 1e-3); // dp_accounting 0.6 PLDAccountant: 1.82824
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
#[derive(Debug)]
pub struct PldAccountant {
    config: PldConfig,
    relation: NeighboringRelation,
    ledger: Ledger,
    steps: Vec<SingleStep>,
    composed: Mutex<Option<Arc<Composed>>>,
}

impl Clone for PldAccountant {
    fn clone(&self) -> Self {
        let composed = self.composed.lock().map(|c| c.clone()).unwrap_or(None);
        Self {
            config: self.config.clone(),
            relation: self.relation,
            ledger: self.ledger.clone(),
            steps: self.steps.clone(),
            composed: Mutex::new(composed),
        }
    }
}

impl Default for PldAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl PldAccountant {
    /// An empty accountant with Δ = 1e-4 and add-or-remove-one neighbours.
    pub fn new() -> Self {
        Self {
            config: PldConfig::default(),
            relation: NeighboringRelation::default(),
            ledger: Ledger::new(),
            steps: Vec::new(),
            composed: Mutex::new(None),
        }
    }

    /// An empty accountant from a configuration.
    pub fn from_config(config: PldConfig, relation: NeighboringRelation) -> Result<Self> {
        let interval = config.value_discretization_interval;
        if !(interval.is_finite() && interval > 0.0) {
            return Err(AccountantError::invalid(
                "value_discretization_interval",
                "Δ",
                interval,
                "> 0 and finite",
            ));
        }
        let tail = config.tail_mass_truncation;
        if !(0.0..1e-3).contains(&tail) {
            return Err(AccountantError::invalid(
                "tail_mass_truncation",
                "τ",
                tail,
                "in [0, 1e-3)",
            ));
        }
        Ok(Self {
            config,
            relation,
            ..Self::new()
        })
    }

    fn single_step(&self, mechanism: &Mechanism) -> Result<SingleStep> {
        let (interval, limit) = (
            self.config.value_discretization_interval,
            self.config.max_grid_points,
        );
        Ok(match (*mechanism, self.relation) {
            (Mechanism::Gaussian { noise_multiplier }, _) => SingleStep::Gaussian(noise_multiplier),
            (
                Mechanism::PoissonGaussian {
                    sampling_rate: q,
                    noise_multiplier: sigma,
                },
                rel,
            ) => match rel {
                NeighboringRelation::AddOrRemoveOne => {
                    let (remove, add) = rayon::join(
                        || discretize(LossPair::PoissonRemove { q, sigma }, interval, limit),
                        || discretize(LossPair::PoissonAdd { q, sigma }, interval, limit),
                    );
                    SingleStep::Asymmetric {
                        remove: Arc::new(remove?),
                        add: Arc::new(add?),
                    }
                }
                NeighboringRelation::ReplaceOne => {
                    let pair = LossPair::PoissonReplace { q, sigma, h: 0.5 };
                    SingleStep::Symmetric(Arc::new(discretize(pair, interval, limit)?))
                }
            },
            (Mechanism::WithoutReplacementGaussian { .. }, _) => {
                return Err(AccountantError::Numerical(
                    "unsupported mechanism reached PLD".into(),
                ))
            }
        })
    }

    fn composed(&self) -> Result<Arc<Composed>> {
        if let Ok(guard) = self.composed.lock() {
            if let Some(done) = guard.as_ref() {
                return Ok(done.clone());
            }
        }
        let done = Arc::new(self.compose_all()?);
        if let Ok(mut guard) = self.composed.lock() {
            *guard = Some(done.clone());
        }
        Ok(done)
    }

    fn compose_all(&self) -> Result<Composed> {
        let (interval, limit, tail) = (
            self.config.value_discretization_interval,
            self.config.max_grid_points,
            self.config.tail_mass_truncation,
        );
        let mut inverse_variance = 0.0;
        let mut parts: Vec<Part> = Vec::new();
        for ((_, count), step) in self.ledger.entries().iter().zip(&self.steps) {
            match step {
                SingleStep::Gaussian(sigma) => inverse_variance += *count as f64 / (sigma * sigma),
                SingleStep::Symmetric(p) => parts.push((p.clone(), p.clone(), *count)),
                SingleStep::Asymmetric { remove, add } => {
                    parts.push((remove.clone(), add.clone(), *count))
                }
            }
        }
        let gaussian_sigma = (inverse_variance > 0.0).then(|| inverse_variance.powf(-0.5));
        if parts.is_empty() {
            return Ok(Composed::Gaussian(gaussian_sigma.unwrap_or(f64::INFINITY)));
        }
        let gaussian = match gaussian_sigma {
            Some(sigma) => Some(discretize(LossPair::Gaussian { sigma }, interval, limit)?),
            None => None,
        };
        let side = |pick: fn(&Part) -> &DiscretePld| {
            let mut total = gaussian
                .clone()
                .unwrap_or_else(|| DiscretePld::identity(interval));
            for part in &parts {
                let powered = convolve::self_compose(pick(part), part.2, tail, limit)?;
                total = convolve::compose(&total, &powered, tail, limit)?;
            }
            Ok::<_, AccountantError>(total)
        };
        let (remove, add) = rayon::join(|| side(|p| &p.0), || side(|p| &p.1));
        Ok(Composed::Discrete {
            remove: remove?,
            add: add?,
        })
    }
}

fn supports(mechanism: &Mechanism, _: NeighboringRelation) -> std::result::Result<(), String> {
    match mechanism {
        Mechanism::WithoutReplacementGaussian { .. } => Err(
            "no PLD for sampling without replacement is implemented; use the RDP accountant \
             with replace-one neighbours"
                .into(),
        ),
        _ => Ok(()),
    }
}

impl PrivacyAccountant for PldAccountant {
    fn kind(&self) -> AccountantKind {
        AccountantKind::Pld
    }

    fn config(&self) -> AccountantConfig {
        AccountantConfig::Pld(self.config.clone())
    }

    fn neighboring_relation(&self) -> NeighboringRelation {
        self.relation
    }

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn compose_ledger(&mut self, ledger: &Ledger) -> Result<()> {
        check_supported(ledger, "pld", self.relation, supports)?;
        let mut merged = self.ledger.clone();
        merged.merge(ledger)?;
        let new_steps = merged.entries()[self.steps.len()..]
            .iter()
            .map(|(m, _)| self.single_step(m))
            .collect::<Result<Vec<_>>>()?;
        self.ledger = merged;
        self.steps.extend(new_steps);
        if let Ok(mut guard) = self.composed.lock() {
            *guard = None;
        }
        Ok(())
    }

    fn epsilon(&self, delta: f64) -> Result<f64> {
        check_delta(delta)?;
        if self.ledger.is_non_private() {
            return Ok(f64::INFINITY);
        }
        if self.ledger.is_empty() {
            return Ok(0.0);
        }
        let epsilon = match self.composed()?.as_ref() {
            Composed::Gaussian(sigma) => analytic::gaussian_epsilon(*sigma, delta),
            Composed::Discrete { remove, add } => remove.epsilon(delta).max(add.epsilon(delta)),
        };
        crate::error::not_nan(epsilon, "epsilon")
    }

    fn delta(&self, epsilon: f64) -> Result<f64> {
        check_epsilon(epsilon)?;
        if self.ledger.is_non_private() {
            return Ok(1.0);
        }
        if self.ledger.is_empty() {
            return Ok(0.0);
        }
        let delta = match self.composed()?.as_ref() {
            Composed::Gaussian(sigma) => analytic::gaussian_delta(*sigma, epsilon),
            Composed::Discrete { remove, add } => remove.delta(epsilon).max(add.delta(epsilon)),
        };
        crate::error::not_nan(delta, "delta")
    }

    fn box_clone(&self) -> Box<dyn PrivacyAccountant> {
        Box::new(self.clone())
    }
}
