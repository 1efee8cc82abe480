//! A run's settings: a preset with the command line's overrides, saved in the run directory
//! so that `--resume` continues with exactly the same settings.

use super::architecture::{model_channels, ModelChoice};
use super::audit::AuditConfig;
use crate::augment::Augment;
use crate::data::FASHION_MNIST_DIR;
use crate::error::{Result, TrainError};
use crate::presets::{Dataset, ModelKind, NoiseChoice, Preset};
use dp_accountant::audit::AuditMethod;
use dp_accountant::AccountantKind;
use dp_models::NfNetConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// Logical steps.
    Steps(u64),
    /// Epochs: steps = ⌈epochs · N / expected batch⌉.
    Epochs(f64),
}

impl Length {
    /// The number of steps for `dataset_size` examples at `batch_size`.
    pub fn steps(self, dataset_size: usize, batch_size: usize) -> Result<u64> {
        match self {
            Self::Steps(s) => Ok(s),
            Self::Epochs(e) if e > 0.0 && e.is_finite() => {
                Ok((e * dataset_size as f64 / batch_size.max(1) as f64).ceil() as u64)
            }
            Self::Epochs(e) => Err(TrainError::Usage(format!("--epochs {e} must be > 0"))),
        }
    }
}

/// Pretrained NFNet variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum NfNetVariant {
    /// The tiny test configuration (NfNetConfig::tiny).
    Tiny,
    /// dm_nfnet_f0.
    F0,
    /// dm_nfnet_f1.
    F1,
    /// dm_nfnet_f2.
    F2,
    /// dm_nfnet_f3.
    F3,
}

impl NfNetVariant {
    /// The architecture (with the pretrained resolution).
    pub fn config(self) -> NfNetConfig {
        match self {
            Self::Tiny => NfNetConfig::tiny(),
            Self::F0 => NfNetConfig::f0(),
            Self::F1 => NfNetConfig::f1(),
            Self::F2 => NfNetConfig::f2(),
            Self::F3 => NfNetConfig::f3(),
        }
    }
}

/// ImageNet's per-channel mean and std, with which timm's pretrained NFNets were trained.
pub const IMAGENET_MEAN_STD: [(f32, f32); 3] = [(0.485, 0.229), (0.456, 0.224), (0.406, 0.225)];

/// CIFAR-10's per-channel mean and std (of the training set, as published and used by common
/// CIFAR-10 pipelines).
pub const CIFAR_MEAN_STD: [(f32, f32); 3] = [(0.4914, 0.2470), (0.4822, 0.2435), (0.4465, 0.2616)];

/// `--normalize`: one `mean,std` for every channel or `m1,…,mC,s1,…,sC`, checked.
fn normalization(values: &[f32], channels: usize) -> Result<Vec<(f32, f32)>> {
    let pairs: Vec<(f32, f32)> = match values.len() {
        2 => vec![(values[0], values[1]); channels],
        n if n == 2 * channels => (0..channels)
            .map(|c| (values[c], values[channels + c]))
            .collect(),
        n => {
            return Err(TrainError::Usage(format!(
                "--normalize takes mean,std or {channels} means then {channels} stds for this \
                 model's {channels} channel(s), not {n} numbers"
            )))
        }
    };
    if let Some((m, sd)) = pairs
        .iter()
        .find(|(m, sd)| !(m.is_finite() && sd.is_finite() && *sd > 0.0))
    {
        return Err(TrainError::Usage(format!(
            "--normalize: mean {m} and std {sd} must be finite and std > 0"
        )));
    }
    Ok(pairs)
}

/// What private fine-tuning starts from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finetune {
    /// A safetensors checkpoint in timm's layout.
    pub checkpoint: PathBuf,
    /// Its architecture.
    pub variant: NfNetVariant,
    /// Stages left trainable (the head always trains).
    pub trainable_stages: usize,
    /// Input resolution (images are upsampled to it).
    pub resolution: usize,
}

/// Everything that defines a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The preset it started from.
    pub preset: String,
    /// Data.
    pub dataset: Dataset,
    /// Where the data files are.
    pub data_dir: PathBuf,
    /// Network.
    pub model: ModelKind,
    /// Expected logical batch size.
    pub batch_size: usize,
    /// Training length.
    pub length: Length,
    /// Learning rate.
    pub learning_rate: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// C.
    pub clip_norm: f64,
    /// K.
    pub augmult: usize,
    /// Crops and flips.
    pub augment: bool,
    /// Per-channel normalization with public constants.
    pub normalize: bool,
    /// σ, fixed or calibrated.
    pub noise: NoiseChoice,
    /// δ.
    pub delta: f64,
    /// Which accountant charges the run.
    pub accountant: AccountantKind,
    /// EMA decay.
    pub ema_decay: Option<f64>,
    /// Examples per physical micro-batch.
    pub micro_batch: usize,
    /// Seed for sampling, noise and augmentation; `None`: the operating system's entropy.
    pub seed: Option<u64>,
    /// Steps between evaluations (0: once per epoch).
    pub eval_every: u64,
    /// Pretrained start (NFNet presets).
    pub finetune: Option<Finetune>,
    /// Canaries trained alongside the data for a privacy audit (`--audit`).
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Per-channel (mean, std) of the input, given (`--normalize`) or published for the
    /// model; `None`: the preset's (`normalize`).
    #[serde(default)]
    pub normalization: Option<Vec<(f32, f32)>>,
    /// Training images held out as the evaluation set (`--validation`): the last ones.
    #[serde(default)]
    pub validation: Option<usize>,
}

/// Command-line changes to a preset (`None`: keep the preset's value).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--epochs`.
    pub epochs: Option<f64>,
    /// `--steps`.
    pub steps: Option<u64>,
    /// `--target-epsilon`.
    pub target_epsilon: Option<f64>,
    /// `--noise-multiplier`.
    pub noise_multiplier: Option<f64>,
    /// `--delta`.
    pub delta: Option<f64>,
    /// `--batch-size`.
    pub batch_size: Option<usize>,
    /// `--micro-batch`.
    pub micro_batch: Option<usize>,
    /// `--augmult`.
    pub augmult: Option<usize>,
    /// `--learning-rate`.
    pub learning_rate: Option<f64>,
    /// `--ema-decay` (0: no average).
    pub ema_decay: Option<f64>,
    /// `--accountant`.
    pub accountant: Option<AccountantKind>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--eval-every`.
    pub eval_every: Option<u64>,
    /// `--validation`.
    pub validation: Option<usize>,
    /// `--checkpoint` (pretrained weights).
    pub checkpoint: Option<PathBuf>,
    /// `--nfnet-variant`.
    pub nfnet_variant: Option<NfNetVariant>,
    /// `--trainable-stages`.
    pub trainable_stages: Option<usize>,
    /// `--resolution`.
    pub resolution: Option<usize>,
    /// `--audit` (canaries).
    pub audit: Option<usize>,
    /// `--audit-significance`.
    pub audit_significance: Option<f64>,
    /// `--audit-method`.
    pub audit_method: Option<AuditMethod>,
    /// `--dataset`.
    pub dataset: Option<Dataset>,
    /// `--model`.
    pub model: Option<ModelChoice>,
    /// `--normalize` (mean,std or C means then C stds).
    pub normalize: Option<Vec<f32>>,
}

fn positive(flag: &str, value: f64) -> Result<f64> {
    if value > 0.0 && value.is_finite() {
        Ok(value)
    } else {
        Err(TrainError::Usage(format!(
            "{flag} {value} must be > 0 and finite"
        )))
    }
}

fn at_least_one(flag: &str, value: usize) -> Result<usize> {
    if value >= 1 {
        Ok(value)
    } else {
        Err(TrainError::Usage(format!(
            "{flag} {value} must be at least 1"
        )))
    }
}

/// `--audit [M]` with its significance and method (which need it).
fn audit_config(o: &Overrides) -> Result<Option<AuditConfig>> {
    let Some(canaries) = o.audit else {
        if o.audit_significance.is_some() || o.audit_method.is_some() {
            return Err(TrainError::Usage(
                "--audit-significance and --audit-method need --audit".into(),
            ));
        }
        return Ok(None);
    };
    if canaries < AuditConfig::MIN_CANARIES {
        return Err(TrainError::Usage(format!(
            "--audit {canaries} must be at least {} canaries",
            AuditConfig::MIN_CANARIES
        )));
    }
    let significance = o
        .audit_significance
        .unwrap_or(AuditConfig::DEFAULT_SIGNIFICANCE);
    if !(significance > 0.0 && significance < 1.0) {
        return Err(TrainError::Usage(format!(
            "--audit-significance {significance} must be in (0, 1)"
        )));
    }
    Ok(Some(AuditConfig {
        canaries,
        significance,
        method: o.audit_method.unwrap_or(AuditMethod::Fdp),
    }))
}

impl RunConfig {
    /// The images the run evaluates on: `validation` with `--validation`, else `test`.
    pub fn evaluated_on(&self) -> &'static str {
        if self.validation.is_some() {
            "validation"
        } else {
            "test"
        }
    }

    /// `preset` changed by `o`, every value checked.
    pub fn new(preset: &Preset, o: Overrides) -> Result<Self> {
        let audit = audit_config(&o)?;
        let dataset = o.dataset.unwrap_or(preset.dataset);
        let model = o.model.map_or(preset.model, |m| m.kind);
        let nfnet_variant = o.model.and_then(|m| m.nfnet_variant).or(o.nfnet_variant);
        if dataset == Dataset::ImageFolder && o.data_dir.is_none() {
            return Err(TrainError::Usage(
                "--dataset image-folder needs --data-dir DIR (with DIR/train/<class>/ and \
                 DIR/test/<class>/)"
                    .into(),
            ));
        }
        let length = match (o.epochs, o.steps) {
            (Some(_), Some(_)) => {
                return Err(TrainError::Usage(
                    "give --epochs or --steps, not both".into(),
                ))
            }
            (Some(e), None) => Length::Epochs(positive("--epochs", e)?),
            (None, Some(0)) => {
                return Err(TrainError::Usage("--steps 0 must be at least 1".into()))
            }
            (None, Some(s)) => Length::Steps(s),
            (None, None) => Length::Steps(preset.steps),
        };
        let noise = match (o.target_epsilon, o.noise_multiplier) {
            (Some(_), Some(_)) => {
                return Err(TrainError::Usage(
                    "give --target-epsilon or --noise-multiplier, not both".into(),
                ))
            }
            (Some(e), None) => NoiseChoice::TargetEpsilon(positive("--target-epsilon", e)?),
            (None, Some(s)) => NoiseChoice::Fixed(positive("--noise-multiplier", s)?),
            (None, None) => preset.noise,
        };
        let delta = o.delta.unwrap_or(preset.delta);
        if !(delta > 0.0 && delta < 1.0) {
            return Err(TrainError::Usage(format!(
                "--delta {delta} must be in (0, 1)"
            )));
        }
        let learning_rate = positive(
            "--learning-rate",
            o.learning_rate.unwrap_or(preset.learning_rate),
        )?;
        let finetune = match model {
            ModelKind::NfNet => {
                let checkpoint = o.checkpoint.ok_or_else(|| {
                    TrainError::Usage(format!(
                        "preset {} fine-tunes pretrained weights: pass --checkpoint FILE.safetensors (timm's dm_nfnet_f* layout)",
                        preset.name
                    ))
                })?;
                let variant = nfnet_variant.unwrap_or(NfNetVariant::F0);
                let stages = o.trainable_stages.unwrap_or(4);
                if stages > 4 {
                    return Err(TrainError::Usage(format!(
                        "--trainable-stages {stages} must be at most 4"
                    )));
                }
                let resolution = o.resolution.unwrap_or(variant.config().input_size);
                if resolution < 32 {
                    return Err(TrainError::Usage(format!(
                        "--resolution {resolution} must be at least 32"
                    )));
                }
                Some(Finetune {
                    checkpoint,
                    variant,
                    trainable_stages: stages,
                    resolution,
                })
            }
            _ => {
                if o.checkpoint.is_some()
                    || o.nfnet_variant.is_some()
                    || o.trainable_stages.is_some()
                    || o.resolution.is_some()
                {
                    return Err(TrainError::Usage(format!(
                        "--checkpoint, --nfnet-variant, --trainable-stages and --resolution belong to nfnet-finetune, not {}",
                        preset.name
                    )));
                }
                None
            }
        };
        let default_dir = match dataset {
            Dataset::FashionMnist => PathBuf::from(FASHION_MNIST_DIR),
            Dataset::Cifar10 | Dataset::ImageFolder => PathBuf::from("data/cifar-10-batches-bin"),
        };
        let channels = model_channels(model);
        let augmult = at_least_one("--augmult", o.augmult.unwrap_or(preset.augmult))?;
        if matches!(model, ModelKind::ScatterNet { .. }) && (augmult > 1 || preset.augment) {
            return Err(TrainError::Usage(format!(
                "--augmult {augmult}: the ScatterNet models read features computed once per \
                 image, so they take one view of each image without crops or flips"
            )));
        }
        let normalization = match (&o.normalize, dataset, model) {
            (Some(values), _, _) => Some(normalization(values, channels)?),
            // A pretrained NFNet expects ImageNet's normalization on images other than the
            // presets' (whose constants are CIFAR-10's).
            (None, Dataset::ImageFolder, ModelKind::NfNet) => Some(IMAGENET_MEAN_STD.to_vec()),
            (None, _, _) => None,
        };
        Ok(Self {
            preset: preset.name.to_string(),
            dataset,
            data_dir: o.data_dir.unwrap_or(default_dir),
            model,
            batch_size: at_least_one("--batch-size", o.batch_size.unwrap_or(preset.batch_size))?,
            length,
            learning_rate,
            momentum: preset.momentum,
            clip_norm: preset.clip_norm,
            augmult,
            augment: preset.augment,
            normalize: preset.normalize,
            noise,
            delta,
            accountant: o.accountant.unwrap_or(crate::presets::DEFAULT_ACCOUNTANT),
            ema_decay: match o.ema_decay {
                None => preset.ema_decay,
                Some(0.0) => None,
                Some(mu) if (0.0..1.0).contains(&mu) => Some(mu),
                Some(mu) => {
                    return Err(TrainError::Usage(format!(
                        "--ema-decay {mu} must be in [0, 1) (0 turns the average off)"
                    )))
                }
            },
            micro_batch: at_least_one(
                "--micro-batch",
                o.micro_batch.unwrap_or(preset.micro_batch),
            )?,
            seed: o.seed,
            eval_every: o.eval_every.unwrap_or(0),
            validation: match o.validation {
                Some(0) => {
                    return Err(TrainError::Usage(
                        "--validation 0: hold out at least one training image".into(),
                    ))
                }
                v => v,
            },
            finetune,
            audit,
            normalization,
        })
    }

    /// The input pipeline of training.
    pub fn augmentation(&self, channels: usize) -> Augment {
        // Fixed constants, given or published, never statistics of the private training
        // images: a mean or std computed from them would be released with the model (it shapes
        // every input) without any noise, outside the DP guarantee.
        let normalize = match &self.normalization {
            Some(pairs) if pairs.len() == channels => pairs.clone(),
            _ if self.normalize && channels == 3 => CIFAR_MEAN_STD.to_vec(),
            _ => vec![(0.0, 1.0); channels],
        };
        Augment {
            crop_padding: if self.augment { 4 } else { 0 },
            flip: self.augment,
            views: self.augmult,
            normalize,
        }
    }
}
