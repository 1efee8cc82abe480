//! The DP optimizer: wraps any burn optimizer and turns clipped per-example gradients into a
//! private update.
//!
//! One logical step is a chain of values: a [`SampledBatch`] (drawn by a sampler) → the
//! privacy charge of the event it realizes → clipped sums of physical micro-batches → one
//! draw of Gaussian noise of std σ·sensitivity → division by the *expected* batch size → the
//! inner optimizer's update → the parameter EMA.

use crate::clipping::{ClipSpec, Clipping};
use crate::ema::Ema;
use crate::engine::{clip_and_sum, ClippedSum, PerExampleEngine};
use crate::error::{DpError, Result};
use crate::noise::GaussianNoise;
use crate::params::{param_infos, to_gradients_params, ParamInfo};
use crate::per_example::FlatGrad;
use crate::sampler::{SampledBatch, Sampling};
use crate::validate::validate_model;
use burn::module::{AutodiffModule, ParamId};
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use dp_accountant::{NeighboringRelation, PrivacyAccountant};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::Range;

pub use crate::budget::Budget;
use crate::budget::Headroom;

/// Settings of private training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DpSgdConfig {
    /// σ: noise std over the sensitivity.
    pub noise_multiplier: f64,
    /// C: per-example clipping norm.
    pub clip_norm: f64,
    /// Flat or per-layer clipping.
    pub clipping: Clipping,
    /// K: augmented views per example, averaged before clipping.
    pub augmult: usize,
    /// Fast path or batch-of-one.
    pub engine: PerExampleEngine,
    /// μ of the parameter EMA (None: no EMA).
    pub ema_decay: Option<f64>,
    /// Optional budget.
    pub budget: Option<Budget>,
}

impl DpSgdConfig {
    /// σ and C with flat clipping, K = 1, the fast path, no EMA, no budget.
    pub fn new(noise_multiplier: f64, clip_norm: f64) -> Self {
        Self {
            noise_multiplier,
            clip_norm,
            clipping: Clipping::Flat,
            augmult: 1,
            engine: PerExampleEngine::Fast,
            ema_decay: None,
            budget: None,
        }
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<ClipSpec> {
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= 0.0) {
            return Err(DpError::invalid(
                "noise_multiplier",
                "σ",
                self.noise_multiplier,
                ">= 0 and finite",
            ));
        }
        if self.augmult == 0 {
            return Err(DpError::invalid("augmult", "K", 0, ">= 1"));
        }
        if let Some(mu) = self.ema_decay {
            if !(0.0..1.0).contains(&mu) {
                return Err(DpError::invalid("ema_decay", "μ", mu, "in [0, 1)"));
            }
        }
        if let Some(b) = self.budget {
            let valid = b.epsilon >= 0.0 && b.epsilon.is_finite() && b.delta > 0.0 && b.delta < 1.0;
            if !valid {
                return Err(DpError::invalid(
                    "budget",
                    "(ε, δ)",
                    format!("({}, {})", b.epsilon, b.delta),
                    "ε >= 0, δ in (0, 1)",
                ));
            }
        }
        ClipSpec::new(self.clip_norm, self.clipping)
    }
}

/// A logical step in progress: charged, accumulating micro-batches.
#[derive(Debug)]
pub struct PrivateStep<AB: AutodiffBackend> {
    step: u64,
    sampling: Sampling,
    batch_size: usize,
    sum: ClippedSum<AB::InnerBackend>,
}

impl<AB: AutodiffBackend> PrivateStep<AB> {
    /// The step number (0-based).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Per-example gradient norms seen so far (before clipping).
    pub fn norms(&self) -> &[f32] {
        self.sum.norms()
    }
}

/// Differentially private SGD around any burn optimizer (SGD, Adam, AdamW, …).
///
/// # Privacy
/// Each step charges the accountant with exactly the event its [`SampledBatch`] realizes
/// (`sampling.event(σ)`), before any data is touched; a step that would exceed the budget is
/// refused before that. The clipped sum has L2 sensitivity C under add-or-remove-one and 2C
/// under replace-one (the accountant's relation), and gets Gaussian noise of std
/// σ·sensitivity once per logical step. Guarantee: the accountant's (ε, δ) for the sequence
/// of released updates, under the accountant's neighbouring relation (Abadi et al. 2016;
/// the accountant's docs for the analysis). Not covered: hyperparameter tuning on the same
/// data, and data-dependent preprocessing outside this optimizer.
pub struct DpOptimizer<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> {
    pub(crate) inner: O,
    pub(crate) config: DpSgdConfig,
    clip: ClipSpec,
    pub(crate) accountant: Box<dyn PrivacyAccountant>,
    pub(crate) noise: GaussianNoise,
    pub(crate) ema: Option<Ema<AB::InnerBackend, M::InnerModule>>,
    pub(crate) steps: u64,
    pub(crate) journal: Option<std::path::PathBuf>,
    /// Identifies the run in its checkpoints and journal (random, reveals nothing).
    pub(crate) run_id: String,
    /// A parameter whose released (noisy) gradient is kept after each step, for audits.
    watched: Option<ParamId>,
    released: Option<Vec<f32>>,
    /// Steps known to fit in the budget.
    headroom: Headroom,
    _marker: PhantomData<(AB, M)>,
}

impl<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> DpOptimizer<AB, M, O> {
    /// Wraps `inner` for private training of `model`, with noise from the operating system's
    /// entropy. Refuses models with cross-example layers.
    pub fn new(
        model: &M,
        inner: O,
        config: DpSgdConfig,
        accountant: Box<dyn PrivacyAccountant>,
    ) -> Result<Self> {
        let clip = config.validate()?;
        validate_model(model)?;
        let ema = config.ema_decay.map(|mu| Ema::new(model.valid(), mu));
        Ok(Self {
            inner,
            config,
            clip,
            accountant,
            noise: GaussianNoise::from_os()?,
            ema,
            steps: 0,
            journal: None,
            run_id: crate::rng::random_id()?,
            watched: None,
            released: None,
            headroom: Headroom::default(),
            _marker: PhantomData,
        })
    }

    /// Replaces the noise source (e.g. [`GaussianNoise::seeded`] for reproducible runs).
    pub fn with_noise(mut self, noise: GaussianNoise) -> Self {
        self.noise = noise;
        self
    }

    /// Keeps, after each step, what the step released for parameter `id`: its noisy gradient
    /// (σ-noised clipped sum over the expected batch size, as the inner optimizer gets it),
    /// flattened. For privacy audits ([`crate::audit`]); costs one device read of that
    /// parameter per step.
    pub fn watch(&mut self, id: ParamId) {
        self.watched = Some(id);
        self.released = None;
    }

    /// The watched parameter's noisy gradient from the last step (see [`Self::watch`]).
    pub fn released(&self) -> Option<&[f32]> {
        self.released.as_deref()
    }

    /// The noise source.
    pub fn noise(&self) -> &GaussianNoise {
        &self.noise
    }

    /// The configuration.
    pub fn config(&self) -> &DpSgdConfig {
        &self.config
    }

    /// The accountant (read only: only steps charge it).
    pub fn accountant(&self) -> &dyn PrivacyAccountant {
        self.accountant.as_ref()
    }

    /// ε spent so far at `delta`.
    pub fn epsilon(&self, delta: f64) -> Result<f64> {
        Ok(self.accountant.epsilon(delta)?)
    }

    /// Steps taken (charged) so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The parameter EMA, for evaluation.
    pub fn ema_model(&self) -> Option<&M::InnerModule> {
        self.ema.as_ref().map(|e| e.model())
    }

    /// The L2 sensitivity of a clipped sum under the accountant's relation.
    pub fn sensitivity(&self) -> f64 {
        match self.accountant.neighboring_relation() {
            NeighboringRelation::AddOrRemoveOne => self.clip.clip_norm,
            NeighboringRelation::ReplaceOne => 2.0 * self.clip.clip_norm,
        }
    }

    /// The run's identifier, recorded in its checkpoints and journal.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Starts a logical step on `batch`: checks the budget, writes the journal with the step
    /// included (see [`crate::journal`]), then charges the accountant. Nothing is charged if
    /// this fails.
    pub fn begin_step(&mut self, batch: &SampledBatch) -> Result<PrivateStep<AB>> {
        let event = batch.sampling().event(self.config.noise_multiplier);
        if let Some(budget) = self.config.budget {
            self.headroom
                .check(self.accountant.as_ref(), &event, &budget, self.steps)?;
        }
        let mut after = self.accountant.box_clone();
        after.compose(&event)?;
        self.write_journal(after.as_ref())?;
        self.accountant = after;
        self.headroom.charged(&event);
        let step = self.steps;
        self.steps += 1;
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::record_charge(step);
        Ok(PrivateStep {
            step,
            sampling: batch.sampling(),
            batch_size: batch.indices().len(),
            sum: ClippedSum::empty(),
        })
    }

    /// Adds one physical micro-batch: `rows` rows (examples × augmult views, views of an
    /// example consecutive), `losses(model, range)` the per-row losses of rows in `range`.
    pub fn accumulate<F>(
        &self,
        step: &mut PrivateStep<AB>,
        model: &M,
        rows: usize,
        losses: F,
    ) -> Result<()>
    where
        F: Fn(&M, Range<usize>) -> Tensor<AB, 1>,
    {
        let sum = clip_and_sum(
            self.config.engine,
            model,
            rows,
            self.config.augmult,
            losses,
            &self.clip,
            step.step,
        )?;
        step.sum.merge(sum);
        if step.sum.examples() > step.batch_size {
            return Err(DpError::Shape(format!(
                "step {}: {} examples accumulated, but the sampled batch has {}",
                step.step,
                step.sum.examples(),
                step.batch_size
            )));
        }
        Ok(())
    }

    /// The noise std of `step` (σ·sensitivity), after checking that it accumulated exactly
    /// the examples of its batch (`what`: the batch's name in the error).
    fn noise_std_for(&self, step: &PrivateStep<AB>, what: &str) -> Result<f64> {
        if step.sum.examples() != step.batch_size {
            return Err(DpError::Shape(format!(
                "step {}: the micro-batches held {} examples, {what} {}",
                step.step,
                step.sum.examples(),
                step.batch_size
            )));
        }
        let noise_std = self.config.noise_multiplier * self.sensitivity();
        #[cfg(feature = "test-hooks")]
        let noise_std = match crate::test_hooks::planted() {
            Some(crate::test_hooks::PlantedBug::NoNoise) => 0.0,
            Some(crate::test_hooks::PlantedBug::HalfNoise) => 0.5 * noise_std,
            _ => noise_std,
        };
        Ok(noise_std)
    }

    /// Adds `update`, the released gradient of parameter `info`, to `noisy` (and keeps a copy
    /// if the parameter is watched).
    fn release(
        &mut self,
        noisy: &mut HashMap<ParamId, FlatGrad<AB::InnerBackend>>,
        info: &ParamInfo,
        update: Tensor<AB::InnerBackend, 1>,
    ) {
        if self.watched == Some(info.id) {
            self.released = Some(crate::readback::to_host(update.clone()));
        }
        noisy.insert(
            info.id,
            FlatGrad {
                values: update,
                dims: info.dims.clone(),
            },
        );
    }

    /// Applies the noisy, divided gradients `noisy` with the inner optimizer at learning rate
    /// `lr` and updates the EMA.
    fn apply(
        &mut self,
        step: u64,
        model: M,
        lr: f64,
        noisy: HashMap<ParamId, FlatGrad<AB::InnerBackend>>,
    ) -> M {
        let grads = to_gradients_params::<AB, M>(&model, noisy);
        let model = self.inner.step(lr, model, grads);
        if let Some(ema) = &mut self.ema {
            ema.update(&model.valid(), step);
        }
        model
    }

    /// Adds noise once, divides by the expected batch size, applies the inner optimizer with
    /// learning rate `lr`, and updates the EMA.
    pub fn finish_step(&mut self, step: PrivateStep<AB>, model: M, lr: f64) -> Result<M> {
        let noise_std = self.noise_std_for(&step, "the sampled batch")?;
        let expected = step.sampling.expected_batch_size();
        let mut sums = step.sum.sums;
        let mut noisy = HashMap::new();
        for info in &param_infos(&model)
            .into_iter()
            .filter(|p| p.trainable)
            .collect::<Vec<_>>()
        {
            let device = model.devices().into_iter().next().unwrap_or_default();
            let sum = sums
                .remove(&info.id)
                .map(|g| g.values)
                .unwrap_or_else(|| Tensor::zeros([info.numel()], &device));
            let noise = self.noise.sample(info.numel(), noise_std)?;
            let noise = Tensor::from_data(TensorData::new(noise, [info.numel()]), &sum.device());
            let update = (sum + noise).div_scalar(expected);
            self.release(&mut noisy, info, update);
        }
        Ok(self.apply(step.step, model, lr, noisy))
    }

    /// [`Self::finish_step`] for one peer of a data-parallel group: `step` accumulated this
    /// peer's [`SampledBatch::shard`] of the logical batch. The trainable parameters' clipped
    /// sums are flattened into one tensor (in the model's parameter order); peer 0 alone adds
    /// the Gaussian noise of std σ·sensitivity to its share; one all-reduce sums the shares;
    /// every peer divides by the expected batch size of the whole logical batch and applies
    /// the same update, so replicas that start equal stay equal.
    ///
    /// # Privacy
    /// The noise is added exactly once per logical step, with the single-process std (never
    /// per peer, never σ/√W per peer), and each peer's accountant is charged the whole step's
    /// event in [`Self::begin_step`] (peer 0's journal is the run's). The peers exchange
    /// un-noised clipped sums: see [`crate::collective`].
    pub fn finish_step_all_reduced<P>(
        &mut self,
        step: PrivateStep<AB>,
        model: M,
        lr: f64,
        peers: &P,
    ) -> Result<M>
    where
        P: crate::collective::AllReduce<AB::InnerBackend> + ?Sized,
    {
        let noise_std = self.noise_std_for(&step, "the peer's shard")?;
        let adds_noise = peers.rank() == 0;
        #[cfg(feature = "test-hooks")]
        let adds_noise = adds_noise
            || crate::test_hooks::planted() == Some(crate::test_hooks::PlantedBug::NoisePerPeer);
        let expected = step.sampling.expected_batch_size();
        let infos: Vec<_> = param_infos(&model)
            .into_iter()
            .filter(|p| p.trainable)
            .collect();
        let device = model.devices().into_iter().next().unwrap_or_default();
        let mut sums = step.sum.sums;
        let shares: Vec<Tensor<AB::InnerBackend, 1>> = infos
            .iter()
            .map(|info| {
                sums.remove(&info.id)
                    .map(|g| g.values)
                    .unwrap_or_else(|| Tensor::zeros([info.numel()], &device))
            })
            .collect();
        if shares.is_empty() {
            return Err(DpError::Shape(
                "the model has no trainable parameter".into(),
            ));
        }
        // The noise is drawn parameter by parameter, as `finish_step` draws it, so a seeded
        // group adds the very noise of the same seeded run in one process.
        let shares = if adds_noise {
            let mut noisy_shares = Vec::with_capacity(shares.len());
            for (share, info) in shares.into_iter().zip(&infos) {
                let noise = self.noise.sample(info.numel(), noise_std)?;
                noisy_shares.push(
                    share + Tensor::from_data(TensorData::new(noise, [info.numel()]), &device),
                );
            }
            noisy_shares
        } else {
            shares
        };
        let share = Tensor::cat(shares, 0);
        let summed = peers.all_reduce_sum(share)?;
        let mut noisy = HashMap::new();
        let mut offset = 0;
        for info in &infos {
            let n = info.numel();
            let update = summed
                .clone()
                .slice(offset..offset + n)
                .div_scalar(expected);
            offset += n;
            self.release(&mut noisy, info, update);
        }
        Ok(self.apply(step.step, model, lr, noisy))
    }

    /// One whole logical step: begin, accumulate micro-batches of at most `micro_batch`
    /// examples (`load` turns example indices into data, `losses` gives per-row losses of a
    /// row range of that data), finish.
    pub fn step<D, L, F>(
        &mut self,
        model: M,
        batch: &SampledBatch,
        micro_batch: usize,
        lr: f64,
        mut load: L,
        losses: F,
    ) -> Result<M>
    where
        L: FnMut(&[usize]) -> D,
        F: Fn(&M, &D, Range<usize>) -> Tensor<AB, 1>,
    {
        let mut step = self.begin_step(batch)?;
        for indices in batch.micro_batches(micro_batch) {
            let data = load(indices);
            let rows = indices.len() * self.config.augmult;
            self.accumulate(&mut step, &model, rows, |m, r| losses(m, &data, r))?;
        }
        self.finish_step(step, model, lr)
    }
}
