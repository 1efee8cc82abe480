//! The privacy audit: canaries through the production pipeline, scores from what a run
//! released, and a one-run lower bound on ε ([`dp_accountant::audit`]) to set against the ε
//! the accountant claims.
//!
//! A canary is an extra training example whose per-example gradient is `M·e_j` on its own
//! coordinate j of an audit block (a [`crate::layers::Linear`] of `m` inputs and one output,
//! no bias) that real examples never touch: its input row is `M·e_j`, its loss the block's
//! output. Canaries are drawn by the run's sampler, clipped by the run's clipping (M ≥ C), and
//! noised and charged with everything else; nothing in the audit bypasses production code.
//! Each canary is put in the dataset with probability ½ by a generator of its own
//! ([`Canaries`]).
//!
//! Scores ([`Scores`]): with every step's noisy gradient of the block (white box), canary i's
//! observation at step t is o = noisy gradient · (expected batch size) / (σ_eff·c), where c
//! is a canary's clipped norm and σ_eff the noise std over c, so that o ~ N(1/σ_eff, 1) when
//! the canary was in the batch and N(0, 1) otherwise; the score is the log-likelihood ratio
//! under Poisson sampling, Σ_t ln(1 − q + q·exp(o/σ_eff − 1/(2σ_eff²))). From the final model
//! only, the score is how far the canary's coordinate moved down from its start.

mod audited;
mod canaries;
mod consistency;
mod mechanism;
mod scores;

pub use audited::Audited;
pub use canaries::{canary_block, canary_inputs, Canaries, CanaryRows, DEFAULT_CANARY_NORM};
pub use consistency::{ConsistencyCheck, Moments};
pub use mechanism::{AuditBounds, MechanismAudit, MechanismAuditReport};
pub use scores::Scores;

use crate::error::Result;
use dp_accountant::audit::{AuditMethod, CanaryScores, LowerBound, ThresholdChoice};

/// The lower bound from one score per canary (`scores[i]` for canary i).
pub fn lower_bound(
    canaries: &Canaries,
    scores: &[f64],
    method: AuditMethod,
    significance: f64,
    delta: f64,
) -> Result<LowerBound> {
    if scores.len() != canaries.count() {
        return Err(crate::error::DpError::Shape(format!(
            "{} scores for {} canaries",
            scores.len(),
            canaries.count()
        )));
    }
    let (mut held_in, mut held_out) = (Vec::new(), Vec::new());
    for (i, s) in scores.iter().enumerate() {
        if canaries.is_included(i) {
            held_in.push(*s);
        } else {
            held_out.push(*s);
        }
    }
    let scores = CanaryScores::new(held_in, held_out)?;
    Ok(scores.epsilon_lower_bound(method, significance, delta, ThresholdChoice::Bonferroni)?)
}
