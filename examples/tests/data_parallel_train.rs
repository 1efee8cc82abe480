//! `dp-train --devices cpu:N`: a data-parallel group of CPU peers (threads) trains the run one
//! device would, with the same ε and, for a seeded run, the same batches and noise: groups of
//! 2 and 3 peers give the single-device model (to float rounding of the sums), its accuracy
//! and ε; a group paused and resumed on another number of peers too; `--audit` is refused.
//!
//! Alone in its own test binary, one group at a time: burn-collective keeps one group per
//! backend in a process, and seeded model initialization draws from burn's process-wide
//! generator.

mod common;
use common::{dp_train_preset, finished, fmnist_data, options, stderr};

use examples::report::{read_losses, Summary};
use examples::train::{train, DeviceChoice, Devices, Overrides, RunConfig, TrainOptions};
use std::path::Path;

fn config(data: &Path, seed: Option<u64>) -> RunConfig {
    RunConfig::new(
        &examples::presets::preset("fmnist-cnn-quick").unwrap(),
        Overrides {
            data_dir: Some(data.to_path_buf()),
            steps: Some(6),
            batch_size: Some(24),
            micro_batch: Some(5),
            // A gentle rate: the sums of 2 or 3 shards round differently from one sum (and the
            // group's sum in arrival order), and a large step would amplify that.
            learning_rate: Some(0.5),
            seed,
            eval_every: Some(3),
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn on(peers: usize, out: &Path) -> TrainOptions {
    TrainOptions {
        devices: format!("cpu:{peers}").parse().unwrap(),
        ..options(out)
    }
}

/// Every parameter of a released model, by name.
fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            assert_eq!(va.len(), vb.len());
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_same_run(group: &Summary, group_dir: &Path, one: &Summary, one_dir: &Path) {
    assert_eq!(group.steps, one.steps);
    assert_eq!(group.epsilon, one.epsilon, "ε differs");
    assert_eq!(group.epsilon_pld, one.epsilon_pld);
    assert_eq!(group.noise_multiplier, one.noise_multiplier);
    assert_eq!(group.sampling_rate, one.sampling_rate);
    assert_eq!(group.test_accuracy, one.test_accuracy);
    let gap = max_difference(&weights(group_dir), &weights(one_dir));
    // Printed as well: a panic's message can be lost in this binary.
    eprintln!(
        "{} peer(s): largest weight difference {gap}, accuracy {} vs {}",
        group.peers, group.test_accuracy, one.test_accuracy
    );
    assert!(gap < 1e-5, "the group's model is {gap} from one device's");
    let (lg, lo) = (
        read_losses(group_dir).unwrap(),
        read_losses(one_dir).unwrap(),
    );
    assert_eq!(lg.len(), lo.len());
    for ((sg, g), (so, o)) in lg.iter().zip(&lo) {
        assert_eq!(sg, so);
        assert!((g - o).abs() < 1e-5, "step {sg}: loss {g} (group) vs {o}");
    }
}

#[test]
fn groups_of_cpu_peers_train_the_run_of_one_device() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let seeded = Some(5);
    let one_dir = out.path().join("one");
    let one = finished(train(Some(config(data.path(), seeded)), &options(&one_dir)).unwrap());
    assert_eq!(one.peers, 1);
    for peers in [2, 3] {
        let dir = out.path().join(format!("group{peers}"));
        let group = finished(train(Some(config(data.path(), seeded)), &on(peers, &dir)).unwrap());
        assert_eq!(group.peers, peers);
        assert_same_run(&group, &dir, &one, &one_dir);
    }

    // Paused on two peers, resumed on three: still the same run.
    let dir = out.path().join("resumed");
    let paused = train(
        Some(config(data.path(), seeded)),
        &TrainOptions {
            pause_after: Some(4),
            ..on(2, &dir)
        },
    )
    .unwrap();
    assert!(matches!(
        paused,
        examples::train::Outcome::Paused { steps: 4, .. }
    ));
    let resumed = train(
        None,
        &TrainOptions {
            resume: true,
            ..on(3, &dir)
        },
    );
    let resumed = finished(resumed.unwrap());
    assert_same_run(&resumed, &dir, &one, &one_dir);

    // Unseeded: the key peer 0 draws keys one draw for the group, and the run is charged as
    // one device's.
    let dir = out.path().join("unseeded");
    let group = train(Some(config(data.path(), None)), &on(2, &dir));
    let group = finished(group.unwrap());
    assert_eq!((group.steps, group.epsilon), (one.steps, one.epsilon));
    assert!(group.test_accuracy.is_finite() && !group.seeded);
}

#[test]
fn the_audit_and_bad_device_lists_are_refused_before_anything_is_written() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let audited = dp_train_preset(
        "fmnist-cnn-quick",
        data.path(),
        &dir,
        &[
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--audit",
            "20",
            "--devices",
            "cpu:2",
        ],
    );
    assert_eq!(audited.status.code(), Some(2), "{}", stderr(&audited));
    assert!(
        stderr(&audited).contains("--audit runs on one device"),
        "{}",
        stderr(&audited)
    );
    for bad in ["cpu:0", "gpu:1", "cuda:1,1"] {
        let o = dp_train_preset(
            "fmnist-cnn-quick",
            data.path(),
            &dir,
            &["--steps", "2", "--batch-size", "16", "--devices", bad],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    let both = dp_train_preset(
        "fmnist-cnn-quick",
        data.path(),
        &dir,
        &[
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--devices",
            "cpu:2",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(!dir.exists(), "a refused run wrote its directory");
    // The one-device form parses to what --device gives.
    assert_eq!(
        "cpu".parse::<Devices>().unwrap(),
        Devices::one(DeviceChoice::Cpu)
    );
}
