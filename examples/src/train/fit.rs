//! The training loop: sample (Poisson) → augment K views → clip per example → noise →
//! update → evaluate, checkpoint and report; at the end the released model files and the
//! summary.

use super::classifier::Classifier;
use super::eval::evaluate;
use super::parallel;
use super::progress::Progress;
use super::record::RunRecord;
use super::run_dir::RunDir;
use super::session::{checkpoint, Session};
use super::step::{take_step, StepData};
use super::{Outcome, TrainOptions};
use crate::augment::Augment;
use crate::data::Split;
use crate::error::{Result, TrainError};
use crate::model_card::{ModelCard, CARD_VERSION};
use crate::presets::{preset, PrivacyPlan};
use crate::report::{self, Evaluation, Summary};
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use dp_accountant::AccountantKind;
use dp_core::collective::AllReduce;
use dp_core::files;
use dp_core::sampler::Sampler;
use std::path::Path;
use std::time::Instant;

/// What the loop needs besides the session.
pub struct Context<'a> {
    /// run.json.
    pub record: &'a RunRecord,
    /// Its SHA-256, recorded in every checkpoint.
    pub record_digest: &'a str,
    /// The data.
    pub split: &'a Split,
    /// The run directory.
    pub run: &'a RunDir,
    /// The options.
    pub options: &'a TrainOptions,
    /// Seed of the augmentation randomness (OS entropy unless the run is seeded).
    pub augment_seed: u64,
    /// Input resolution of fine-tuning.
    pub resolution: Option<usize>,
}

/// ε of the run's `steps` by `accountant`: the other accountant's beside the charged one.
fn epsilon_by(accountant: AccountantKind, plan: &PrivacyPlan, steps: u64) -> Option<f64> {
    crate::presets::epsilon_by(
        accountant,
        plan.sampling_rate,
        plan.noise_multiplier,
        steps,
        plan.delta,
    )
}

/// Evaluates the current and EMA weights on the test set.
fn evaluation<AB, M, O>(
    session: &Session<AB, M, O>,
    ctx: &Context,
    augment: &Augment,
    device: &AB::Device,
) -> Result<(f64, f64, Option<f64>)>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    let split = ctx.split;
    let (accuracy, loss) = evaluate(
        &session.model.valid(),
        split,
        augment,
        ctx.resolution,
        device,
    )?;
    let ema = match session.optimizer.ema_model() {
        Some(ema) => Some(evaluate(ema, split, augment, ctx.resolution, device)?.0),
        None => None,
    };
    Ok((accuracy, loss, ema))
}

/// How the steps of an invocation ended.
enum Ended {
    /// At the run's last step; the last evaluation, if this invocation made one.
    Finished(Option<Evaluation>),
    /// At `pause_after`.
    Paused,
}

/// Trains `session` until the run's last step or `pause_after`; returns how it ended. With
/// `peer`, `session` is peer 0 of a data-parallel group (see [`super::parallel`]): it alone
/// evaluates, checkpoints, journals and reports, and after the last step the peers check
/// that their replicas are identical.
pub fn fit<AB, M, O>(
    session: Session<AB, M, O>,
    ctx: &Context,
    peer: Option<&dyn AllReduce<AB::InnerBackend>>,
    device: &AB::Device,
) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    let started = Instant::now();
    let ended = steps(session, ctx, peer, device, started);
    let (session, ended) = match peer {
        Some(peer) => parallel::end_of_steps(peer, ended, |(s, _)| &s.model, device)?,
        None => ended?,
    };
    let plan = &ctx.record.plan;
    let last = match ended {
        Ended::Paused => {
            return Ok(Outcome::Paused {
                steps: session.optimizer.steps(),
                epsilon: session.optimizer.epsilon(plan.delta)?,
            })
        }
        Ended::Finished(Some(e)) => e,
        // Resumed at the very end, before the summary was written: evaluate once more.
        Ended::Finished(None) => {
            let eval_augment = ctx.record.config.augmentation(ctx.split.train.shape[0]);
            let (test_accuracy, test_loss, test_accuracy_ema) =
                evaluation(&session, ctx, &eval_augment.eval_only(), device)?;
            Evaluation {
                step: session.optimizer.steps(),
                epoch: session.optimizer.steps() as f64 * plan.sampling_rate,
                epsilon: session.optimizer.epsilon(plan.delta)?,
                train_loss: f64::NAN,
                test_accuracy,
                test_loss,
                test_accuracy_ema,
                wall_s: session.wall_before + started.elapsed().as_secs_f64(),
                train_s: 0.0,
            }
        }
    };
    let wall_s = session.wall_before + started.elapsed().as_secs_f64();
    let peers = peer.map_or(1, |p| p.peers());
    finish(&session, ctx, &last, wall_s, peers).map(|s| Outcome::Finished(Box::new(s)))
}

/// The steps of this invocation.
fn steps<AB, M, O>(
    mut session: Session<AB, M, O>,
    ctx: &Context,
    peer: Option<&dyn AllReduce<AB::InnerBackend>>,
    device: &AB::Device,
    started: Instant,
) -> Result<(Session<AB, M, O>, Ended)>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    let (config, plan, split) = (&ctx.record.config, &ctx.record.plan, ctx.split);
    let data = StepData {
        config,
        split,
        augment: config.augmentation(split.train.shape[0]),
        augment_seed: ctx.augment_seed,
        resolution: ctx.resolution,
    };
    let eval_augment = data.augment.eval_only();
    let steps_per_epoch = ((1.0 / plan.sampling_rate).round() as u64).max(1);
    let eval_every = if config.eval_every > 0 {
        config.eval_every
    } else {
        steps_per_epoch
    };
    let mut progress = Progress::new(
        plan,
        session.optimizer.steps(),
        ctx.options,
        config.evaluated_on(),
    );
    let (mut loss_sum, mut loss_rows, mut train_s) = (0f64, 0usize, 0f64);
    let mut last: Option<Evaluation> = None;
    let stop_at = stop_at(ctx, session.optimizer.steps());
    while session.optimizer.steps() < stop_at {
        let step_started = Instant::now();
        let batch = session.sampler.next_batch();
        let shard = peer.map(|p| batch.shard(p.rank(), p.peers()));
        let (model, loss) = take_step(
            session.model,
            &mut session.optimizer,
            shard.as_ref().unwrap_or(&batch),
            session.audit.as_ref(),
            &data,
            peer,
            device,
        )?;
        session.model = model;
        if let Some(audit) = session.audit.as_mut() {
            let noise_std =
                session.optimizer.config().noise_multiplier * session.optimizer.sensitivity();
            audit.observe(
                session.optimizer.released(),
                batch.sampling().expected_batch_size(),
                noise_std,
            )?;
        }
        let done = session.optimizer.steps();
        train_s += step_started.elapsed().as_secs_f64();
        if loss.rows > 0 {
            let mean = loss.sum / loss.rows as f64;
            progress.loss = mean;
            loss_sum += loss.sum;
            loss_rows += loss.rows;
            report::append_line(&ctx.run.losses(), &format!("{done},{mean}"))?;
        }
        let pausing = stop_at == done && done < plan.steps;
        if done.is_multiple_of(eval_every) || done == plan.steps || pausing {
            let (test_accuracy, test_loss, test_accuracy_ema) =
                evaluation(&session, ctx, &eval_augment, device)?;
            let wall_s = session.wall_before + started.elapsed().as_secs_f64();
            let evaluation = Evaluation {
                step: done,
                epoch: done as f64 * plan.sampling_rate,
                epsilon: session.optimizer.epsilon(plan.delta)?,
                train_loss: if loss_rows > 0 {
                    loss_sum / loss_rows as f64
                } else {
                    f64::NAN
                },
                test_accuracy,
                test_loss,
                test_accuracy_ema,
                wall_s,
                train_s,
            };
            report::append_evaluation(&ctx.run.dir, &evaluation)?;
            checkpoint(&session, ctx.run, wall_s, ctx.record_digest)?;
            progress.evaluated(&evaluation, plan);
            (loss_sum, loss_rows, train_s) = (0.0, 0, 0.0);
            last = Some(evaluation);
        }
        // ε for the bar: every step with RDP (well under a millisecond); with PLD, as of the
        // last evaluation (a PLD query costs milliseconds).
        let epsilon_now = match (plan.accountant, &last) {
            (AccountantKind::Pld, Some(e)) => e.epsilon,
            _ => session.optimizer.epsilon(plan.delta)?,
        };
        progress.stepped(done, epsilon_now, last.as_ref());
        if pausing {
            progress.finish();
            return Ok((session, Ended::Paused));
        }
    }
    progress.finish();
    Ok((session, Ended::Finished(last)))
}

/// The step this invocation stops after: the run's last, or `pause_after` steps on.
pub fn stop_at(ctx: &Context, steps_before: u64) -> u64 {
    let last = ctx.record.plan.steps;
    ctx.options
        .pause_after
        .map_or(last, |n| steps_before.saturating_add(n).min(last))
}

/// Saves the network of `model` as safetensors at `path` (private, atomic).
fn save_model<B: Backend, M: Classifier<B>>(
    model: &M,
    path: &Path,
    card: &ModelCard,
) -> Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    model.save_released(&tmp, Some(card.to_metadata()?))?;
    files::make_private(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
    files::sync_dir(files::parent_dir(path)).map_err(|e| TrainError::io(path, e))
}

/// The card of the released model: what using it needs, and what it cost.
fn model_card(ctx: &Context, epsilon: f64, weights: &str) -> ModelCard {
    let (record, train) = (ctx.record, &ctx.split.train);
    let [channels, height, width] = train.shape;
    let input = match ctx.resolution {
        Some(r) => [channels, r, r],
        None => [channels, height, width],
    };
    let class_names = if record.class_names.len() == train.classes {
        record.class_names.clone()
    } else {
        (0..train.classes).map(|c| c.to_string()).collect()
    };
    ModelCard {
        format_version: CARD_VERSION,
        model: record.config.model,
        nfnet_variant: record.config.finetune.as_ref().map(|f| f.variant),
        input,
        normalization: record.config.augmentation(channels).normalize,
        class_names,
        dataset: record.config.dataset,
        preset: record.config.preset.clone(),
        epsilon,
        delta: record.plan.delta,
        accountant: record.plan.accountant.name().to_string(),
        seeded: record.config.seed.is_some(),
        weights: weights.to_string(),
    }
}

/// Writes the released model files, the summary and the plots.
fn finish<AB, M, O>(
    session: &Session<AB, M, O>,
    ctx: &Context,
    last: &Evaluation,
    wall_s: f64,
    peers: usize,
) -> Result<Summary>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    let (config, plan, run) = (&ctx.record.config, &ctx.record.plan, ctx.run);
    let epsilon = session.optimizer.epsilon(plan.delta)?;
    let card = model_card(ctx, epsilon, "current");
    save_model(
        &session.model.valid(),
        &run.file("model.safetensors"),
        &card,
    )?;
    if let Some(ema) = session.optimizer.ema_model() {
        let card = ModelCard {
            weights: "ema".into(),
            ..card
        };
        save_model(ema, &run.file("model-ema.safetensors"), &card)?;
    }
    let steps = session.optimizer.steps();
    let epochs = (steps as f64 * plan.sampling_rate).max(1e-12);
    let step_seconds: f64 = report::read_evaluations(&run.dir)?
        .iter()
        .map(|e| e.train_s)
        .sum();
    // An audit that gives no bound (e.g. all canaries in) is reported, never a failed run.
    let audit = session
        .audit
        .as_ref()
        .and_then(|a| match a.summary(plan.delta, epsilon) {
            Ok(s) => Some(Box::new(s)),
            Err(e) => {
                eprintln!("warning: the audit gave no bound: {e}");
                None
            }
        });
    let summary = Summary {
        preset: config.preset.clone(),
        evaluated_on: config.evaluated_on().into(),
        test_accuracy: last.test_accuracy,
        test_accuracy_ema: last.test_accuracy_ema.unwrap_or(last.test_accuracy),
        epsilon,
        delta: plan.delta,
        accountant: plan.accountant.name().to_string(),
        epsilon_rdp: epsilon_by(AccountantKind::Rdp, plan, steps),
        epsilon_pld: epsilon_by(AccountantKind::Pld, plan, steps),
        noise_multiplier: plan.noise_multiplier,
        sampling_rate: plan.sampling_rate,
        steps,
        lost_steps: session.lost_steps,
        dataset_size: ctx.split.train.len(),
        batch_size: config.batch_size,
        clip_norm: config.clip_norm,
        augmult: config.augmult,
        seeded: config.seed.is_some(),
        wall_s,
        epoch_s: wall_s / epochs,
        epoch_train_s: step_seconds / epochs,
        preset_full_run_epsilon: preset(&config.preset)?.full_run_epsilon()?,
        class_names: ctx.record.class_names.clone(),
        peers,
        audit,
    };
    report::write_summary(&run.dir, &summary)?;
    if let Err(e) = report::write_plots(
        &run.dir,
        &config.preset,
        &summary.evaluated_on,
        summary.audit.as_ref().map(|a| a.epsilon_lower_bound),
    ) {
        eprintln!("warning: {e}");
    }
    Ok(summary)
}
