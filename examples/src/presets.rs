//! Named training recipes from the literature, with where every number comes from.
//!
//! Every σ is calibrated by the default accountant ([`DEFAULT_ACCOUNTANT`], PLD) so that the
//! preset's full run spends its named ε at δ = 1e-5; `dp-train --list-presets` prints σ and
//! the ε of the full run by both accountants.
//!
//! | preset | source | steps |
//! |---|---|---|
//! | `fmnist-cnn-eps3` | Tramèr & Boneh 2021 (end-to-end tanh CNN), B = 2048, lr 4, momentum 0.9, C = 0.1, 40 epochs; parameter EMA 0.999 with De et al.'s warm-up (evaluation only) | 40 epochs = ⌈40·60000/2048⌉ = 1,172 steps, ε = 3 |
//! | `fmnist-cnn-quick` | the same recipe for 12 epochs (the README's main command, minutes on 2 cores) | 352 steps, ε = 3 |
//! | `fmnist-scatternet-linear-eps3` | Tramèr & Boneh 2021 (ScatterNet J = 2, L = 8, GroupNorm 27 groups, linear): B = 8192, momentum 0.9, C = 0.1; lr 16 and 40 epochs chosen on 10,000 held-out training images (`--validation`) | 293 steps, ε = 3 |
//! | `fmnist-scatternet-cnn-eps3` | the same features with their small tanh CNN head and their hyperparameters for it: B = 2048, lr 4, 40 epochs (on 10,000 held-out training images lr 2, 4 and 8 gave 89.11%, 89.03% and 87.30%) | 1,172 steps, ε = 3 |
//! | `cifar10-scatternet-linear-eps3`, `cifar10-scatternet-cnn-eps3` | the CIFAR-10 equivalents (243 × 8 × 8 features) with Tramèr & Boneh's B = 8192 and lr 4 for both heads, 60 epochs; they normalize with privately computed batch statistics, these presets with GroupNorm (27 groups); not tuned here (CIFAR-10 cannot be downloaded on this project's machines) | 367 steps, ε = 3 |
//! | `cifar10-wrn16-4-eps1` | De et al. 2022 (their CIFAR-10 WRN-16-4 hyperparameters): WRN-16-4, B = 4096, K = 16, C = 1, SGD lr 2, no momentum, EMA 0.999 | 875 steps (De et al.'s, with σ = 10 by their accounting), ε = 1 |
//! | `cifar10-wrn16-4-eps2` | as above, lr 4 | 1,125 steps (De et al.: σ = 6), ε = 2 |
//! | `cifar10-wrn16-4-eps4` | as above, lr 4 | 1,689 steps (the most σ = 4 allowed at ε = 4 by RDP), ε = 4 |
//! | `cifar10-wrn16-4-eps8` | as above, lr 4 | 2,468 steps (De et al.: σ = 3), ε = 8 |
//! | `cifar10-wrn40-4-eps8` | De et al. 2022: WRN-40-4, otherwise as above (81.4% reported) | 2,468 steps, ε = 8 |
//! | `nfnet-finetune` | De et al. 2022 §5 (fine-tuning a pretrained NFNet): new zero head, B = 4096, K = 16, C = 1, lr 4, EMA 0.9999 | 500 steps, ε = 8 |
//!
//! Every CIFAR-10 preset samples by Poisson over N = 50,000 with q = 4096/50000; the ε each
//! preset spends over its full run is [`Preset::full_run_epsilon`].

use crate::error::{Result, TrainError};
use dp_accountant::{
    calibrate, AccountantConfig, AccountantKind, DpEvent, NeighboringRelation, PrivacyAccountant,
};
use serde::{Deserialize, Serialize};

/// Which dataset a preset trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    /// Fashion-MNIST (60,000 training images).
    FashionMnist,
    /// CIFAR-10 (50,000 training images).
    Cifar10,
    /// The user's own images: DATA_DIR/train/CLASS/*.png|jpg and DATA_DIR/test/CLASS/*.
    ImageFolder,
}

impl Dataset {
    /// Training-set size of the real dataset (`None` for an image folder: it depends on the
    /// folder).
    pub fn train_size(self) -> Option<u64> {
        match self {
            Self::FashionMnist => Some(60_000),
            Self::Cifar10 => Some(50_000),
            Self::ImageFolder => None,
        }
    }
}

/// Which network a preset trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Tramèr & Boneh's tanh CNN.
    TanhCnn,
    /// WRN-depth-width.
    WideResNet {
        /// Depth.
        depth: usize,
        /// Width multiplier.
        width: usize,
    },
    /// A pretrained NFNet, fine-tuned.
    NfNet,
    /// Tramèr & Boneh's ScatterNet: fixed scattering features (J = 2, L = 8, computed once
    /// per image) of `channels`-channel images (1: 28×28, 3: 32×32), a GroupNorm without
    /// parameters, and a linear or CNN head.
    ScatterNet {
        /// The head.
        head: dp_models::ScatterHead,
        /// Channels of the images.
        channels: usize,
    },
}

/// Groups of the ScatterNet models' feature GroupNorm (Tramèr & Boneh's grid: 9, 27, 81).
pub const SCATTER_GROUPS: usize = 27;

/// How σ is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseChoice {
    /// A fixed noise multiplier.
    Fixed(f64),
    /// Calibrated by the accountant so the whole run spends at most this ε.
    TargetEpsilon(f64),
}

/// A training recipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// Name on the command line.
    pub name: &'static str,
    /// Data.
    pub dataset: Dataset,
    /// Network.
    pub model: ModelKind,
    /// Expected logical batch size (q·N).
    pub batch_size: usize,
    /// Logical steps.
    pub steps: u64,
    /// Learning rate.
    pub learning_rate: f64,
    /// SGD momentum (0: plain SGD).
    pub momentum: f64,
    /// C.
    pub clip_norm: f64,
    /// K.
    pub augmult: usize,
    /// Random crops (reflect padding 4) and flips.
    pub augment: bool,
    /// Per-channel normalization with CIFAR-10's published constants (never statistics
    /// computed from the private training images).
    pub normalize: bool,
    /// σ.
    pub noise: NoiseChoice,
    /// δ.
    pub delta: f64,
    /// EMA decay.
    pub ema_decay: Option<f64>,
    /// Examples per physical micro-batch on the CPU.
    pub micro_batch: usize,
}

const CIFAR_BATCH: usize = 4096;

/// The accountant that charges a run unless `--accountant` says otherwise, and that calibrates
/// the presets: PLD with pessimistic discretization, an upper bound on ε and tighter than RDP
/// at these settings (so the same ε buys less noise).
pub const DEFAULT_ACCOUNTANT: AccountantKind = AccountantKind::Pld;

fn cifar(name: &'static str, depth: usize, epsilon: f64, steps: u64, lr: f64) -> Preset {
    Preset {
        name,
        dataset: Dataset::Cifar10,
        model: ModelKind::WideResNet { depth, width: 4 },
        batch_size: CIFAR_BATCH,
        steps,
        learning_rate: lr,
        momentum: 0.0,
        clip_norm: 1.0,
        augmult: 16,
        augment: true,
        normalize: true,
        noise: NoiseChoice::TargetEpsilon(epsilon),
        delta: 1e-5,
        ema_decay: Some(0.999),
        micro_batch: 16,
    }
}

fn fmnist(name: &'static str, epochs: u64) -> Preset {
    Preset {
        name,
        dataset: Dataset::FashionMnist,
        model: ModelKind::TanhCnn,
        batch_size: 2048,
        steps: (epochs * 60_000).div_ceil(2048),
        learning_rate: 4.0,
        momentum: 0.9,
        clip_norm: 0.1,
        augmult: 1,
        augment: false,
        normalize: false,
        noise: NoiseChoice::TargetEpsilon(3.0),
        delta: 1e-5,
        ema_decay: Some(0.999),
        micro_batch: 256,
    }
}

/// Tramèr & Boneh 2021's ScatterNet recipes: SGD with momentum 0.9, C = 0.1, no
/// augmentation, Poisson sampling at an expected batch of `batch_size`, `epochs` epochs, ε = 3.
fn scatternet(
    name: &'static str,
    dataset: Dataset,
    head: dp_models::ScatterHead,
    batch_size: usize,
    learning_rate: f64,
    epochs: u64,
) -> Preset {
    let (train, channels) = match dataset {
        Dataset::Cifar10 => (50_000, 3),
        _ => (60_000, 1),
    };
    Preset {
        name,
        dataset,
        model: ModelKind::ScatterNet { head, channels },
        batch_size,
        steps: (epochs * train).div_ceil(batch_size as u64),
        learning_rate,
        momentum: 0.9,
        clip_norm: 0.1,
        augmult: 1,
        augment: false,
        normalize: false,
        noise: NoiseChoice::TargetEpsilon(3.0),
        delta: 1e-5,
        ema_decay: None,
        micro_batch: 1024,
    }
}

/// Every preset.
pub fn presets() -> Vec<Preset> {
    use dp_models::ScatterHead::{CnnColor, CnnGray, Linear};
    vec![
        fmnist("fmnist-cnn-eps3", 40),
        fmnist("fmnist-cnn-quick", 12),
        scatternet(
            "fmnist-scatternet-linear-eps3",
            Dataset::FashionMnist,
            Linear,
            8192,
            16.0,
            40,
        ),
        scatternet(
            "fmnist-scatternet-cnn-eps3",
            Dataset::FashionMnist,
            CnnGray,
            2048,
            4.0,
            40,
        ),
        scatternet(
            "cifar10-scatternet-linear-eps3",
            Dataset::Cifar10,
            Linear,
            8192,
            4.0,
            60,
        ),
        scatternet(
            "cifar10-scatternet-cnn-eps3",
            Dataset::Cifar10,
            CnnColor,
            8192,
            4.0,
            60,
        ),
        cifar("cifar10-wrn16-4-eps1", 16, 1.0, 875, 2.0),
        cifar("cifar10-wrn16-4-eps2", 16, 2.0, 1125, 4.0),
        cifar("cifar10-wrn16-4-eps4", 16, 4.0, 1689, 4.0),
        cifar("cifar10-wrn16-4-eps8", 16, 8.0, 2468, 4.0),
        cifar("cifar10-wrn40-4-eps8", 40, 8.0, 2468, 4.0),
        Preset {
            name: "nfnet-finetune",
            model: ModelKind::NfNet,
            ema_decay: Some(0.9999),
            micro_batch: 8,
            ..cifar("nfnet-finetune", 16, 8.0, 500, 4.0)
        },
    ]
}

/// The preset called `name`.
pub fn preset(name: &str) -> Result<Preset> {
    presets()
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = presets().iter().map(|p| p.name).collect();
            TrainError::Usage(format!(
                "unknown preset {name:?}; choose one of {}",
                names.join(", ")
            ))
        })
}

/// The privacy plan of a run: q, σ, steps and what they cost.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyPlan {
    /// q = expected batch / N.
    pub sampling_rate: f64,
    /// σ.
    pub noise_multiplier: f64,
    /// Logical steps.
    pub steps: u64,
    /// δ.
    pub delta: f64,
    /// ε of the whole run by the chosen accountant (an upper bound).
    pub epsilon: f64,
    /// The accountant.
    pub accountant: AccountantKind,
}

/// ε at `delta` of `steps` Poisson-sampled Gaussian steps by `accountant`, or `None` if that
/// accountant gives no answer (a PLD grid past its limit): the other accountant's ε beside
/// the one that charged a run.
pub fn epsilon_by(
    accountant: AccountantKind,
    sampling_rate: f64,
    noise_multiplier: f64,
    steps: u64,
    delta: f64,
) -> Option<f64> {
    let mut acc = AccountantConfig::default_for(accountant)
        .build(NeighboringRelation::AddOrRemoveOne)
        .ok()?;
    acc.compose(&DpEvent::poisson_gaussian(sampling_rate, noise_multiplier).self_composed(steps))
        .ok()?;
    acc.epsilon(delta).ok()
}

/// Resolves σ (fixed or calibrated) for Poisson sampling at `batch_size` of `dataset_size`
/// over `steps`, and the ε the whole run spends.
pub fn plan(
    noise: NoiseChoice,
    batch_size: usize,
    dataset_size: u64,
    steps: u64,
    delta: f64,
    accountant: AccountantKind,
) -> Result<PrivacyPlan> {
    if dataset_size == 0 || batch_size == 0 || batch_size as u64 > dataset_size {
        return Err(TrainError::Usage(format!(
            "--batch-size {batch_size} must be between 1 and the {dataset_size} training examples"
        )));
    }
    if steps == 0 {
        return Err(TrainError::Usage(
            "--steps must be at least 1 (or --epochs > 0)".into(),
        ));
    }
    let sampling_rate = batch_size as f64 / dataset_size as f64;
    let config = AccountantConfig::default_for(accountant);
    let relation = NeighboringRelation::AddOrRemoveOne;
    let event = |sigma: f64| DpEvent::poisson_gaussian(sampling_rate, sigma).self_composed(steps);
    let noise_multiplier = match noise {
        NoiseChoice::Fixed(sigma) => sigma,
        NoiseChoice::TargetEpsilon(target) => calibrate::calibrate_noise_multiplier(
            &config,
            relation,
            event,
            target,
            delta,
            calibrate::DEFAULT_RELATIVE_TOLERANCE,
        )
        .map_err(|e| {
            TrainError::Usage(format!(
                "--target-epsilon {target}: no noise multiplier reaches it in {steps} steps at \
                 q = {sampling_rate:.6}, δ = {delta}: {e}"
            ))
        })?,
    };
    let mut acc: Box<dyn PrivacyAccountant> = config.build(relation)?;
    acc.compose(&event(noise_multiplier))?;
    Ok(PrivacyPlan {
        sampling_rate,
        noise_multiplier,
        steps,
        delta,
        epsilon: acc.epsilon(delta)?,
        accountant,
    })
}

impl Preset {
    /// The privacy plan of this preset's full run on the real dataset, by the default
    /// accountant.
    pub fn full_run_plan(&self) -> Result<PrivacyPlan> {
        let dataset_size = self.dataset.train_size().ok_or_else(|| {
            TrainError::Usage(format!("preset {} has no fixed dataset size", self.name))
        })?;
        plan(
            self.noise,
            self.batch_size,
            dataset_size,
            self.steps,
            self.delta,
            DEFAULT_ACCOUNTANT,
        )
    }

    /// ε of this preset's full run (default accountant, at its δ).
    pub fn full_run_epsilon(&self) -> Result<f64> {
        Ok(self.full_run_plan()?.epsilon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        let all = presets();
        for p in &all {
            assert_eq!(preset(p.name).unwrap().name, p.name);
            assert_eq!(all.iter().filter(|q| q.name == p.name).count(), 1);
        }
        assert!(matches!(preset("nope"), Err(TrainError::Usage(_))));
    }

    #[test]
    fn impossible_plans_are_usage_errors() {
        let p = plan(
            NoiseChoice::TargetEpsilon(1e-3),
            10,
            100,
            10,
            1e-12,
            AccountantKind::Rdp,
        );
        assert!(matches!(p, Err(TrainError::Usage(m)) if m.contains("--target-epsilon")));
        assert!(plan(
            NoiseChoice::Fixed(1.0),
            200,
            100,
            10,
            1e-5,
            AccountantKind::Rdp
        )
        .is_err());
        assert!(plan(
            NoiseChoice::Fixed(1.0),
            10,
            100,
            0,
            1e-5,
            AccountantKind::Rdp
        )
        .is_err());
    }
}
