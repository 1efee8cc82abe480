//! Privacy accounting for differentially private training.
//!
//! Describe what a training run does as a [`DpEvent`] (for DP-SGD with Poisson sampling: a
//! subsampled Gaussian repeated once per step), compose it into an accountant, and ask what it
//! cost:
//!
//! ```
//! use dp_accountant::{DpEvent, PrivacyAccountant, RdpAccountant};
//! let mut accountant = RdpAccountant::new();
//! // 40 epochs of Fashion-MNIST at batch 2048 (q = 2048/60000, 1172 steps), σ = 1.93.
//! accountant.compose(&DpEvent::poisson_gaussian(2048.0 / 60000.0, 1.93).self_composed(1172))?;
//! let epsilon = accountant.epsilon(1e-5)?;
//! assert!(epsilon < 3.0);
//! # Ok::<(), dp_accountant::AccountantError>(())
//! ```
//!
//! Two accountants implement [`PrivacyAccountant`]: [`RdpAccountant`] (Rényi DP, fast) and
//! [`PldAccountant`] (privacy loss distributions, tighter). [`calibrate`] finds the noise
//! multiplier for a target ε, or the number of steps a budget allows.
//!
//! # Privacy
//! Every ε and δ this crate reports is an upper bound: computations that could round low are
//! bounded and rounded toward +∞, and NaN is never returned (it is an error). The guarantees
//! refer to the [`NeighboringRelation`] of the accountant; `noise_multiplier` is always the
//! noise standard deviation over the L2 sensitivity under that relation.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod accountant;
pub mod audit;
pub mod calibrate;
pub mod cli;
mod conservative;
mod error;
mod event;
mod ledger;
mod pld;
mod rdp;
mod special;

pub use accountant::{AccountantConfig, AccountantKind, PrivacyAccountant};
pub use error::{AccountantError, Result};
pub use event::{DpEvent, NeighboringRelation};
pub use ledger::{Ledger, Mechanism};
pub use pld::{PldAccountant, PldConfig};
pub use rdp::{default_orders, EpsilonAndOrder, RdpAccountant, RdpConfig, RdpConversion};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
