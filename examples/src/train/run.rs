//! The training loop: sample (Poisson) → augment K views → clip per example → noise →
//! update → evaluate, checkpoint and report.

use super::classifier::Classifier;
use super::config::{Finetune, RunConfig};
use crate::augment::Augment;
use crate::data::{read_cifar10, read_fashion_mnist, ImageSet, Split};
use crate::error::{Result, TrainError};
use crate::presets::{plan, preset, Dataset, ModelKind, PrivacyPlan};
use crate::report::{self, Evaluation, Summary};
use burn::module::AutodiffModule;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{Optimizer, SgdConfig};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, DpEvent, NeighboringRelation};
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{Budget, DpOptimizer, DpSgdConfig};
use dp_models::finetune::{freeze_nfnet, replace_nfnet_head, upsample};
use dp_models::{load_safetensors, KeyLayout, NfNet, TanhCnn, WideResNetConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's CUDA backend (needs a build with `--features cuda`).
    Cuda,
}

/// What `run.json` in a run directory holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The settings.
    pub config: RunConfig,
    /// σ, q, steps and the planned ε.
    pub plan: PrivacyPlan,
    /// Seed of the augmentation randomness.
    pub augment_seed: u64,
}

/// Files of a run directory.
pub struct RunDir {
    /// The directory.
    pub dir: PathBuf,
}

impl RunDir {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// `run.json`.
    pub fn record(&self) -> PathBuf {
        self.file("run.json")
    }
    /// `checkpoint.dpck`.
    pub fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint.dpck")
    }
    /// `privacy-journal.json`.
    pub fn journal(&self) -> PathBuf {
        self.file("privacy-journal.json")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.file("summary.json")
    }
}

/// Reads the settings of the run in `dir` (for `--resume`).
pub fn read_run_record(dir: &Path) -> Result<RunRecord> {
    let run = RunDir {
        dir: dir.to_path_buf(),
    };
    let path = run.record();
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::RunDirectory(format!(
            "cannot resume {}: {} ({e}); start a new run with --preset",
            dir.display(),
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::malformed(&path, e.to_string()))
}

/// Options of [`train`] that are not part of the run's identity.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue the run in `out` instead of starting one.
    pub resume: bool,
    /// Device.
    pub device: DeviceChoice,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
    /// Print a line per evaluation on stderr.
    pub verbose: bool,
    /// Stop after this many steps in this invocation (evaluated and checkpointed; continue
    /// with `resume`), e.g. to fit a long run into time-boxed sessions.
    pub pause_after: Option<u64>,
}

/// How [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The run is complete.
    Finished(Summary),
    /// Stopped by `pause_after`; resume to continue.
    Paused {
        /// Steps charged so far.
        steps: u64,
        /// ε spent so far.
        epsilon: f64,
    },
}

fn load_data(config: &RunConfig) -> Result<Split> {
    match config.dataset {
        Dataset::FashionMnist => read_fashion_mnist(&config.data_dir),
        Dataset::Cifar10 => read_cifar10(&config.data_dir),
    }
}

fn os_seed() -> Result<u64> {
    use rand::Rng;
    Ok(dp_core::rng::SecureRng::from_os()?.inner().next_u64())
}

/// Runs (or resumes) private training; returns its summary. On success the run directory
/// holds `run.json`, `checkpoint.dpck`, `privacy-journal.json`, `metrics.jsonl`,
/// `train_loss.csv`, `summary.json` and the plots.
pub fn train(config: Option<RunConfig>, options: &TrainOptions) -> Result<Outcome> {
    let run = RunDir {
        dir: options.out.clone(),
    };
    if options.pause_after == Some(0) {
        return Err(TrainError::Usage(
            "--pause-after 0 must be at least 1".into(),
        ));
    }
    let (record, split) = if options.resume {
        if config.is_some() {
            return Err(TrainError::Usage(
                "--resume continues the run in --out with its saved settings: drop the other settings".into(),
            ));
        }
        if run.summary().exists() {
            return Err(TrainError::RunDirectory(format!(
                "{} holds a finished run (summary.json); nothing to resume",
                run.dir.display()
            )));
        }
        let record = read_run_record(&run.dir)?;
        let split = load_data(&record.config)?;
        if split.train.len() as u64 * record.config.batch_size as u64 == 0 {
            return Err(TrainError::Usage("empty training set".into()));
        }
        (record, split)
    } else {
        let config = config.ok_or_else(|| TrainError::Usage("--preset is required".into()))?;
        let occupied = std::fs::read_dir(&run.dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if occupied {
            return Err(TrainError::RunDirectory(format!(
                "{} is not empty: pass --resume to continue the run there, or choose another --out",
                run.dir.display()
            )));
        }
        let split = load_data(&config)?;
        let steps = config.length.steps(split.train.len(), config.batch_size)?;
        let plan = plan(
            config.noise,
            config.batch_size,
            split.train.len() as u64,
            steps,
            config.delta,
            config.accountant,
        )?;
        let augment_seed = match config.seed {
            Some(seed) => seed,
            None => os_seed()?,
        };
        let record = RunRecord {
            config,
            plan,
            augment_seed,
        };
        std::fs::create_dir_all(&run.dir).map_err(|e| TrainError::io(&run.dir, e))?;
        let text =
            serde_json::to_string_pretty(&record).map_err(|e| TrainError::Usage(e.to_string()))?;
        std::fs::write(run.record(), text + "\n").map_err(|e| TrainError::io(run.record(), e))?;
        report::append_line(&run.dir.join("train_loss.csv"), "step,loss")?;
        (record, split)
    };
    match options.device {
        DeviceChoice::Cpu => on_backend::<burn::backend::Autodiff<burn::backend::Flex>>(
            &record,
            &split,
            &run,
            options,
            &Default::default(),
        ),
        DeviceChoice::Cuda => cuda(&record, &split, &run, options),
    }
}

#[cfg(feature = "cuda")]
fn cuda(
    record: &RunRecord,
    split: &Split,
    run: &RunDir,
    options: &TrainOptions,
) -> Result<Outcome> {
    dp_core::device::check_cuda(0)?;
    let device = burn::backend::cuda::CudaDevice::new(0);
    on_backend::<burn::backend::Autodiff<burn::backend::Cuda>>(record, split, run, options, &device)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: &RunRecord, _: &Split, _: &RunDir, _: &TrainOptions) -> Result<Outcome> {
    Err(TrainError::Usage(
        "--device cuda needs a build with CUDA support: cargo run --release --features cuda -p examples --bin dp-train -- ...".into(),
    ))
}

fn on_backend<AB: AutodiffBackend>(
    record: &RunRecord,
    split: &Split,
    run: &RunDir,
    options: &TrainOptions,
    device: &AB::Device,
) -> Result<Outcome> {
    let classes = split.train.classes;
    if let Some(seed) = record.config.seed {
        // Reproducible initialization (and stochastic depth) for seeded runs.
        AB::seed(device, seed);
    }
    match record.config.model {
        ModelKind::TanhCnn => fit(
            TanhCnn::<AB>::new(classes, device)?,
            record,
            split,
            run,
            options,
            device,
        ),
        ModelKind::WideResNet { depth, width } => {
            let model = WideResNetConfig::new(depth, width, classes).init::<AB>(device)?;
            fit(model, record, split, run, options, device)
        }
        ModelKind::NfNet => {
            let finetune = record
                .config
                .finetune
                .as_ref()
                .ok_or_else(|| TrainError::Usage("nfnet-finetune needs --checkpoint".into()))?;
            fit(
                pretrained_nfnet::<AB>(finetune, classes, device)?,
                record,
                split,
                run,
                options,
                device,
            )
        }
    }
}

/// Classes of the head in a timm NFNet checkpoint (`head.fc.weight` is `[classes, features]`).
fn checkpoint_classes(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| TrainError::malformed(path, format!("not a safetensors file: {e}")))?;
    let head = metadata.info("head.fc.weight").ok_or_else(|| {
        TrainError::malformed(path, "no head.fc.weight: not a timm NFNet checkpoint")
    })?;
    head.shape
        .first()
        .copied()
        .ok_or_else(|| TrainError::malformed(path, "head.fc.weight has no shape"))
}

/// A pretrained NFNet with a new zero head for `classes` and the requested stages frozen.
pub fn pretrained_nfnet<B: Backend>(
    finetune: &Finetune,
    classes: usize,
    device: &B::Device,
) -> Result<NfNet<B>> {
    let pretrained_classes = checkpoint_classes(&finetune.checkpoint)?;
    let model = finetune
        .variant
        .config()
        .with_input_size(finetune.resolution)
        .with_num_classes(pretrained_classes)
        .init::<B>(device)?;
    let model = load_safetensors(model, &finetune.checkpoint, KeyLayout::Timm, device)?;
    let model = replace_nfnet_head(model, classes, device)?;
    Ok(freeze_nfnet(model, finetune.trainable_stages, true))
}

/// A batch as tensors on `device` (upsampled to `resolution` if set).
fn tensors<B: Backend>(
    pixels: Vec<f32>,
    labels: Vec<i64>,
    shape: [usize; 3],
    resolution: Option<usize>,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let n = labels.len();
    let x = Tensor::<B, 4>::from_data(
        TensorData::new(pixels, [n, shape[0], shape[1], shape[2]]),
        device,
    );
    let x = match resolution {
        Some(size) => upsample(x, size),
        None => x,
    };
    (x, Tensor::from_data(TensorData::new(labels, [n]), device))
}

/// Test accuracy and mean loss of `model` on `set`.
pub fn evaluate<B: Backend, M: Classifier<B>>(
    model: &M,
    set: &ImageSet,
    augment: &Augment,
    resolution: Option<usize>,
    device: &B::Device,
) -> (f64, f64) {
    let (mut correct, mut loss) = (0usize, 0f64);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(500) {
        let (pixels, labels) = augment.batch(set, chunk, 0, 0);
        let (x, y) = tensors::<B>(pixels, labels, set.shape, resolution, device);
        let logits = model.logits(x);
        loss += cross_entropy_per_row(logits.clone(), y.clone())
            .sum()
            .into_scalar()
            .elem::<f64>();
        let predicted = logits.argmax(1).reshape([chunk.len()]);
        correct += predicted.equal(y).int().sum().into_scalar().elem::<i64>() as usize;
    }
    let n = set.len().max(1) as f64;
    (correct as f64 / n, loss / n)
}

fn sgd<AB: AutodiffBackend, M: AutodiffModule<AB>>(momentum: f64) -> impl Optimizer<M, AB> {
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

fn epsilon_pld(plan: &PrivacyPlan, steps: u64) -> Option<f64> {
    let mut accountant = AccountantConfig::default_for(AccountantKind::Pld)
        .build(NeighboringRelation::AddOrRemoveOne)
        .ok()?;
    accountant
        .compose(
            &DpEvent::poisson_gaussian(plan.sampling_rate, plan.noise_multiplier)
                .self_composed(steps),
        )
        .ok()?;
    accountant.epsilon(plan.delta).ok()
}

fn bar(total: u64, position: u64, visible: bool) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(position);
    bar
}

fn fit<AB, M>(
    model: M,
    record: &RunRecord,
    split: &Split,
    run: &RunDir,
    options: &TrainOptions,
    device: &AB::Device,
) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
{
    let config = &record.config;
    let plan = &record.plan;
    let started = Instant::now();
    let dataset_size = split.train.len() as u64;
    let resolution = config
        .finetune
        .as_ref()
        .map(|f| f.resolution)
        .filter(|&r| r != split.train.shape[1]);
    let augment = config.augmentation(split.train.shape[0]);
    let eval_augment = augment.eval_only();
    let (mut model, mut optimizer, mut sampler, mut wall_before, lost_steps) = if options.resume {
        let resumed = DpOptimizer::resume(
            run.checkpoint(),
            Some(&run.journal()),
            model,
            sgd::<AB, M>(config.momentum),
        )?;
        let sampler = match &resumed.sampler {
            Some(state) => PoissonSampler::from_state(state)?,
            // Steps were charged after the checkpoint: replaying its sampler would reuse
            // their batches, so draw from fresh OS entropy.
            None => PoissonSampler::new(dataset_size, plan.sampling_rate)?,
        };
        if resumed.lost_steps > 0 && options.verbose {
            eprintln!(
                "resuming at step {}: {} step(s) after the last checkpoint were lost; their privacy cost is kept",
                resumed.optimizer.steps(),
                resumed.lost_steps
            );
        }
        let wall = resumed
            .extra
            .get("wall_s")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        (
            resumed.model,
            resumed.optimizer.with_journal(run.journal()),
            sampler,
            wall,
            resumed.lost_steps,
        )
    } else {
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
            DpOptimizer::new(&model, sgd::<AB, M>(config.momentum), dp_config, accountant)?
                .with_journal(run.journal());
        let (optimizer, sampler) = match config.seed {
            Some(seed) => (
                optimizer.with_noise(GaussianNoise::seeded(seed)),
                PoissonSampler::seeded(dataset_size, plan.sampling_rate, seed.wrapping_add(1))?,
            ),
            None => (
                optimizer,
                PoissonSampler::new(dataset_size, plan.sampling_rate)?,
            ),
        };
        optimizer.save_checkpoint(
            run.checkpoint(),
            &model,
            Some(sampler.state()),
            serde_json::json!({ "wall_s": 0.0 }),
        )?;
        (model, optimizer, sampler, 0.0, 0)
    };

    let steps_per_epoch = ((1.0 / plan.sampling_rate).round() as u64).max(1);
    let eval_every = if config.eval_every > 0 {
        config.eval_every
    } else {
        steps_per_epoch
    };
    let progress = bar(plan.steps, optimizer.steps(), options.progress);
    let (mut loss_sum, mut loss_rows) = (0f64, 0usize);
    let mut last: Option<Evaluation> = None;
    let mut last_loss = f64::NAN;
    let mut train_s = 0f64;
    let stop_at = options.pause_after.map(|n| optimizer.steps() + n);
    while optimizer.steps() < plan.steps {
        let step_started = Instant::now();
        let batch = sampler.next_batch();
        let step_index = optimizer.steps();
        let mut step = optimizer.begin_step(&batch)?;
        let (sum, rows) = (Cell::new(0f64), Cell::new(0usize));
        for indices in batch.micro_batches(config.micro_batch) {
            let (pixels, labels) =
                augment.batch(&split.train, indices, record.augment_seed, step_index);
            let n_rows = labels.len();
            let (x, y) = tensors::<AB>(pixels, labels, split.train.shape, resolution, device);
            optimizer.accumulate(&mut step, &model, n_rows, |m, r| {
                let losses = cross_entropy_per_row(
                    m.train_logits(x.clone().slice(r.clone())),
                    y.clone().slice(r.clone()),
                );
                sum.set(sum.get() + losses.clone().sum().into_scalar().elem::<f64>());
                rows.set(rows.get() + r.len());
                losses
            })?;
        }
        model = optimizer.finish_step(step, model, config.learning_rate)?;
        let done = optimizer.steps();
        train_s += step_started.elapsed().as_secs_f64();
        if rows.get() > 0 {
            last_loss = sum.get() / rows.get() as f64;
            loss_sum += sum.get();
            loss_rows += rows.get();
            report::append_line(
                &run.dir.join("train_loss.csv"),
                &format!("{done},{last_loss}"),
            )?;
        }
        progress.set_position(done);
        let pausing = stop_at == Some(done) && done < plan.steps;
        if done % eval_every == 0 || done == plan.steps || pausing {
            let valid = model.valid();
            let (test_accuracy, test_loss) =
                evaluate(&valid, &split.test, &eval_augment, resolution, device);
            let test_accuracy_ema = optimizer
                .ema_model()
                .map(|ema| evaluate(ema, &split.test, &eval_augment, resolution, device).0);
            let epsilon = optimizer.epsilon(plan.delta)?;
            let wall_s = wall_before + started.elapsed().as_secs_f64();
            let evaluation = Evaluation {
                step: done,
                epoch: done as f64 * plan.sampling_rate,
                epsilon,
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
            report::append_evaluation(&run.dir, &evaluation)?;
            optimizer.save_checkpoint(
                run.checkpoint(),
                &model,
                Some(sampler.state()),
                serde_json::json!({ "wall_s": wall_s }),
            )?;
            let ema_text = test_accuracy_ema
                .map(|a| format!(" (EMA {:.2}%)", 100.0 * a))
                .unwrap_or_default();
            let line = format!(
                "epoch {:.1}, step {done}/{}: test accuracy {:.2}%{ema_text}, ε = {epsilon:.3} at δ = {}, train loss {:.4}",
                evaluation.epoch,
                plan.steps,
                100.0 * test_accuracy,
                plan.delta,
                evaluation.train_loss
            );
            if options.verbose {
                progress.println(line);
            }
            (loss_sum, loss_rows, train_s) = (0.0, 0, 0.0);
            last = Some(evaluation);
        }
        // ε for the bar: every step with RDP (well under a millisecond); with PLD, as of the
        // last evaluation (a PLD query costs milliseconds).
        let epsilon_now = match (plan.accountant, &last) {
            (AccountantKind::Pld, Some(e)) => e.epsilon,
            _ => optimizer.epsilon(plan.delta)?,
        };
        progress.set_message(format!(
            "loss {last_loss:.3} | test acc {} | ε {epsilon_now:.3}",
            last.as_ref()
                .map(|e| format!("{:.1}%", 100.0 * e.test_accuracy))
                .unwrap_or_else(|| "-".into()),
        ));
        if pausing {
            progress.finish_and_clear();
            return Ok(Outcome::Paused {
                steps: done,
                epsilon: optimizer.epsilon(plan.delta)?,
            });
        }
    }
    progress.finish_and_clear();

    let last = match last {
        Some(e) => e,
        // Resumed at the very end, before the summary was written: evaluate once more.
        None => {
            let (test_accuracy, test_loss) = evaluate(
                &model.valid(),
                &split.test,
                &eval_augment,
                resolution,
                device,
            );
            Evaluation {
                step: optimizer.steps(),
                epoch: optimizer.steps() as f64 * plan.sampling_rate,
                epsilon: optimizer.epsilon(plan.delta)?,
                train_loss: f64::NAN,
                test_accuracy,
                test_loss,
                test_accuracy_ema: optimizer
                    .ema_model()
                    .map(|ema| evaluate(ema, &split.test, &eval_augment, resolution, device).0),
                wall_s: wall_before + started.elapsed().as_secs_f64(),
                train_s: 0.0,
            }
        }
    };
    wall_before += started.elapsed().as_secs_f64();
    let steps = optimizer.steps();
    let epochs = (steps as f64 * plan.sampling_rate).max(1e-12);
    let step_seconds: f64 = report::read_evaluations(&run.dir)?
        .iter()
        .map(|e| e.train_s)
        .sum();
    let summary = Summary {
        preset: config.preset.clone(),
        test_accuracy: last.test_accuracy,
        test_accuracy_ema: last.test_accuracy_ema.unwrap_or(last.test_accuracy),
        epsilon: optimizer.epsilon(plan.delta)?,
        delta: plan.delta,
        accountant: plan.accountant.name().to_string(),
        epsilon_pld: epsilon_pld(plan, steps),
        noise_multiplier: plan.noise_multiplier,
        sampling_rate: plan.sampling_rate,
        steps,
        lost_steps,
        dataset_size: split.train.len(),
        batch_size: config.batch_size,
        clip_norm: config.clip_norm,
        augmult: config.augmult,
        wall_s: wall_before,
        epoch_s: wall_before / epochs,
        epoch_train_s: step_seconds / epochs,
        preset_full_run_epsilon: preset(&config.preset)?.full_run_epsilon()?,
    };
    report::write_summary(&run.dir, &summary)?;
    if let Err(e) = report::write_plots(&run.dir, &config.preset) {
        eprintln!("warning: {e}");
    }
    Ok(Outcome::Finished(summary))
}
