//! Named training recipes from the literature, with where every number comes from.
//!
//! | preset | source | σ and steps |
//! |---|---|---|
//! | `fmnist-cnn-eps3` | Tramèr & Boneh 2021 (end-to-end tanh CNN), B = 2048, lr 4, momentum 0.9, C = 0.1, 40 epochs; parameter EMA 0.999 with De et al.'s warm-up (evaluation only) | 40 epochs = ⌈40·60000/2048⌉ = 1,172 steps; σ calibrated by the RDP accountant to ε = 3 at δ = 1e-5 |
//! | `fmnist-cnn-quick` | the same recipe for 12 epochs (the README's main command, minutes on 2 cores) | 352 steps, σ calibrated to ε = 3 |
//! | `cifar10-wrn16-4-eps1` | De et al. 2022 (their CIFAR-10 WRN-16-4 hyperparameters): WRN-16-4, B = 4096, K = 16, C = 1, SGD lr 2, no momentum, EMA 0.999 | σ = 10, 875 steps (ε ≈ 0.99) |
//! | `cifar10-wrn16-4-eps2` | as above, lr 4 | σ = 6, 1,125 steps: the most σ = 6 allows at ε = 2 by our RDP accountant, as in De et al. |
//! | `cifar10-wrn16-4-eps4` | as above, lr 4 | σ = 4, 1,689 steps: the most σ = 4 allows at ε = 4 by our RDP accountant |
//! | `cifar10-wrn16-4-eps8` | as above, lr 4 | σ = 3, 2,468 steps (ε ≈ 7.05) |
//! | `cifar10-wrn40-4-eps8` | De et al. 2022: WRN-40-4, otherwise as above (81.4% reported) | σ = 3, 2,468 steps |
//! | `nfnet-finetune` | De et al. 2022 §5 (fine-tuning a pretrained NFNet): new zero head, B = 4096, K = 16, C = 1, lr 4, EMA 0.9999 | σ calibrated to ε = 8 over 500 steps |
//!
//! Every CIFAR-10 preset samples by Poisson over N = 50,000 with q = 4096/50000; the ε each
//! preset spends over its full run is [`Preset::full_run_epsilon`].

use crate::error::{Result, TrainError};
use dp_accountant::{
    calibrate, AccountantConfig, AccountantKind, DpEvent, NeighboringRelation, PrivacyAccountant,
};
use serde::{Deserialize, Serialize};

/// Which dataset a preset trains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataset {
    /// Fashion-MNIST (60,000 training images).
    FashionMnist,
    /// CIFAR-10 (50,000 training images).
    Cifar10,
}

impl Dataset {
    /// Training-set size of the real dataset.
    pub fn train_size(self) -> u64 {
        match self {
            Self::FashionMnist => 60_000,
            Self::Cifar10 => 50_000,
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
}

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
    /// Per-channel normalization with the training set's statistics.
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

fn cifar(name: &'static str, depth: usize, sigma: f64, steps: u64, lr: f64) -> Preset {
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
        noise: NoiseChoice::Fixed(sigma),
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

/// Every preset.
pub fn presets() -> Vec<Preset> {
    vec![
        fmnist("fmnist-cnn-eps3", 40),
        fmnist("fmnist-cnn-quick", 12),
        cifar("cifar10-wrn16-4-eps1", 16, 10.0, 875, 2.0),
        cifar("cifar10-wrn16-4-eps2", 16, 6.0, 1125, 4.0),
        cifar("cifar10-wrn16-4-eps4", 16, 4.0, 1689, 4.0),
        cifar("cifar10-wrn16-4-eps8", 16, 3.0, 2468, 4.0),
        cifar("cifar10-wrn40-4-eps8", 40, 3.0, 2468, 4.0),
        Preset {
            name: "nfnet-finetune",
            model: ModelKind::NfNet,
            noise: NoiseChoice::TargetEpsilon(8.0),
            steps: 500,
            ema_decay: Some(0.9999),
            micro_batch: 8,
            ..cifar("nfnet-finetune", 16, 1.0, 500, 4.0)
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
    /// The privacy plan of this preset's full run on the real dataset.
    pub fn full_run_plan(&self) -> Result<PrivacyPlan> {
        plan(
            self.noise,
            self.batch_size,
            self.dataset.train_size(),
            self.steps,
            self.delta,
            AccountantKind::Rdp,
        )
    }

    /// ε of this preset's full run (RDP, at its δ).
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
