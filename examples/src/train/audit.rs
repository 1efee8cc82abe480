//! `dp-train --audit M`: M canaries trained alongside the real examples, and the one-run
//! lower bound on ε they give at the end ([`dp_core::audit`]).
//!
//! Each canary is in the dataset with probability ½ (its own generator); the ones that are in
//! are extra examples after the real ones (indices N…N + m_in − 1), drawn by the run's Poisson
//! sampler at the run's q, clipped, noised and charged with everything else. A canary's image
//! is zero and its loss is the audit block's output (see [`super::classifier`]), so its
//! gradient is `M·e_j` on its own coordinate of the block and zero on the network; real
//! examples never touch the block. Their privacy is unchanged: each is still sampled with
//! probability q and the accountant charges the same event. The update is divided by the
//! expected batch size q·(N + m_in), so real gradients are scaled by N/(N + m_in).
//!
//! The score of a canary is the white-box log-likelihood ratio of every step's released
//! gradient on its coordinate ([`Scores`]); its state (membership and scores so far) is kept in
//! the checkpoint, so an audited run resumes audited.

use crate::error::{Result, TrainError};
use crate::report::AuditSummary;
use burn::tensor::backend::Backend;
use dp_accountant::audit::AuditMethod;
use dp_core::audit::{lower_bound, Canaries, CanaryRows, Moments, Scores, DEFAULT_CANARY_NORM};
use dp_core::DpError;
use serde::{Deserialize, Serialize};

/// What `--audit` asked for (saved in run.json).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    /// m: canaries, each in the dataset with probability ½.
    pub canaries: usize,
    /// Significance of the bound (one minus its confidence).
    pub significance: f64,
    /// How scores become a bound.
    pub method: AuditMethod,
}

impl AuditConfig {
    /// The fewest canaries `--audit` takes (with fewer, all of them are in, or all out, too
    /// often: probability 2^(1 − m)).
    pub const MIN_CANARIES: usize = 20;
    /// `--audit` without a count.
    pub const DEFAULT_CANARIES: usize = 1000;
    /// `--audit-significance` unless given.
    pub const DEFAULT_SIGNIFICANCE: f64 = 0.05;
}

/// The canaries of an audited run and their scores so far.
#[derive(Clone, Debug)]
pub struct CanaryAudit {
    config: AuditConfig,
    canaries: Canaries,
    /// `included[k]` is the canary at dataset index `real_size + k`.
    included: Vec<usize>,
    real_size: usize,
    views: usize,
    magnitude: f64,
    sampling_rate: f64,
    noise_ratio: f64,
    scores: Scores,
    moments: Moments,
}

/// The run an audit belongs to.
#[derive(Clone, Copy, Debug)]
pub struct RunShape {
    /// N: real training examples.
    pub real_size: usize,
    /// q.
    pub sampling_rate: f64,
    /// The noise std over the clip norm (σ under add-or-remove-one).
    pub noise_ratio: f64,
    /// C.
    pub clip_norm: f64,
    /// K: views per example.
    pub views: usize,
}

/// One micro-batch's indices, split: real examples, then canaries (by canary number).
pub struct Parts {
    /// Indices into the real training set.
    pub real: Vec<usize>,
    /// Canaries j of the micro-batch.
    pub canaries: Vec<usize>,
}

impl CanaryAudit {
    /// Draws the membership of `config.canaries` canaries (from `seed` for a seeded run, from
    /// the operating system otherwise) for `run`.
    pub fn start(config: AuditConfig, run: RunShape, seed: Option<u64>) -> Result<Self> {
        let canaries = Canaries::for_run(config.canaries, seed)?;
        let scores = Scores::new(config.canaries, run.sampling_rate, run.noise_ratio);
        let moments = Moments::new(config.canaries);
        Ok(Self::with(config, canaries, run, scores, moments))
    }

    fn with(
        config: AuditConfig,
        canaries: Canaries,
        run: RunShape,
        scores: Scores,
        moments: Moments,
    ) -> Self {
        Self {
            config,
            included: canaries.included(),
            canaries,
            real_size: run.real_size,
            views: run.views,
            magnitude: DEFAULT_CANARY_NORM * run.clip_norm,
            sampling_rate: run.sampling_rate,
            noise_ratio: run.noise_ratio,
            scores,
            moments,
        }
    }

    /// The state saved in a checkpoint: membership (a string of 0 and 1) and scores so far.
    pub fn state(&self) -> serde_json::Value {
        let membership: String = self
            .canaries
            .membership()
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect();
        let (sum, sum_of_squares, steps) = self.moments.sums();
        serde_json::json!({
            "membership": membership,
            "scores": self.scores.white_box(),
            "observation_sums": sum,
            "observation_sums_of_squares": sum_of_squares,
            "observed_steps": steps,
        })
    }

    /// [`Self::start`]'s audit continued from a checkpoint's [`Self::state`]; `Err` names what
    /// does not fit `config`.
    pub fn resume(
        config: AuditConfig,
        state: Option<&serde_json::Value>,
        run: RunShape,
    ) -> std::result::Result<Self, String> {
        let state = state.ok_or("the checkpoint has no audit state")?;
        let membership = state
            .get("membership")
            .and_then(|m| m.as_str())
            .ok_or("the audit state has no membership")?;
        let included: Vec<bool> = membership
            .chars()
            .map(|c| match c {
                '0' => Ok(false),
                '1' => Ok(true),
                _ => Err(format!("the audit membership holds {c:?}")),
            })
            .collect::<std::result::Result<_, _>>()?;
        let values = |key: &str| -> std::result::Result<Vec<f64>, String> {
            let value = state
                .get(key)
                .ok_or(format!("the audit state has no {key}"))?;
            let v: Vec<f64> = serde_json::from_value(value.clone())
                .map_err(|e| format!("the audit state's {key}: {e}"))?;
            if v.len() != config.canaries {
                return Err(format!(
                    "the audit state holds {} {key} for {} canaries",
                    v.len(),
                    config.canaries
                ));
            }
            Ok(v)
        };
        if included.len() != config.canaries {
            return Err(format!(
                "the audit state holds {} memberships for {} canaries",
                included.len(),
                config.canaries
            ));
        }
        let steps = state
            .get("observed_steps")
            .and_then(|s| s.as_u64())
            .ok_or("the audit state has no observed_steps")?;
        let canaries = Canaries::from_membership(included).map_err(|e| e.to_string())?;
        let scores = Scores::restore(run.sampling_rate, run.noise_ratio, values("scores")?);
        let moments = Moments::restore(
            values("observation_sums")?,
            values("observation_sums_of_squares")?,
            steps,
        )
        .ok_or("the audit state's sums differ in length")?;
        Ok(Self::with(config, canaries, run, scores, moments))
    }

    /// Steps observed so far (after a resume, those before the checkpoint included).
    pub fn observed_steps(&self) -> u64 {
        self.moments.sums().2
    }

    /// N + m_in: the examples the sampler draws from.
    pub fn dataset_size(&self) -> usize {
        self.real_size + self.included.len()
    }

    /// Splits a micro-batch's sampled indices into real examples and canaries.
    pub fn split(&self, indices: &[usize]) -> Parts {
        let (mut real, mut canaries) = (Vec::new(), Vec::new());
        for &i in indices {
            match i.checked_sub(self.real_size) {
                Some(k) => canaries.push(self.included[k]),
                None => real.push(i),
            }
        }
        Parts { real, canaries }
    }

    /// The rows of a micro-batch of `real` real examples followed by `canaries` (each
    /// `views` rows); `None` when it holds no canary.
    pub fn rows<B: Backend>(
        &self,
        real: usize,
        canaries: &[usize],
        device: &B::Device,
    ) -> Result<Option<CanaryRows<B>>> {
        if canaries.is_empty() {
            return Ok(None);
        }
        let rows: Vec<Option<usize>> = std::iter::repeat_n(None, real * self.views)
            .chain(
                canaries
                    .iter()
                    .flat_map(|&j| std::iter::repeat_n(Some(j), self.views)),
            )
            .collect();
        Ok(Some(CanaryRows::new(
            self.config.canaries,
            &rows,
            self.magnitude,
            device,
        )?))
    }

    /// Adds a step's released gradient of the block (`expected` batch size, noise std).
    pub fn observe(
        &mut self,
        released: Option<&[f32]>,
        expected: f64,
        noise_std: f64,
    ) -> Result<()> {
        let released = released.ok_or_else(|| {
            TrainError::Dp(DpError::Shape(
                "the audit block released no gradient (is it watched?)".into(),
            ))
        })?;
        self.scores.observe(released, expected / noise_std);
        self.moments.observe(released, expected / noise_std);
        Ok(())
    }

    /// The lower bound on ε at `delta` from the scores so far, against `claimed_epsilon`.
    pub fn summary(&self, delta: f64, claimed_epsilon: f64) -> Result<AuditSummary> {
        let c = &self.config;
        let bound = lower_bound(
            &self.canaries,
            self.scores.white_box(),
            c.method,
            c.significance,
            delta,
        )?;
        Ok(AuditSummary {
            epsilon_lower_bound: bound.epsilon,
            method: c.method.name().to_string(),
            significance: c.significance,
            canaries: c.canaries,
            included: self.included.len(),
            scores: "all iterates".into(),
            exceeds_claim: bound.epsilon > claimed_epsilon,
            consistency: self.moments.check(
                &self.canaries,
                self.sampling_rate,
                self.noise_ratio,
                c.significance,
            ),
        })
    }
}
