//! `dp-train` end to end on small generated datasets in the real file formats: every CIFAR-10
//! preset runs a few private steps; NFNet fine-tuning starts from the committed tiny timm
//! checkpoint; the reported ε is the `dp-accountant` CLI's; bad input gives one line and a non-zero exit without touching the
//! run directory.

mod common;
use common::{cli_epsilon, dp_train, finished, fmnist_data, options, stderr};

use dp_accountant::{AccountantKind, DpEvent, PrivacyAccountant, RdpAccountant};
use examples::data::{write_synthetic_cifar10, write_synthetic_fashion_mnist};
use examples::presets::{presets, Dataset, ModelKind, Preset};
use examples::report::{read_evaluations, read_losses, Summary};
use examples::train::{train, NfNetVariant, Overrides, RunConfig};
use std::path::{Path, PathBuf};
use std::process::Output;

/// ε of `steps` Poisson-subsampled Gaussian steps, computed here from the accountant crate.
fn rdp_epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    let mut accountant = RdpAccountant::new();
    accountant
        .compose(&DpEvent::poisson_gaussian(q, sigma).self_composed(steps))
        .unwrap();
    accountant.epsilon(delta).unwrap()
}

fn target_of(name: &str) -> Option<f64> {
    name.rsplit_once("-eps").and_then(|(_, e)| e.parse().ok())
}

#[test]
fn every_cifar10_preset_trains_on_generated_cifar10_files() {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_cifar10(data.path(), 4, 6, 3).unwrap();
    let cifar: Vec<Preset> = presets()
        .into_iter()
        .filter(|p| {
            p.dataset == Dataset::Cifar10 && matches!(p.model, ModelKind::WideResNet { .. })
        })
        .collect();
    assert_eq!(cifar.len(), 5);
    for preset in cifar {
        // The full run on the real CIFAR-10 stays within the budget in the preset's name.
        let full = preset.full_run_epsilon().unwrap();
        let target = target_of(preset.name).unwrap();
        let expected_full = rdp_epsilon(
            4096.0 / 50000.0,
            match preset.noise {
                examples::presets::NoiseChoice::Fixed(s) => s,
                other => panic!("{other:?}"),
            },
            preset.steps,
            1e-5,
        );
        assert_eq!(full, expected_full, "{}", preset.name);
        assert!(
            full <= target && full > 0.85 * target,
            "{}: full run ε = {full}",
            preset.name
        );
        eprintln!("{}: full run spends ε = {full:.4} (δ = 1e-5)", preset.name);

        let out = tempfile::tempdir().unwrap();
        let run_dir = out.path().join("run");
        let config = RunConfig::new(
            &preset,
            Overrides {
                data_dir: Some(data.path().to_path_buf()),
                steps: Some(2),
                batch_size: Some(2),
                augmult: Some(2),
                micro_batch: Some(1),
                seed: Some(11),
                eval_every: Some(1),
                ..Overrides::default()
            },
        )
        .unwrap();
        let summary = finished(train(Some(config), &options(&run_dir)).unwrap());
        assert_eq!(summary.steps, 2);
        assert_eq!(summary.augmult, 2);
        assert_eq!(summary.dataset_size, 20);
        assert_eq!(summary.preset_full_run_epsilon, full);
        assert_eq!(
            summary.epsilon,
            rdp_epsilon(0.1, summary.noise_multiplier, 2, 1e-5)
        );
        assert!((0.0..=1.0).contains(&summary.test_accuracy_ema));
        let evaluations = read_evaluations(&run_dir).unwrap();
        assert_eq!(
            evaluations.iter().map(|e| e.step).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(
            evaluations.iter().all(|e| e.test_accuracy_ema.is_some()),
            "EMA evaluated"
        );
        assert_eq!(read_losses(&run_dir).unwrap().len(), 2);
        for png in ["accuracy_vs_epsilon.png", "loss_vs_steps.png"] {
            let bytes = std::fs::read(run_dir.join(png)).unwrap();
            assert_eq!(&bytes[1..4], b"PNG", "{png}");
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data")
        .join(name)
}

#[test]
fn nfnet_finetune_starts_from_a_timm_checkpoint() {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_cifar10(data.path(), 2, 4, 5).unwrap();
    let preset = examples::presets::preset("nfnet-finetune").unwrap();
    // Without pretrained weights the preset refuses to start.
    assert!(RunConfig::new(&preset, Overrides::default())
        .unwrap_err()
        .to_string()
        .contains("--checkpoint"));
    let out = tempfile::tempdir().unwrap();
    let config = RunConfig::new(
        &preset,
        Overrides {
            data_dir: Some(data.path().to_path_buf()),
            steps: Some(2),
            batch_size: Some(2),
            augmult: Some(1),
            seed: Some(1),
            checkpoint: Some(fixture("nfnet_tiny_timm.safetensors")),
            nfnet_variant: Some(NfNetVariant::Tiny),
            trainable_stages: Some(1),
            ..Overrides::default()
        },
    )
    .unwrap();
    let summary = finished(train(Some(config), &options(&out.path().join("ft"))).unwrap());
    assert_eq!(summary.steps, 2);
    assert!(summary.epsilon > 0.0);

    // A checkpoint that is not an NFNet is named in the error.
    let bogus = out.path().join("bogus.safetensors");
    std::fs::write(&bogus, b"not safetensors").unwrap();
    let config = RunConfig::new(
        &preset,
        Overrides {
            data_dir: Some(data.path().to_path_buf()),
            checkpoint: Some(bogus.clone()),
            batch_size: Some(2),
            nfnet_variant: Some(NfNetVariant::Tiny),
            ..Overrides::default()
        },
    )
    .unwrap();
    let err = train(Some(config), &options(&out.path().join("ft2"))).unwrap_err();
    assert!(err.to_string().contains("bogus.safetensors"), "{err}");
}

/// Trains 3 steps with σ calibrated by `accountant` and returns the summary, after checking that
/// its ε is the `dp-accountant` CLI's for the same run and accountant.
fn reported_epsilon_matches_the_cli(accountant: &str) -> Summary {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let o = dp_train(&[
        "--preset",
        "fmnist-cnn-eps3",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--target-epsilon",
        "2",
        "--accountant",
        accountant,
        "--json",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Summary = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.accountant, accountant);
    assert!(
        summary.epsilon <= 2.0 && summary.epsilon > 1.99,
        "calibrated to the target by {accountant}: {}",
        summary.epsilon
    );
    assert_eq!(cli_epsilon(&summary, accountant), summary.epsilon);
    summary
}

#[test]
fn reported_epsilon_is_what_the_accountant_cli_returns() {
    let rdp = reported_epsilon_matches_the_cli(AccountantKind::Rdp.name());
    // The PLD value is reported beside it and is tighter.
    assert!(rdp.epsilon_pld.unwrap() < rdp.epsilon);
    // Calibrated by the tighter accountant, the same target allows less noise.
    let pld = reported_epsilon_matches_the_cli(AccountantKind::Pld.name());
    assert_eq!(pld.epsilon_pld, Some(pld.epsilon));
    assert!(
        pld.noise_multiplier < rdp.noise_multiplier,
        "σ by PLD {} vs by RDP {}",
        pld.noise_multiplier,
        rdp.noise_multiplier
    );
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

fn assert_one_line_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "{}", stderr(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_one_line_and_exit_2_and_leaves_runs_alone() {
    let data = fmnist_data();
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("run");
    let run_s = run.to_str().unwrap();
    let data_s = data.path().to_str().unwrap();

    // Missing data directory: nothing created.
    let o = dp_train(&[
        "--preset",
        "fmnist-cnn-eps3",
        "--data-dir",
        "/nonexistent/fmnist",
        "--out",
        run_s,
    ]);
    assert_one_line_error(&o, "/nonexistent/fmnist");
    assert!(!run.exists());

    // A wrong file in the data directory.
    let broken = tempfile::tempdir().unwrap();
    write_synthetic_fashion_mnist(broken.path(), 8, 4, 1).unwrap();
    let bad = broken.path().join("train-labels-idx1-ubyte.gz");
    std::fs::write(&bad, b"this is not an IDX file").unwrap();
    let o = dp_train(&[
        "--preset",
        "fmnist-cnn-eps3",
        "--data-dir",
        broken.path().to_str().unwrap(),
        "--out",
        run_s,
    ]);
    assert_one_line_error(&o, "train-labels-idx1-ubyte.gz");
    assert!(!run.exists());

    // An impossible budget.
    let o = dp_train(&[
        "--preset",
        "fmnist-cnn-eps3",
        "--data-dir",
        data_s,
        "--out",
        run_s,
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--target-epsilon",
        "0.001",
        "--delta",
        "1e-12",
    ]);
    assert_one_line_error(&o, "--target-epsilon 0.001");
    assert!(!run.exists());

    // Bad audit settings name their flag.
    for (args, needle) in [
        (vec!["--audit", "1"], "--audit 1 "),
        (vec!["--audit", "1000"], "--audit 1000 "),
        (vec!["--audit", "many"], "--audit"),
        (vec!["--audit-significance", "0.1"], "need --audit"),
        (
            vec!["--audit", "--audit-significance", "1.5"],
            "--audit-significance 1.5",
        ),
        (vec!["--audit", "--audit-method", "bogus"], "--audit-method"),
    ] {
        let mut all = vec![
            "--preset",
            "fmnist-cnn-eps3",
            "--data-dir",
            data_s,
            "--out",
            run_s,
        ];
        all.extend(args);
        assert_one_line_error(&dp_train(&all), needle);
        assert!(!run.exists());
    }

    // Invalid flags and values.
    for args in [
        vec!["--preset", "fmnist-cnn-eps3", "--bogus"],
        vec![
            "--preset",
            "fmnist-cnn-eps3",
            "--batch-size",
            "0",
            "--data-dir",
            data_s,
        ],
        vec!["--preset", "fmnist-cnn-eps3", "--delta", "1.5"],
        vec![
            "--preset",
            "fmnist-cnn-eps3",
            "--epochs",
            "1",
            "--steps",
            "2",
        ],
        vec!["--preset", "no-such-preset"],
        vec!["--preset", "fmnist-cnn-eps3", "--device", "tpu"],
        vec![
            "--preset",
            "fmnist-cnn-eps3",
            "--checkpoint",
            "x.safetensors",
        ],
    ] {
        let mut args = args.clone();
        args.extend(["--out", run_s]);
        let o = dp_train(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim_end().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!run.exists(), "{args:?}");
    }

    // A run directory that is not empty is never overwritten.
    let one_step = [
        "--preset",
        "fmnist-cnn-eps3",
        "--data-dir",
        data_s,
        "--out",
        run_s,
        "--steps",
        "1",
        "--batch-size",
        "8",
    ];
    let o = dp_train(&one_step);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = snapshot(&run);
    let o = dp_train(&one_step);
    assert_one_line_error(&o, "not empty");
    let o = dp_train(&["--out", run_s, "--resume"]);
    assert_one_line_error(&o, "finished run");
    let o = dp_train(&["--out", run_s, "--resume", "--batch-size", "4"]);
    assert_one_line_error(&o, "saved settings");
    assert_eq!(snapshot(&run), before);
}
