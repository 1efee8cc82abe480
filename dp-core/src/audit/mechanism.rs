//! Auditing the DP-SGD mechanism alone: the canary block as the whole model, the included
//! canaries as the whole dataset, every step through [`DpOptimizer`].

use super::canaries::one_hot_rows;
use super::{canary_block, lower_bound, Canaries, ConsistencyCheck, Moments, Scores};
use crate::error::{DpError, Result};
use crate::noise::GaussianNoise;
use crate::optimizer::{DpOptimizer, DpSgdConfig};
use crate::readback::to_host;
use crate::sampler::{PoissonSampler, Sampler};
use burn::optim::SgdConfig;
use burn::tensor::backend::AutodiffBackend;
use dp_accountant::audit::{AuditMethod, LowerBound};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use serde::Serialize;

/// Settings of a mechanism audit.
#[derive(Clone, Debug, PartialEq)]
pub struct MechanismAudit {
    /// m: canaries (each in with probability ½).
    pub canaries: usize,
    /// σ.
    pub noise_multiplier: f64,
    /// q of the Poisson sampler.
    pub sampling_rate: f64,
    /// T.
    pub steps: u64,
    /// δ of the claim and of the bounds.
    pub delta: f64,
    /// Significance of the bounds (one minus their confidence).
    pub significance: f64,
    /// M/C: a canary's gradient norm over the clipping norm (≥ 1, so clipping acts).
    pub canary_norm: f64,
    /// The accountant that makes the claim.
    pub accountant: AccountantKind,
    /// Rows per physical micro-batch.
    pub micro_batch: usize,
    /// A seed for membership, sampling and noise (reproducible audits and tests only).
    pub seed: Option<u64>,
}

impl MechanismAudit {
    /// σ, q, T, δ with 5,000 canaries, significance 0.05, M = 10·C, the PLD accountant.
    pub fn new(noise_multiplier: f64, sampling_rate: f64, steps: u64, delta: f64) -> Self {
        Self {
            canaries: 5000,
            noise_multiplier,
            sampling_rate,
            steps,
            delta,
            significance: 0.05,
            canary_norm: super::DEFAULT_CANARY_NORM,
            accountant: AccountantKind::Pld,
            micro_batch: 512,
            seed: None,
        }
    }
}

/// Lower bounds of both methods from one set of scores.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct AuditBounds {
    /// Steinke, Nasr & Jagielski 2023.
    pub one_run: LowerBound,
    /// Mahloujifar, Melis & Chaudhuri 2024 (Gaussian trade-off curve).
    pub fdp: LowerBound,
}

impl AuditBounds {
    fn of(canaries: &Canaries, scores: &[f64], significance: f64, delta: f64) -> Result<Self> {
        Ok(Self {
            one_run: lower_bound(canaries, scores, AuditMethod::OneRun, significance, delta)?,
            fdp: lower_bound(canaries, scores, AuditMethod::Fdp, significance, delta)?,
        })
    }

    /// The larger of the two bounds.
    pub fn best(&self) -> f64 {
        self.one_run.epsilon.max(self.fdp.epsilon)
    }
}

/// What a mechanism audit found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MechanismAuditReport {
    /// ε the accountant charged for the run, at δ.
    pub claimed_epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Significance of the bounds.
    pub significance: f64,
    /// m.
    pub canaries: usize,
    /// Canaries that were in.
    pub included: usize,
    /// Bounds from every step's noisy gradient.
    pub white_box: AuditBounds,
    /// Bounds from the final model only.
    pub final_model: AuditBounds,
    /// Whether the released noise and participation fit the charged mechanism (`None` when
    /// every canary was in).
    pub consistency: Option<ConsistencyCheck>,
}

impl MechanismAuditReport {
    /// Whether one of the four lower bounds exceeds the claim, or the consistency check
    /// rejects the charged mechanism. Each bound holds, and the check passes an honest run,
    /// with probability 1 − significance, so the verdict errs with
    /// probability at most [`Self::verdict_significance`] (a union bound). An f-DP bound above
    /// the claim refutes the Gaussian trade-off curve of (ε, δ), which DP-SGD's composition
    /// is close to but not exactly; a one-run bound above it refutes (ε, δ)-DP itself; a
    /// rejected check shows less noise or more participation than charged.
    pub fn claim_refuted(&self) -> bool {
        self.largest_bound() > self.claimed_epsilon
            || self.consistency.is_some_and(|c| c.rejected())
    }

    /// The largest of the four lower bounds.
    pub fn largest_bound(&self) -> f64 {
        self.white_box.best().max(self.final_model.best())
    }

    /// 5 × significance (at most 1): the error probability of [`Self::claim_refuted`].
    pub fn verdict_significance(&self) -> f64 {
        (5.0 * self.significance).min(1.0)
    }
}

impl MechanismAudit {
    /// Checks every setting (errors name the field, e.g. `noise_multiplier`); [`Self::run`]
    /// does this first.
    pub fn validate(&self) -> Result<()> {
        if self.canaries < 2 {
            return Err(DpError::invalid("canaries", "m", self.canaries, ">= 2"));
        }
        if !(self.sampling_rate > 0.0 && self.sampling_rate <= 1.0) {
            return Err(DpError::invalid(
                "sampling_rate",
                "q",
                self.sampling_rate,
                "in (0, 1]",
            ));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier > 0.0) {
            return Err(DpError::invalid(
                "noise_multiplier",
                "σ",
                self.noise_multiplier,
                "> 0 and finite",
            ));
        }
        if self.steps == 0 {
            return Err(DpError::invalid("steps", "T", 0, ">= 1"));
        }
        if !(self.canary_norm.is_finite() && self.canary_norm >= 1.0) {
            return Err(DpError::invalid(
                "canary_norm",
                "M/C",
                self.canary_norm,
                ">= 1 and finite",
            ));
        }
        if !(self.significance > 0.0 && self.significance < 1.0) {
            return Err(DpError::invalid(
                "significance",
                "α",
                self.significance,
                "in (0, 1)",
            ));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(DpError::invalid("delta", "δ", self.delta, "in (0, 1)"));
        }
        if self.micro_batch == 0 {
            return Err(DpError::invalid("micro_batch", "b", 0, ">= 1"));
        }
        Ok(())
    }

    /// Runs the audit on `device`; `progress(t, T)` after each step.
    pub fn run<AB: AutodiffBackend>(
        &self,
        device: &AB::Device,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<MechanismAuditReport> {
        self.validate()?;
        let m = self.canaries;
        let canaries = Canaries::for_run(m, self.seed)?;
        let included = canaries.included();
        if included.is_empty() {
            return Err(DpError::invalid(
                "canaries",
                "m",
                m,
                "large enough that one is in",
            ));
        }
        let clip_norm = 1.0;
        let accountant = AccountantConfig::default_for(self.accountant)
            .build(NeighboringRelation::AddOrRemoveOne)?;
        let mut model = canary_block::<AB>(m, device);
        let config = DpSgdConfig::new(self.noise_multiplier, clip_norm);
        let mut optimizer = DpOptimizer::new(&model, SgdConfig::new().init(), config, accountant)?;
        let mut sampler = match self.seed {
            Some(seed) => PoissonSampler::seeded(included.len() as u64, self.sampling_rate, seed)?,
            None => PoissonSampler::new(included.len() as u64, self.sampling_rate)?,
        };
        if let Some(seed) = self.seed {
            optimizer = optimizer.with_noise(GaussianNoise::seeded(seed.wrapping_add(1)));
        }
        optimizer.watch(model.weight.id);
        let noise_std = self.noise_multiplier * optimizer.sensitivity();
        let mut scores = Scores::new(m, self.sampling_rate, noise_std / clip_norm);
        let mut moments = Moments::new(m);
        let magnitude = self.canary_norm * clip_norm;
        for t in 0..self.steps {
            let batch = sampler.next_batch();
            let expected = batch.sampling().expected_batch_size();
            model = optimizer.step(
                model,
                &batch,
                self.micro_batch,
                1.0,
                |indices| {
                    let rows: Vec<Option<usize>> =
                        indices.iter().map(|i| Some(included[*i])).collect();
                    one_hot_rows::<AB>(m, &rows, magnitude, device)
                },
                |block, x, rows| block.forward(x.clone().slice([rows])).reshape([-1]),
            )?;
            let released = optimizer
                .released()
                .ok_or_else(|| DpError::Shape("the audit block released nothing".into()))?;
            scores.observe(released, expected / noise_std);
            moments.observe(released, expected / noise_std);
            progress(t + 1, self.steps);
        }
        let final_values = to_host(model.weight.val());
        let final_scores: Vec<f64> = final_values.iter().map(|w| -(*w as f64)).collect();
        Ok(MechanismAuditReport {
            claimed_epsilon: optimizer.epsilon(self.delta)?,
            delta: self.delta,
            significance: self.significance,
            canaries: m,
            included: included.len(),
            white_box: AuditBounds::of(
                &canaries,
                scores.white_box(),
                self.significance,
                self.delta,
            )?,
            final_model: AuditBounds::of(&canaries, &final_scores, self.significance, self.delta)?,
            consistency: moments.check(
                &canaries,
                self.sampling_rate,
                noise_std / clip_norm,
                self.significance,
            ),
        })
    }
}
