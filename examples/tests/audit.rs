//! `dp-train --audit`: canaries trained alongside the data through the production pipeline
//! give a lower bound on ε that stays below the claim on an honest run and exceeds it when
//! the noise or the clipping is broken (planted through dp-core's test hooks), and the
//! released model files hold the network only.
//!
//! Every run is seeded, so each assertion is deterministic; with fresh seeds an honest
//! run's bound (significance 0.05) would exceed the claim with probability at most 0.05, and
//! each of the consistency check's two tests would reject it with probability at most 0.05.

mod common;
use common::{finished, fmnist_data, options};

use dp_core::test_hooks::{plant, PlantedBug};
use examples::report::Summary;
use examples::train::{train, Overrides, RunConfig};
use std::path::Path;

const CANARIES: usize = 64;
const CLAIM: f64 = 1.0;

/// 20 steps at ε = 1, with K = 2 views and micro-batches of 5 examples (so canaries and real
/// examples share micro-batches and canaries straddle them).
fn config(data: &Path, audit: Option<usize>) -> RunConfig {
    RunConfig::new(
        &examples::presets::preset("fmnist-cnn-quick").unwrap(),
        Overrides {
            data_dir: Some(data.to_path_buf()),
            steps: Some(20),
            batch_size: Some(16),
            micro_batch: Some(5),
            augmult: Some(2),
            target_epsilon: Some(CLAIM),
            seed: Some(11),
            eval_every: Some(10),
            audit,
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn audited_run(data: &Path, out: &Path, bug: Option<PlantedBug>) -> Summary {
    let config = config(data, Some(CANARIES));
    plant(bug);
    let summary = train(Some(config), &options(out));
    plant(None);
    finished(summary.unwrap())
}

/// Tensor names and shapes of a safetensors file.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>)> {
    let bytes = std::fs::read(path).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut tensors: Vec<_> = metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.shape.clone()))
        .collect();
    tensors.sort();
    tensors
}

#[test]
fn an_honest_audited_run_stays_below_its_claim_and_releases_the_network_only() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let s = audited_run(data.path(), &run, None);
    let audit = s.audit.clone().expect("the summary has the audit");
    eprintln!("honest: claimed ε = {}, audit {audit:?}", s.epsilon);
    assert!(s.epsilon <= CLAIM && s.epsilon > 0.99 * CLAIM);
    assert_eq!(audit.canaries, CANARIES);
    assert!(audit.included > 0 && audit.included < CANARIES);
    assert_eq!((audit.method.as_str(), audit.significance), ("fdp", 0.05));
    assert!(audit.epsilon_lower_bound >= 0.0);
    assert!(audit.epsilon_lower_bound <= s.epsilon && !audit.exceeds_claim);
    let check = audit.consistency.expect("the consistency check ran");
    assert!(!check.rejected(), "{check:?}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["audit"]["canaries"], CANARIES);
    // The same run without --audit: the real examples are charged the same (σ, q, T, ε).
    let plain = finished(
        train(
            Some(config(data.path(), None)),
            &options(&out.path().join("plain")),
        )
        .unwrap(),
    );
    assert!(plain.audit.is_none());
    assert_eq!(
        (
            plain.noise_multiplier,
            plain.sampling_rate,
            plain.steps,
            plain.epsilon
        ),
        (s.noise_multiplier, s.sampling_rate, s.steps, s.epsilon)
    );
    // The released files are the network's: the same tensors as the run without --audit.
    let want = tensors(&out.path().join("plain").join("model.safetensors"));
    assert!(!want.is_empty());
    for file in ["model.safetensors", "model-ema.safetensors"] {
        let got = tensors(&run.join(file));
        assert_eq!(got, want, "{file}");
        assert!(got.iter().all(|(_, shape)| shape != &vec![CANARIES, 1]));
    }
}

#[test]
fn the_audit_in_dp_train_catches_noise_or_clipping_turned_off() {
    // Both by the bound and by the consistency check.
    let data = fmnist_data();
    for bug in [PlantedBug::NoNoise, PlantedBug::NoClipping] {
        let out = tempfile::tempdir().unwrap();
        let s = audited_run(data.path(), out.path(), Some(bug));
        let audit = s.audit.expect("the summary has the audit");
        eprintln!("{bug:?}: claimed ε = {}, audit {audit:?}", s.epsilon);
        assert!(
            audit.epsilon_lower_bound > s.epsilon && audit.exceeds_claim,
            "{bug:?}: ε ≥ {} does not exceed the claim {}",
            audit.epsilon_lower_bound,
            s.epsilon
        );
        assert!(audit.consistency.unwrap().rejected(), "{bug:?}: {audit:?}");
    }
}
