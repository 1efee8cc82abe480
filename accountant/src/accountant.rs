//! The interface every accountant implements, and the choice between them.

use crate::error::{AccountantError, Result};
use crate::event::{DpEvent, NeighboringRelation};
use crate::ledger::Ledger;
use crate::pld::{PldAccountant, PldConfig};
use crate::rdp::{RdpAccountant, RdpConfig};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A privacy accountant: composes [`DpEvent`]s and answers what (ε, δ) they cost.
///
/// # Privacy
/// Every ε or δ returned is an upper bound on the true privacy loss of the composed events
/// under [`PrivacyAccountant::neighboring_relation`], up to the accuracy statements of each
/// accountant. An event that cannot be analysed is refused with an error and leaves the
/// accountant unchanged.
pub trait PrivacyAccountant: fmt::Debug + Send + Sync {
    /// Which accountant this is.
    fn kind(&self) -> AccountantKind;

    /// The configuration that rebuilds an empty accountant of the same kind.
    fn config(&self) -> AccountantConfig;

    /// The neighbouring relation the guarantees refer to.
    fn neighboring_relation(&self) -> NeighboringRelation;

    /// Everything composed so far.
    fn ledger(&self) -> &Ledger;

    /// Composes every mechanism of `ledger`, or nothing if one is unsupported.
    fn compose_ledger(&mut self, ledger: &Ledger) -> Result<()>;

    /// Whether `event` could be composed, without composing it.
    fn check(&self, event: &DpEvent) -> Result<()> {
        self.box_clone().compose(event)
    }

    /// Composes `event`; on error the accountant is unchanged.
    fn compose(&mut self, event: &DpEvent) -> Result<()> {
        self.compose_ledger(&Ledger::from_event(event)?)
    }

    /// The smallest ε this accountant can certify at `delta` ∈ (0, 1); ∞ if none.
    fn epsilon(&self, delta: f64) -> Result<f64>;

    /// The smallest δ this accountant can certify at `epsilon` ≥ 0.
    fn delta(&self, epsilon: f64) -> Result<f64>;

    /// A boxed copy (accountants are cheap to clone: caches are per mechanism).
    fn box_clone(&self) -> Box<dyn PrivacyAccountant>;
}

impl Clone for Box<dyn PrivacyAccountant> {
    fn clone(&self) -> Self {
        self.box_clone()
    }
}

/// The accountants of this crate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountantKind {
    /// Rényi DP ([`RdpAccountant`]): fast, slightly loose.
    #[default]
    Rdp,
    /// Privacy loss distributions ([`PldAccountant`]): tight, slower.
    Pld,
}

impl AccountantKind {
    /// The lowercase name used by the CLI and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rdp => "rdp",
            Self::Pld => "pld",
        }
    }
}

impl fmt::Display for AccountantKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AccountantKind {
    type Err = AccountantError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rdp" => Ok(Self::Rdp),
            "pld" => Ok(Self::Pld),
            _ => Err(AccountantError::invalid(
                "accountant",
                "name",
                s,
                "one of rdp, pld",
            )),
        }
    }
}

/// Everything needed to rebuild an accountant (checkpoints store this with the ledger).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountantConfig {
    /// A Rényi DP accountant.
    Rdp(RdpConfig),
    /// A privacy loss distribution accountant.
    Pld(PldConfig),
}

impl AccountantConfig {
    /// The default configuration of `kind`.
    pub fn default_for(kind: AccountantKind) -> Self {
        match kind {
            AccountantKind::Rdp => Self::Rdp(RdpConfig::default()),
            AccountantKind::Pld => Self::Pld(PldConfig::default()),
        }
    }

    /// An empty accountant with this configuration.
    ///
    /// ```
    /// use dp_accountant::{AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
    /// let config = AccountantConfig::default_for(AccountantKind::Rdp);
    /// let mut accountant = config.build(NeighboringRelation::AddOrRemoveOne)?;
    /// accountant.compose(&DpEvent::poisson_gaussian(0.01, 1.0).self_composed(1000))?;
    /// assert!(accountant.epsilon(1e-5)? > 0.0);
    /// # Ok::<(), dp_accountant::AccountantError>(())
    /// ```
    pub fn build(&self, relation: NeighboringRelation) -> Result<Box<dyn PrivacyAccountant>> {
        Ok(match self {
            Self::Rdp(config) => Box::new(RdpAccountant::from_config(config.clone(), relation)?),
            Self::Pld(config) => Box::new(PldAccountant::from_config(config.clone(), relation)?),
        })
    }

    /// An accountant with this configuration that has already composed `ledger`.
    pub fn restore(
        &self,
        relation: NeighboringRelation,
        ledger: &Ledger,
    ) -> Result<Box<dyn PrivacyAccountant>> {
        let mut accountant = self.build(relation)?;
        accountant.compose_ledger(ledger)?;
        Ok(accountant)
    }
}
