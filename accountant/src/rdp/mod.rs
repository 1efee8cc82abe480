//! The Rényi DP accountant.

mod conversion;
mod orders;
mod poisson;
mod without_replacement;

pub use conversion::RdpConversion;
pub use orders::default_orders;

use crate::accountant::{AccountantConfig, AccountantKind, PrivacyAccountant};
use crate::conservative::inflate;
use crate::error::{check_delta, check_epsilon, AccountantError, Result};
use crate::event::NeighboringRelation;
use crate::ledger::{check_supported, Ledger, Mechanism};
use serde::{Deserialize, Serialize};
use without_replacement::WithoutReplacementGaussian;

/// Configuration of an [`RdpAccountant`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RdpConfig {
    /// The RDP orders α > 1 at which the curve is tracked.
    pub orders: Vec<f64>,
    /// The RDP → (ε, δ) conversion.
    pub conversion: RdpConversion,
}

impl Default for RdpConfig {
    fn default() -> Self {
        Self {
            orders: default_orders(),
            conversion: RdpConversion::default(),
        }
    }
}

/// An ε with the RDP order that achieved it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpsilonAndOrder {
    /// ε, an upper bound.
    pub epsilon: f64,
    /// The order α at which the conversion gave the smallest ε.
    pub order: f64,
}

/// Privacy accounting by Rényi differential privacy (Mironov 2017).
///
/// The RDP curve of each distinct mechanism is computed once, when it is first composed;
/// later queries only multiply by counts and convert, so asking for ε at every training step
/// costs microseconds.
///
/// # Privacy
/// * Poisson-subsampled Gaussian (add-or-remove-one): exact RDP at integer and fractional
///   orders (Mironov, Talwar, Zhang 2019), each order an upper bound including the rounding
///   and truncation error of its series (a series that has not converged within 200,000
///   terms still yields a valid bound: the remainder of the alternating series is added).
/// * Gaussian without sampling: α/(2σ²), under either relation.
/// * Sampling without replacement (replace-one only): the bound of Wang, Balle,
///   Kasiviswanathan 2019, Thm. 27.
/// * Composition adds RDP curves (Mironov 2017, Prop. 1), heterogeneous mechanisms included.
/// * Conversion: [`RdpConversion::BalleEtAl2020`] by default, minimised over the orders,
///   recomputed with upward rounding.
/// * Not supported (an error, state unchanged): Poisson sampling under replace-one, and
///   sampling without replacement under add-or-remove-one.
///
/// ```
/// use dp_accountant::{DpEvent, RdpAccountant, PrivacyAccountant};
/// // De et al. 2022, CIFAR-10: q = 4096/50000, σ = 3, 2468 steps.
/// let mut accountant = RdpAccountant::new();
/// accountant.compose(&DpEvent::poisson_gaussian(4096.0 / 50000.0, 3.0).self_composed(2468))?;
/// let spent = accountant.epsilon_and_order(1e-5)?;
/// assert!(spent.epsilon > 7.0 && spent.epsilon < 7.2);
/// # Ok::<(), dp_accountant::AccountantError>(())
/// ```
#[derive(Clone, Debug)]
pub struct RdpAccountant {
    config: RdpConfig,
    relation: NeighboringRelation,
    ledger: Ledger,
    /// One-step RDP curve of each ledger entry, in ledger order.
    curves: Vec<Vec<f64>>,
}

impl Default for RdpAccountant {
    fn default() -> Self {
        Self::new()
    }
}

impl RdpAccountant {
    /// An empty accountant with dp_accounting's default orders, the Balle et al. 2020
    /// conversion and add-or-remove-one neighbours.
    pub fn new() -> Self {
        Self {
            config: RdpConfig::default(),
            relation: NeighboringRelation::default(),
            ledger: Ledger::new(),
            curves: Vec::new(),
        }
    }

    /// An empty accountant from a configuration; the orders must be finite and > 1.
    pub fn from_config(config: RdpConfig, relation: NeighboringRelation) -> Result<Self> {
        if config.orders.is_empty() {
            return Err(AccountantError::invalid("orders", "α", "[]", "non-empty"));
        }
        if let Some(bad) = config.orders.iter().find(|a| !(a.is_finite() && **a > 1.0)) {
            return Err(AccountantError::invalid(
                "orders",
                "α",
                bad,
                "finite and > 1",
            ));
        }
        Ok(Self {
            config,
            relation,
            ledger: Ledger::new(),
            curves: Vec::new(),
        })
    }

    /// The orders tracked.
    pub fn orders(&self) -> &[f64] {
        &self.config.orders
    }

    /// The total RDP curve so far (one value per order, each an upper bound).
    pub fn rdp(&self) -> Vec<f64> {
        let mut total = vec![0.0; self.config.orders.len()];
        for ((_, count), curve) in self.ledger.entries().iter().zip(&self.curves) {
            for (t, r) in total.iter_mut().zip(curve) {
                *t += *count as f64 * r;
            }
        }
        total
            .iter()
            .map(|&t| inflate(t, t, 2.0 * self.curves.len() as f64 + 2.0))
            .collect()
    }

    /// ε at `delta` with the order that achieved it.
    pub fn epsilon_and_order(&self, delta: f64) -> Result<EpsilonAndOrder> {
        check_delta(delta)?;
        if self.ledger.is_non_private() {
            return Ok(EpsilonAndOrder {
                epsilon: f64::INFINITY,
                order: f64::INFINITY,
            });
        }
        if self.ledger.is_empty() {
            return Ok(EpsilonAndOrder {
                epsilon: 0.0,
                order: self.config.orders[0],
            });
        }
        let (epsilon, order) = conversion::epsilon_from_rdp(
            &self.config.orders,
            &self.rdp(),
            delta,
            self.config.conversion,
        )?;
        Ok(EpsilonAndOrder {
            epsilon: crate::error::not_nan(epsilon, "epsilon")?,
            order,
        })
    }

    fn curve(&self, mechanism: &Mechanism) -> Vec<f64> {
        let orders = &self.config.orders;
        match *mechanism {
            Mechanism::Gaussian { noise_multiplier } => orders
                .iter()
                .map(|&a| poisson::rdp_poisson_gaussian(1.0, noise_multiplier, a))
                .collect(),
            Mechanism::PoissonGaussian {
                sampling_rate,
                noise_multiplier,
            } => orders
                .iter()
                .map(|&a| poisson::rdp_poisson_gaussian(sampling_rate, noise_multiplier, a))
                .collect(),
            Mechanism::WithoutReplacementGaussian {
                sample_size,
                dataset_size,
                noise_multiplier,
            } => {
                let max_order = orders.iter().copied().fold(1.0, f64::max);
                let gamma = sample_size as f64 / dataset_size as f64;
                let bound = WithoutReplacementGaussian::new(gamma, noise_multiplier, max_order);
                orders.iter().map(|&a| bound.rdp(a)).collect()
            }
        }
    }
}

fn supports(
    mechanism: &Mechanism,
    relation: NeighboringRelation,
) -> std::result::Result<(), String> {
    match (mechanism, relation) {
        (Mechanism::Gaussian { .. }, _) => Ok(()),
        (Mechanism::PoissonGaussian { .. }, NeighboringRelation::AddOrRemoveOne) => Ok(()),
        (Mechanism::PoissonGaussian { .. }, NeighboringRelation::ReplaceOne) => Err(
            "no RDP bound for Poisson sampling under replace-one is implemented; use the PLD \
             accountant, or add-or-remove-one neighbours"
                .into(),
        ),
        (Mechanism::WithoutReplacementGaussian { .. }, NeighboringRelation::ReplaceOne) => Ok(()),
        (Mechanism::WithoutReplacementGaussian { .. }, NeighboringRelation::AddOrRemoveOne) => Err(
            "sampling a fixed-size batch without replacement is analysed under replace-one \
                 neighbours (the dataset size is public); build the accountant with \
                 NeighboringRelation::ReplaceOne"
                .into(),
        ),
    }
}

impl PrivacyAccountant for RdpAccountant {
    fn kind(&self) -> AccountantKind {
        AccountantKind::Rdp
    }

    fn config(&self) -> AccountantConfig {
        AccountantConfig::Rdp(self.config.clone())
    }

    fn neighboring_relation(&self) -> NeighboringRelation {
        self.relation
    }

    fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    fn compose_ledger(&mut self, ledger: &Ledger) -> Result<()> {
        check_supported(ledger, "rdp", self.relation, supports)?;
        let mut merged = self.ledger.clone();
        merged.merge(ledger)?;
        let new_curves: Vec<Vec<f64>> = merged.entries()[self.curves.len()..]
            .iter()
            .map(|(m, _)| self.curve(m))
            .collect();
        self.ledger = merged;
        self.curves.extend(new_curves);
        Ok(())
    }

    fn epsilon(&self, delta: f64) -> Result<f64> {
        Ok(self.epsilon_and_order(delta)?.epsilon)
    }

    fn delta(&self, epsilon: f64) -> Result<f64> {
        check_epsilon(epsilon)?;
        if self.ledger.is_non_private() {
            return Ok(1.0);
        }
        if self.ledger.is_empty() {
            return Ok(0.0);
        }
        let (delta, _) = conversion::delta_from_rdp(
            &self.config.orders,
            &self.rdp(),
            epsilon,
            self.config.conversion,
        )?;
        crate::error::not_nan(delta, "delta")
    }

    fn box_clone(&self) -> Box<dyn PrivacyAccountant> {
        Box::new(self.clone())
    }
}
