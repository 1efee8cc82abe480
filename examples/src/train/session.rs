//! Starting a run's optimizer and sampler: fresh (writing the run's first files) or resumed
//! from its checkpoint and journal, after checking that they continue this very run.

use super::audit::{CanaryAudit, RunShape};
use super::preflight::Logs;
use super::record::RunRecord;
use super::run_dir::{write_private, RunDir};
use crate::error::{Result, TrainError};
use crate::report::LOSS_HEADER;
use burn::module::AutodiffModule;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Optimizer, SgdConfig};
use burn::tensor::backend::AutodiffBackend;
use dp_accountant::{AccountantConfig, DpEvent, Ledger, NeighboringRelation};
use dp_core::noise::GaussianNoise;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{Budget, DpOptimizer, DpSgdConfig};
use std::fs::File;

/// A run ready to take its next step.
pub struct Session<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> {
    /// The model.
    pub model: M,
    /// The private optimizer (journaled).
    pub optimizer: DpOptimizer<AB, M, O>,
    /// The Poisson sampler.
    pub sampler: PoissonSampler,
    /// Wall-clock seconds of earlier invocations.
    pub wall_before: f64,
    /// Steps charged after the last checkpoint of interrupted invocations (all of them).
    pub lost_steps: u64,
    /// The canaries of `--audit` and their scores so far.
    pub audit: Option<CanaryAudit>,
    /// Held for the whole run: no second process may write the same journal.
    pub _lock: File,
}

/// The SGD of the presets.
pub fn sgd<AB: AutodiffBackend, M: AutodiffModule<AB>>(momentum: f64) -> impl Optimizer<M, AB> {
    let config = SgdConfig::new();
    let config = if momentum > 0.0 {
        // PyTorch's SGD semantics (Tramèr & Boneh): velocity = μ·velocity + g, no dampening.
        config.with_momentum(Some(MomentumConfig {
            momentum,
            dampening: 0.0,
            nesterov: false,
        }))
    } else {
        config
    };
    config.init::<AB, M>()
}

/// What a checkpoint's caller data records.
fn extra(
    wall_s: f64,
    record_digest: &str,
    lost_steps: u64,
    audit: Option<&CanaryAudit>,
) -> serde_json::Value {
    let mut extra = serde_json::json!({
        "wall_s": wall_s,
        "run_record_sha256": record_digest,
        "lost_steps": lost_steps,
    });
    if let Some(audit) = audit {
        extra["audit"] = audit.state();
    }
    extra
}

/// Saves a checkpoint of `session` with its wall time.
pub fn checkpoint<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>>(
    session: &Session<AB, M, O>,
    run: &RunDir,
    wall_s: f64,
    record_digest: &str,
) -> Result<()> {
    Ok(session.optimizer.save_checkpoint(
        run.checkpoint(),
        &session.model,
        Some(session.sampler.state()),
        extra(
            wall_s,
            record_digest,
            session.lost_steps,
            session.audit.as_ref(),
        ),
    )?)
}

/// Creates the run directory and its first files (run.json, journal, checkpoint at step 0).
/// If any of it fails, what was written is removed again: a failed start leaves nothing that
/// stops a rerun.
pub fn start<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>>(
    model: M,
    inner: O,
    record: &RunRecord,
    run: &RunDir,
) -> Result<(Session<AB, M, O>, String)> {
    let (lock, created) = run.create()?;
    let started = (|| {
        let bytes = record.to_bytes()?;
        write_private(&run.record(), &bytes)?;
        write_private(&run.losses(), format!("{LOSS_HEADER}\n").as_bytes())?;
        let (config, plan) = (&record.config, &record.plan);
        let dp_config = DpSgdConfig {
            augmult: config.augmult,
            ema_decay: config.ema_decay,
            budget: Some(Budget {
                epsilon: plan.epsilon,
                delta: plan.delta,
            }),
            ..DpSgdConfig::new(plan.noise_multiplier, config.clip_norm)
        };
        let accountant = AccountantConfig::default_for(plan.accountant)
            .build(NeighboringRelation::AddOrRemoveOne)?;
        let optimizer =
            DpOptimizer::new(&model, inner, dp_config, accountant)?.with_journal(run.journal());
        let audit = config
            .audit
            .map(|a| CanaryAudit::start(a, run_shape(record, &optimizer), config.seed))
            .transpose()?;
        let n = sampled_size(record, audit.as_ref());
        let (optimizer, sampler) = match config.seed {
            Some(seed) => (
                optimizer.with_noise(GaussianNoise::seeded(seed)),
                PoissonSampler::seeded(n, plan.sampling_rate, seed.wrapping_add(1))?,
            ),
            None => (optimizer, PoissonSampler::new(n, plan.sampling_rate)?),
        };
        let digest = super::record::digest(&bytes);
        let session = Session {
            model,
            optimizer,
            sampler,
            wall_before: 0.0,
            lost_steps: 0,
            audit,
            _lock: lock,
        };
        checkpoint(&session, run, 0.0, &digest)?;
        Ok((session, digest))
    })();
    if started.is_err() {
        run.abandon(created);
    }
    started
}

/// What an audit needs of the run: the noise std over a canary's clipped norm C from the
/// optimizer (σ under add-or-remove-one), the rest from run.json.
fn run_shape<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>>(
    record: &RunRecord,
    optimizer: &DpOptimizer<AB, M, O>,
) -> RunShape {
    let clip_norm = record.config.clip_norm;
    RunShape {
        real_size: record.data.train_size,
        sampling_rate: record.plan.sampling_rate,
        noise_ratio: optimizer.config().noise_multiplier * optimizer.sensitivity() / clip_norm,
        clip_norm,
        views: record.config.augmult,
    }
}

/// The examples the sampler draws from: the real ones and the canaries that are in.
fn sampled_size(record: &RunRecord, audit: Option<&CanaryAudit>) -> u64 {
    audit.map_or(record.data.train_size, CanaryAudit::dataset_size) as u64
}

fn refuse(run: &RunDir, why: String) -> TrainError {
    TrainError::RunDirectory(format!(
        "cannot resume {}: {why}; nothing was charged",
        run.dir.display()
    ))
}

/// Resumes the run in `run` from its checkpoint and journal; refuses, before anything is
/// charged, a journal or checkpoint that does not continue exactly this run (another σ, q or
/// accountant, fewer steps than its own logs show, an edited run.json).
#[allow(clippy::too_many_arguments)]
pub fn resume<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>>(
    model: M,
    inner: O,
    record: &RunRecord,
    record_digest: &str,
    logs: &Logs,
    run: &RunDir,
    lock: File,
    verbose: bool,
) -> Result<Session<AB, M, O>> {
    let resumed = DpOptimizer::resume(run.checkpoint(), Some(&run.journal()), model, inner)?;
    let saved_digest = resumed
        .extra
        .get("run_record_sha256")
        .and_then(|v| v.as_str());
    if saved_digest != Some(record_digest) {
        return Err(refuse(
            run,
            "run.json was changed after the run started (its SHA-256 differs from the one the \
             checkpoint recorded)"
                .into(),
        ));
    }
    let plan = &record.plan;
    let optimizer = resumed.optimizer;
    let settings = optimizer.config();
    if settings.noise_multiplier != plan.noise_multiplier
        || settings.clip_norm != record.config.clip_norm
        || optimizer.accountant().config() != AccountantConfig::default_for(plan.accountant)
    {
        return Err(refuse(
            run,
            "the checkpoint's σ, C or accountant differ from run.json's".into(),
        ));
    }
    let event = DpEvent::poisson_gaussian(plan.sampling_rate, plan.noise_multiplier);
    let expected = Ledger::from_event(&event)?;
    let ledger = optimizer.accountant().ledger();
    let foreign = ledger
        .entries()
        .iter()
        .find(|(m, _)| expected.entries().iter().all(|(e, _)| e != m));
    if let Some((mechanism, count)) = foreign {
        return Err(refuse(
            run,
            format!(
                "the journal records {count} step(s) of {mechanism:?}, which this run (q = {}, \
                 σ = {}) never takes",
                plan.sampling_rate, plan.noise_multiplier
            ),
        ));
    }
    let charged = optimizer.steps();
    let seen = logs
        .evaluations
        .iter()
        .map(|e| e.step)
        .max()
        .unwrap_or(0)
        .max(logs.last_loss_step);
    if seen > charged {
        return Err(refuse(
            run,
            format!(
                "the journal records {charged} step(s), but the run's own logs show step {seen}: \
                 the journal lost charged steps"
            ),
        ));
    }
    if resumed.lost_steps > 0 && verbose {
        eprintln!(
            "resuming at step {charged}: {} step(s) after the last checkpoint were lost; their \
             privacy cost is kept",
            resumed.lost_steps
        );
    }
    let audit = match record.config.audit {
        Some(a) => Some(
            CanaryAudit::resume(a, resumed.extra.get("audit"), run_shape(record, &optimizer))
                .map_err(|why| refuse(run, why))?,
        ),
        None => None,
    };
    if let Some(observed) = audit
        .as_ref()
        .map(CanaryAudit::observed_steps)
        .filter(|&s| s != optimizer.steps())
    {
        return Err(refuse(
            run,
            format!(
                "the audit state observed {observed} step(s), the checkpoint took {}",
                optimizer.steps()
            ),
        ));
    }
    let n = sampled_size(record, audit.as_ref());
    let sampler = match &resumed.sampler {
        // Fresh entropy unless seeded (the state then holds the seeded stream).
        Some(state) => PoissonSampler::from_state(state)?,
        None => PoissonSampler::new(n, plan.sampling_rate)?,
    };
    let sampling = sampler.sampling();
    let expected = dp_core::sampler::Sampling::Poisson {
        sampling_rate: plan.sampling_rate,
        dataset_size: n,
    };
    if sampling != expected {
        return Err(refuse(
            run,
            format!("the checkpoint's sampler ({sampling:?}) is not this run's ({expected:?})"),
        ));
    }
    let wall_before = resumed
        .extra
        .get("wall_s")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    let lost_before = resumed
        .extra
        .get("lost_steps")
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    Ok(Session {
        model: resumed.model,
        optimizer: optimizer.with_journal(run.journal()),
        sampler,
        wall_before,
        lost_steps: lost_before + resumed.lost_steps,
        audit,
        _lock: lock,
    })
}
