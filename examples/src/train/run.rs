//! A run from the command line's point of view: every check that can fail is made before the
//! first step is charged (settings, data, device, model, run directory, the files a resume
//! reads), then the backend is chosen and the loop runs.

use super::classifier::Classifier;
use super::config::{Finetune, RunConfig};
use super::devices::Devices;
use super::fit::{fit, Context};
use super::node::NetworkOptions;
use super::parallel::{train_on_devices, train_over_network};
use super::preflight::{check_logs, check_split, probe_model, Logs};
use super::record::{check_same_data, read_run_record_file, DataFingerprint, RunRecord};
use super::run_dir::RunDir;
use super::session::{resume, sgd, start};
use crate::data::{
    read_cifar10, read_fashion_mnist, read_image_folder, ImageSet, InputShape, Split,
};
use crate::error::{Result, TrainError};
use crate::features::attach_features;
use crate::presets::{plan, Dataset, ModelKind, SCATTER_GROUPS};
use crate::report::Summary;
use burn::module::{AutodiffModule, ModuleDisplay};
use burn::tensor::backend::{AutodiffBackend, Backend};
use dp_core::audit::Audited;
use dp_core::collective::NetworkPeer;
use dp_models::finetune::{freeze_nfnet, replace_nfnet_head};
use dp_models::{load_safetensors, KeyLayout, NfNet, ScatterNetConfig, TanhCnn, WideResNetConfig};
use std::path::{Path, PathBuf};

/// Where the run executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// burn's flex CPU backend.
    Cpu,
    /// burn's CUDA backend (needs a build with `--features cuda`).
    Cuda,
    /// burn's wgpu backend on the best Vulkan, Metal or DX12 adapter (needs a build with
    /// `--features wgpu`).
    Wgpu,
}

/// Options of [`train`] that are not part of the run's identity.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The run directory.
    pub out: PathBuf,
    /// Continue the run in `out` instead of starting one.
    pub resume: bool,
    /// The devices, one data-parallel peer each (one device: an ordinary run).
    pub devices: Devices,
    /// Draw a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Report each evaluation on stderr (a line above the bar, or a plain line without one).
    pub verbose: bool,
    /// Stop after this many steps in this invocation (evaluated and checkpointed; continue
    /// with `resume`), e.g. to fit a long run into time-boxed sessions.
    pub pause_after: Option<u64>,
    /// Peer 0 of a group of processes (see [`NetworkOptions`]); the others run
    /// [`super::follow_node`].
    pub network: Option<NetworkOptions>,
}

/// How [`train`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The run is complete.
    Finished(Box<Summary>),
    /// Stopped by `pause_after`; resume to continue.
    Paused {
        /// Steps charged so far.
        steps: u64,
        /// ε spent so far.
        epsilon: f64,
    },
}

/// The warning a seeded run prints when it starts.
pub const SEEDED_WARNING: &str = "warning: --seed makes the noise and the batches reproducible: \
anyone who knows the seed (it is stored in the run's files) can remove the noise; for \
experiments only, never release a seeded run's model as private";

/// The input of `config`'s model: what an image folder is resized and converted to.
pub fn input_shape(config: &RunConfig) -> InputShape {
    let size = match (config.model, &config.finetune) {
        (ModelKind::TanhCnn, _) => 28,
        (ModelKind::NfNet, Some(f)) => f.resolution,
        (ModelKind::WideResNet { .. } | ModelKind::NfNet, _) => 32,
        (ModelKind::ScatterNet { channels: 1, .. }, _) => 28,
        (ModelKind::ScatterNet { .. }, _) => 32,
    };
    InputShape {
        channels: super::architecture::model_channels(config.model),
        size,
    }
}

pub(super) fn load_data(config: &RunConfig) -> Result<Split> {
    let split = match config.dataset {
        Dataset::FashionMnist => read_fashion_mnist(&config.data_dir),
        Dataset::Cifar10 => read_cifar10(&config.data_dir),
        Dataset::ImageFolder => read_image_folder(&config.data_dir, input_shape(config)),
    }?;
    check_split(&split, &config.data_dir)?;
    let mut split = match config.validation {
        Some(held) => hold_out(split, held, &config.data_dir)?,
        None => split,
    };
    let channels = split.train.shape[0];
    attach_features(&mut split, config.model, &config.augmentation(channels))?;
    Ok(split)
}

/// The split that trains on all but the last `held` training images and evaluates on those
/// (the test set is set aside).
fn hold_out(split: Split, held: usize, data_dir: &Path) -> Result<Split> {
    let n = split.train.len();
    if held >= n {
        return Err(TrainError::Usage(format!(
            "--validation {held} must be below the {n} training images"
        )));
    }
    let per = split.train.shape.iter().product::<usize>();
    let keep = n - held;
    let set = |pixels: &[u8], labels: &[u8]| {
        ImageSet::new(
            pixels.to_vec(),
            labels.to_vec(),
            split.train.shape,
            split.train.classes,
            data_dir,
        )
    };
    let train = &split.train;
    Ok(Split {
        test: set(&train.pixels[keep * per..], &train.labels[keep..])?,
        train: set(&train.pixels[..keep * per], &train.labels[..keep])?,
        class_names: split.class_names,
        features: None,
    })
}

fn os_seed() -> Result<u64> {
    use rand::Rng;
    Ok(dp_core::rng::SecureRng::from_os()?.inner().next_u64())
}

/// How the loop starts.
enum Start {
    /// A new run: nothing is written until every check has passed.
    New,
    /// A resumed run, locked, its files checked.
    Resume {
        lock: std::fs::File,
        record_digest: String,
        logs: Logs,
    },
}

/// A run whose settings and data have passed every check that needs no backend.
struct Prepared {
    record: RunRecord,
    split: Split,
    start: Start,
}

fn prepare_new(config: Option<RunConfig>, run: &RunDir) -> Result<Prepared> {
    let config = config.ok_or_else(|| TrainError::Usage("--preset is required".into()))?;
    run.check_available()?;
    let split = load_data(&config)?;
    if let Some(audit) = config.audit.filter(|a| a.canaries > split.train.len()) {
        return Err(TrainError::Usage(format!(
            "--audit {} must be at most the {} training examples: canaries are extra examples, \
             and the update is divided by the expected batch over both",
            audit.canaries,
            split.train.len()
        )));
    }
    let steps = config.length.steps(split.train.len(), config.batch_size)?;
    let plan = plan(
        config.noise,
        config.batch_size,
        split.train.len() as u64,
        steps,
        config.delta,
        config.accountant,
    )?;
    let record = RunRecord {
        config,
        plan,
        data: DataFingerprint::of(&split),
        class_names: split.class_names.clone(),
    };
    Ok(Prepared {
        record,
        split,
        start: Start::New,
    })
}

fn prepare_resume(config: Option<RunConfig>, run: &RunDir) -> Result<Prepared> {
    if config.is_some() {
        return Err(TrainError::Usage(
            "--resume continues the run in --out with its saved settings: drop the other settings"
                .into(),
        ));
    }
    let lock = run.open()?;
    if run.summary().exists() {
        return Err(TrainError::RunDirectory(format!(
            "{} holds a finished run (summary.json); nothing to resume",
            run.dir.display()
        )));
    }
    let (record, record_digest) = read_run_record_file(&run.record())?;
    if !run.checkpoint().exists() {
        return Err(TrainError::RunDirectory(format!(
            "cannot resume {}: it has no checkpoint, so the run never took a step; start it \
             again with --preset (the directory is accepted)",
            run.dir.display()
        )));
    }
    let split = load_data(&record.config)?;
    check_same_data(&record, &split)?;
    let logs = check_logs(run)?;
    Ok(Prepared {
        record,
        split,
        start: Start::Resume {
            lock,
            record_digest,
            logs,
        },
    })
}

/// Runs (or resumes) private training; returns its summary. On success the run directory
/// holds `run.json`, `checkpoint.dpck`, `privacy-journal.json`, `metrics.jsonl`,
/// `train_loss.csv`, `model.safetensors` (and `model-ema.safetensors` with an EMA),
/// `summary.json` and the plots, all readable by their owner only.
pub fn train(config: Option<RunConfig>, options: &TrainOptions) -> Result<Outcome> {
    if options.pause_after == Some(0) {
        return Err(TrainError::Usage(
            "--pause-after 0 must be at least 1".into(),
        ));
    }
    if options.network.is_some() && options.devices.peers() > 1 {
        return Err(TrainError::Usage(format!(
            "a process of a network group trains on one device, not --devices {}: start one \
             process per device",
            options.devices
        )));
    }
    let run = RunDir::new(&options.out);
    let prepared = if options.resume {
        prepare_resume(config, &run)?
    } else {
        prepare_new(config, &run)?
    };
    if prepared.record.config.seed.is_some() {
        eprintln!("{SEEDED_WARNING}");
    }
    let grouped = options.devices.peers() > 1 || options.network.is_some();
    if prepared.record.config.audit.is_some() && grouped {
        return Err(TrainError::Usage(format!(
            "--audit runs on one device, not on a group ({}): its canaries' scores are read \
             on one replica",
            match &options.network {
                Some(n) => format!("{} nodes", n.nodes),
                None => format!("--devices {}", options.devices),
            }
        )));
    }
    let network = match &options.network {
        Some(n) if n.rank == 0 => Some(super::node::join(n)?),
        Some(n) => {
            return Err(TrainError::Usage(format!(
                "peer {} takes its settings from peer 0 (follow_node)",
                n.rank
            )))
        }
        None => None,
    };
    let outcome = on_devices(prepared, &run, options, network.as_ref());
    match (outcome, network) {
        (Ok(outcome), Some(peer)) => {
            peer.leave()?;
            Ok(outcome)
        }
        (outcome, _) => outcome,
    }
}

fn on_devices(
    prepared: Prepared,
    run: &RunDir,
    options: &TrainOptions,
    network: Option<&NetworkPeer>,
) -> Result<Outcome> {
    let devices = &options.devices;
    match devices.kind {
        DeviceChoice::Cpu => {
            let cpus = vec![Default::default(); devices.peers()];
            on_backend::<burn::backend::Autodiff<burn::backend::Flex>>(
                prepared, run, options, &cpus, network,
            )
        }
        DeviceChoice::Cuda => cuda(prepared, run, options, network),
        DeviceChoice::Wgpu => wgpu(prepared, run, options, network),
    }
}

#[cfg(feature = "wgpu")]
fn wgpu(
    prepared: Prepared,
    run: &RunDir,
    options: &TrainOptions,
    network: Option<&NetworkPeer>,
) -> Result<Outcome> {
    use super::devices::DeviceList;
    use burn::backend::wgpu::WgpuDevice;
    let adapter = dp_core::device::init_wgpu()?;
    let devices = match &options.devices.list {
        DeviceList::Default(n) => {
            eprintln!("wgpu adapter: {adapter}");
            vec![WgpuDevice::default(); *n]
        }
        DeviceList::Indices(ids) => ids.iter().map(|&i| WgpuDevice::DiscreteGpu(i)).collect(),
    };
    on_backend::<burn::backend::Autodiff<dp_core::device::Wgpu>>(
        prepared, run, options, &devices, network,
    )
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: Prepared, _: &RunDir, _: &TrainOptions, _: Option<&NetworkPeer>) -> Result<Outcome> {
    Err(TrainError::Usage(
        "--device wgpu needs a build with wgpu support: cargo run --release --features wgpu -p examples --bin dp-train -- ...".into(),
    ))
}

#[cfg(feature = "cuda")]
fn cuda(
    prepared: Prepared,
    run: &RunDir,
    options: &TrainOptions,
    network: Option<&NetworkPeer>,
) -> Result<Outcome> {
    use super::devices::DeviceList;
    let indices = match &options.devices.list {
        DeviceList::Default(n) => vec![0; *n],
        DeviceList::Indices(ids) => ids.clone(),
    };
    let mut devices = Vec::with_capacity(indices.len());
    for i in indices {
        dp_core::device::check_cuda(i)?;
        devices.push(burn::backend::cuda::CudaDevice::new(i));
    }
    on_backend::<burn::backend::Autodiff<burn::backend::Cuda>>(
        prepared, run, options, &devices, network,
    )
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: Prepared, _: &RunDir, _: &TrainOptions, _: Option<&NetworkPeer>) -> Result<Outcome> {
    Err(TrainError::Usage(
        "--device cuda needs a build with CUDA support: cargo run --release --features cuda -p examples --bin dp-train -- ...".into(),
    ))
}

/// What to do with the run's model once it is built, whatever its architecture.
pub(super) trait ModelTask<AB: AutodiffBackend> {
    /// The task's result.
    type Output;
    /// Does it with `model`.
    fn run<M>(self, model: M) -> Result<Self::Output>
    where
        M: AutodiffModule<AB> + Classifier<AB> + ModuleDisplay,
        M::InnerModule: Classifier<AB::InnerBackend> + ModuleDisplay;
}

/// Builds the model of `config` for `classes` on `device` and gives it to `task`.
pub(super) fn with_model<AB: AutodiffBackend, T: ModelTask<AB>>(
    config: &RunConfig,
    classes: usize,
    device: &AB::Device,
    task: T,
) -> Result<T::Output> {
    match config.model {
        ModelKind::TanhCnn => task.run(TanhCnn::<AB>::new(classes, device)?),
        ModelKind::WideResNet { depth, width } => {
            task.run(WideResNetConfig::new(depth, width, classes).init::<AB>(device)?)
        }
        ModelKind::NfNet => {
            let finetune = config
                .finetune
                .as_ref()
                .ok_or_else(|| TrainError::Usage("nfnet-finetune needs --checkpoint".into()))?;
            task.run(pretrained_nfnet::<AB>(finetune, classes, device)?)
        }
        ModelKind::ScatterNet { head, .. } => {
            let image = input_shape(config);
            let features = crate::features::model_input_shape(
                config.model,
                [image.channels, image.size, image.size],
            )?;
            task.run(
                ScatterNetConfig::new(features, SCATTER_GROUPS, head, classes)
                    .init::<AB>(device)?,
            )
        }
    }
}

/// Where a run's peers are, besides peer 0 on `devices[0]`.
struct Launch<'a, AB: AutodiffBackend> {
    prepared: Prepared,
    run: &'a RunDir,
    options: &'a TrainOptions,
    devices: &'a [AB::Device],
    network: Option<&'a NetworkPeer>,
}

impl<AB: AutodiffBackend> ModelTask<AB> for Launch<'_, AB> {
    type Output = Outcome;

    fn run<M>(self, model: M) -> Result<Outcome>
    where
        M: AutodiffModule<AB> + Classifier<AB> + ModuleDisplay,
        M::InnerModule: Classifier<AB::InnerBackend> + ModuleDisplay,
    {
        launch_model(model, self)
    }
}

/// Builds the run's model on `devices[0]` (peer 0's) and launches it.
fn on_backend<AB: AutodiffBackend>(
    prepared: Prepared,
    run: &RunDir,
    options: &TrainOptions,
    devices: &[AB::Device],
    network: Option<&NetworkPeer>,
) -> Result<Outcome> {
    let device = devices
        .first()
        .ok_or_else(|| TrainError::Usage("--devices names no device".into()))?;
    let config = prepared.record.config.clone();
    let classes = prepared.split.train.classes;
    if let Some(seed) = config.seed {
        // Reproducible initialization (and stochastic depth) for seeded runs.
        AB::seed(device, seed);
    }
    let launch: Launch<'_, AB> = Launch {
        prepared,
        run,
        options,
        devices,
        network,
    };
    with_model(&config, classes, device, launch)
}

/// [`launch`] with the model alone, or beside the audit block of `--audit`.
fn launch_model<AB, M>(model: M, launch: Launch<AB>) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB> + ModuleDisplay,
    M::InnerModule: Classifier<AB::InnerBackend> + ModuleDisplay,
{
    match launch.prepared.record.config.audit {
        Some(audit) => {
            let block = dp_core::audit::canary_block::<AB>(audit.canaries, &launch.devices[0]);
            self::launch(Audited { model, block }, launch)
        }
        None => self::launch(model, launch),
    }
}

/// Checks the model against the data, starts or resumes the session, and trains (on a
/// data-parallel group if there are several `devices` or a network group).
fn launch<AB, M>(model: M, launch: Launch<AB>) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
{
    let Launch {
        prepared,
        run,
        options,
        devices,
        network,
    } = launch;
    let device = &devices[0];
    let Prepared {
        record,
        split,
        start: how,
    } = prepared;
    let config = &record.config;
    let resolution = config
        .finetune
        .as_ref()
        .map(|f| f.resolution)
        .filter(|&r| r != split.train.shape[1]);
    probe_model(&model.valid(), &split, resolution, device)?;
    let augment_seed = match config.seed {
        Some(seed) => seed,
        None => os_seed()?,
    };
    let inner = sgd::<AB, M>(config.momentum);
    let (mut session, record_digest) = match how {
        Start::New => start(model, inner, &record, run)?,
        Start::Resume {
            lock,
            record_digest,
            logs,
        } => {
            let session = resume(
                model,
                inner,
                &record,
                &record_digest,
                &logs,
                run,
                lock,
                options.verbose,
            )?;
            (session, record_digest)
        }
    };
    // The white-box audit reads the block's released gradient every step.
    match (session.model.audit_block(), session.audit.is_some()) {
        (Some(block), true) => session.optimizer.watch(block),
        (None, false) => {}
        _ => {
            return Err(TrainError::Usage(
                "internal: an audit without its block (or a block without its audit)".into(),
            ))
        }
    }
    let ctx = Context {
        record: &record,
        record_digest: &record_digest,
        split: &split,
        run,
        options,
        augment_seed,
        resolution,
    };
    match (devices, network) {
        ([device], None) => fit(session, &ctx, None, device),
        ([device], Some(peer)) => train_over_network(session, &ctx, peer, device),
        (_, None) => train_on_devices(session, &ctx, devices),
        (_, Some(_)) => Err(TrainError::Usage(
            "a peer of a network group trains on one device: start one process per device".into(),
        )),
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

/// Reads the settings of the run in `dir` (for `--resume`).
pub fn read_run_record(dir: &Path) -> Result<RunRecord> {
    Ok(read_run_record_file(&RunDir::new(dir).record())?.0)
}

#[cfg(test)]
mod hold_out_tests {
    use super::*;

    #[test]
    fn validation_holds_out_the_last_training_images_and_trains_on_the_rest() {
        let set = |n: usize, first: u8| {
            ImageSet::new(
                (0..n).map(|i| first + i as u8).collect(),
                (0..n).map(|i| (i % 2) as u8).collect(),
                [1, 1, 1],
                2,
                Path::new("t"),
            )
            .unwrap()
        };
        let split = Split {
            train: set(5, 0),
            test: set(3, 100),
            class_names: vec!["a".into(), "b".into()],
            features: None,
        };
        let held = hold_out(split.clone(), 2, Path::new("t")).unwrap();
        assert_eq!(held.train.pixels, vec![0, 1, 2]);
        assert_eq!(held.test.pixels, vec![3, 4]);
        assert_eq!(held.test.labels, vec![1, 0]);
        let all = hold_out(split, 5, Path::new("t")).unwrap_err().to_string();
        assert!(all.contains("below the 5 training images"), "{all}");
    }
}
