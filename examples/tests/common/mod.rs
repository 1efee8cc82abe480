//! Helpers shared by the integration tests of `dp-train`.
#![allow(dead_code)]

use examples::data::write_synthetic_fashion_mnist;
use examples::report::Summary;
use examples::train::{DeviceChoice, Devices, Outcome, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Quiet CPU options for a run in `out`.
pub fn options(out: &Path) -> TrainOptions {
    TrainOptions {
        out: out.to_path_buf(),
        resume: false,
        devices: Devices::one(DeviceChoice::Cpu),
        progress: false,
        verbose: false,
        pause_after: None,
        network: None,
    }
}

/// The summary of a finished run (panics on a paused one).
pub fn finished(outcome: Outcome) -> Summary {
    match outcome {
        Outcome::Finished(s) => *s,
        other => panic!("not finished: {other:?}"),
    }
}

/// A small Fashion-MNIST-shaped dataset (64 training, 20 test images) in a temporary folder.
pub fn fmnist_data() -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_fashion_mnist(data.path(), 64, 20, 9).unwrap();
    data
}

/// The `dp-accountant` binary of this workspace (built on demand).
pub fn accountant_cli() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join(format!("dp-accountant{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let profile_release = dir.ends_with("release");
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "-q",
            "-p",
            "dp-accountant",
            "--bin",
            "dp-accountant",
        ]);
        if profile_release {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success());
    }
    path
}

/// What `dp-accountant epsilon` says of the run `summary` describes, by `accountant`.
pub fn cli_epsilon(summary: &Summary, accountant: &str) -> f64 {
    let cli = Command::new(accountant_cli())
        .args([
            "epsilon",
            "--sampling-rate",
            &summary.sampling_rate.to_string(),
            "--noise-multiplier",
            &summary.noise_multiplier.to_string(),
            "--steps",
            &summary.steps.to_string(),
            "--delta",
            &summary.delta.to_string(),
            "--accountant",
            accountant,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&cli.stdout).unwrap();
    cli["epsilon"].as_f64().unwrap()
}

/// Runs the `dp-train` binary with `args`.
pub fn dp_train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dp-train"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `dp-train --preset PRESET --data-dir DATA --out OUT` and then `more`.
pub fn dp_train_preset(preset: &str, data: &Path, out: &Path, more: &[&str]) -> Output {
    let mut args = vec![
        "--preset",
        preset,
        "--data-dir",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(more);
    dp_train(&args)
}

/// A process's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
