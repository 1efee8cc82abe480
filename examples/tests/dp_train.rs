//! `dp-train` end to end on small generated datasets in the real file formats: every CIFAR-10
//! preset runs a few private steps; NFNet fine-tuning starts from the committed tiny timm
//! checkpoint; the reported ε is the `dp-accountant` CLI's; bad input gives one line and a non-zero exit without touching the
//! run directory.

mod common;
use common::{cli_epsilon, dp_train, dp_train_preset, finished, fmnist_data, options, stderr};

use dp_accountant::{AccountantKind, DpEvent, PldAccountant, PrivacyAccountant};
use examples::data::{write_synthetic_cifar10, write_synthetic_fashion_mnist};
use examples::presets::{presets, Dataset, ModelKind, Preset};
use examples::report::{read_evaluations, read_losses, Summary};
use examples::train::{train, NfNetVariant, Overrides, RunConfig};
use std::path::{Path, PathBuf};
use std::process::Output;

/// ε of `steps` Poisson-subsampled Gaussian steps by the default (PLD) accountant, computed
/// here from the accountant crate.
fn pld_epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> f64 {
    let mut accountant = PldAccountant::new();
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
        // The full run on the real CIFAR-10 spends the budget in the preset's name, by PLD.
        let full = preset.full_run_epsilon().unwrap();
        let target = target_of(preset.name).unwrap();
        assert_eq!(
            preset.noise,
            examples::presets::NoiseChoice::TargetEpsilon(target)
        );
        let sigma = preset.full_run_plan().unwrap().noise_multiplier;
        let expected_full = pld_epsilon(4096.0 / 50000.0, sigma, preset.steps, 1e-5);
        assert_eq!(full, expected_full, "{}", preset.name);
        assert!(
            full <= target && full > 0.999 * target,
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
            pld_epsilon(0.1, summary.noise_multiplier, 2, 1e-5)
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

/// Trains 3 steps with σ calibrated by `accountant` (the default one if `None`) and returns
/// the summary, after checking that its ε is the `dp-accountant` CLI's for the same run and
/// accountant, and that the summary gives both accountants' ε.
fn reported_epsilon_matches_the_cli(accountant: Option<&str>) -> Summary {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let mut args = vec![
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
        "--json",
        "--seed",
        "4",
    ];
    if let Some(a) = accountant {
        args.extend(["--accountant", a]);
    }
    let o = dp_train(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Summary = serde_json::from_slice(&o.stdout).unwrap();
    let charged = accountant.unwrap_or("pld");
    assert_eq!(summary.steps, 3);
    assert_eq!(summary.accountant, charged);
    assert!(
        summary.epsilon <= 2.0 && summary.epsilon > 1.99,
        "calibrated to the target by {charged}: {}",
        summary.epsilon
    );
    assert_eq!(cli_epsilon(&summary, charged), summary.epsilon);
    let (rdp, pld) = (summary.epsilon_rdp.unwrap(), summary.epsilon_pld.unwrap());
    assert_eq!(rdp, cli_epsilon(&summary, "rdp"));
    assert_eq!(pld, cli_epsilon(&summary, "pld"));
    summary
}

#[test]
fn reported_epsilon_is_what_the_accountant_cli_returns() {
    let rdp = reported_epsilon_matches_the_cli(Some(AccountantKind::Rdp.name()));
    // The PLD value is reported beside it and is tighter.
    assert_eq!(rdp.epsilon_rdp, Some(rdp.epsilon));
    assert!(rdp.epsilon_pld.unwrap() < rdp.epsilon);
    // PLD charges by default; calibrated by the tighter accountant, the same target allows
    // less noise, and the RDP value beside it is larger.
    let pld = reported_epsilon_matches_the_cli(None);
    assert_eq!(pld.epsilon_pld, Some(pld.epsilon));
    assert!(pld.epsilon_rdp.unwrap() > pld.epsilon);
    assert!(
        pld.noise_multiplier < rdp.noise_multiplier,
        "σ by PLD {} vs by RDP {}",
        pld.noise_multiplier,
        rdp.noise_multiplier
    );
    let explicit = reported_epsilon_matches_the_cli(Some(AccountantKind::Pld.name()));
    assert_eq!(explicit.noise_multiplier, pld.noise_multiplier);
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
        // PLD reaches it (σ in the thousands); RDP's conversion cannot.
        "--accountant",
        "rdp",
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

fn run_bin(exe: &str, args: &[&str]) -> Output {
    std::process::Command::new(exe).args(args).output().unwrap()
}

/// dp-train's flags for the CNN on the image folder `dir`, run directory `out`.
fn folder_args<'a>(dir: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--model",
        "cnn",
        "--dataset",
        "image-folder",
        "--data-dir",
        dir,
        "--out",
        out,
    ]
}

fn json_of(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn an_image_folder_trains_and_its_released_model_is_used_by_dp_eval_and_dp_predict() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    examples::data::write_synthetic_image_folder(data.path(), &["fox", "cat", "dog"], 12, 5, 20)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let run_s = run.to_str().unwrap();
    // No preset: --model cnn takes fmnist-cnn-eps3's recipe; 20×20 RGB becomes 28×28 grey.
    let mut args = folder_args(dir, run_s);
    args.extend(["--steps", "4", "--batch-size", "8", "--seed", "3", "--json"]);
    let o = dp_train(&args);
    let summary: Summary = serde_json::from_value(json_of(&o)).unwrap();
    assert_eq!(summary.class_names, ["cat", "dog", "fox"]);
    assert_eq!((summary.dataset_size, summary.steps), (36, 4));
    assert_eq!(summary.preset, "fmnist-cnn-eps3");
    let record = examples::train::read_run_record(&run).unwrap();
    assert_eq!(record.class_names, summary.class_names);
    assert_eq!(record.data.shape, [1, 28, 28]);

    // The card travels in the model file.
    let model = run.join("model.safetensors");
    let card = examples::model_card::ModelCard::read(&model).unwrap();
    assert_eq!(card.class_names, summary.class_names);
    assert_eq!(
        (card.input, card.epsilon, card.seeded),
        ([1, 28, 28], summary.epsilon, true)
    );
    assert_eq!(card.normalization, [(0.0, 1.0)]);

    // dp-eval scores the same model on the same test images as the run's last evaluation.
    let model_s = model.to_str().unwrap();
    let eval = json_of(&run_bin(
        env!("CARGO_BIN_EXE_dp-eval"),
        &["--model", model_s, "--data-dir", dir, "--json"],
    ));
    let evaluation = &eval["evaluation"];
    eprintln!("{evaluation}");
    assert_eq!(evaluation["images"], 15);
    let accuracy = evaluation["test_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - summary.test_accuracy).abs() < 1e-9,
        "{accuracy} vs {}",
        summary.test_accuracy
    );
    let per_class = evaluation["per_class"].as_array().unwrap();
    let names: Vec<&str> = per_class
        .iter()
        .map(|c| c["class"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat", "dog", "fox"]);
    assert!(per_class.iter().all(|c| c["images"] == 5));
    let correct: u64 = per_class
        .iter()
        .map(|c| c["correct"].as_u64().unwrap())
        .sum();
    assert!((correct as f64 / 15.0 - accuracy).abs() < 1e-12);
    let ema = run.join("model-ema.safetensors");
    let eval_ema = json_of(&run_bin(
        env!("CARGO_BIN_EXE_dp-eval"),
        &[
            "--model",
            ema.to_str().unwrap(),
            "--data-dir",
            dir,
            "--json",
        ],
    ));
    let accuracy_ema = eval_ema["evaluation"]["test_accuracy"].as_f64().unwrap();
    assert!((accuracy_ema - summary.test_accuracy_ema).abs() < 1e-9);
    let text = run_bin(
        env!("CARGO_BIN_EXE_dp-eval"),
        &["--model", model_s, "--data-dir", dir],
    );
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("test accuracy") && text.contains("  cat ") && text.contains("(ε, δ)"),
        "{text}"
    );
    // An image folder needs its directory.
    assert_one_line_error(
        &run_bin(env!("CARGO_BIN_EXE_dp-eval"), &["--model", model_s]),
        "--data-dir",
    );

    // dp-predict: any size, most probable first.
    let odd = data.path().join("odd.png");
    image::RgbImage::from_pixel(50, 40, image::Rgb([200, 10, 10]))
        .save(&odd)
        .unwrap();
    let first = data.path().join("test/dog/0000.png");
    let predicted = json_of(&run_bin(
        env!("CARGO_BIN_EXE_dp-predict"),
        &[
            "--model",
            model_s,
            "--top",
            "2",
            "--json",
            first.to_str().unwrap(),
            odd.to_str().unwrap(),
        ],
    ));
    let predictions = predicted["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 2);
    for p in predictions {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 2);
        let probs: Vec<f64> = top
            .iter()
            .map(|g| g["probability"].as_f64().unwrap())
            .collect();
        assert!(probs[0] >= probs[1] && probs[1] >= 0.0 && probs[0] + probs[1] <= 1.0 + 1e-6);
        assert!(names.contains(&top[0]["class"].as_str().unwrap()));
    }
    let not_image = data.path().join("notes.png");
    std::fs::write(&not_image, "not an image").unwrap();
    assert_one_line_error(
        &run_bin(
            env!("CARGO_BIN_EXE_dp-predict"),
            &["--model", model_s, not_image.to_str().unwrap()],
        ),
        "notes.png",
    );
    assert_one_line_error(
        &run_bin(
            env!("CARGO_BIN_EXE_dp-predict"),
            &[
                "--model",
                not_image.to_str().unwrap(),
                odd.to_str().unwrap(),
            ],
        ),
        "notes.png",
    );

    // A WRN on RGB input with given normalization constants, recorded in run.json and the card.
    let wrn = out.path().join("wrn");
    let o = dp_train(&[
        "--model",
        "wrn10-1",
        "--dataset",
        "image-folder",
        "--data-dir",
        dir,
        "--out",
        wrn.to_str().unwrap(),
        "--steps",
        "1",
        "--batch-size",
        "4",
        "--micro-batch",
        "2",
        "--augmult",
        "1",
        "--normalize",
        "0.5,0.25",
        "--seed",
        "3",
        "--json",
    ]);
    let summary: Summary = serde_json::from_value(json_of(&o)).unwrap();
    assert_eq!(summary.steps, 1);
    let record = examples::train::read_run_record(&wrn).unwrap();
    assert_eq!(record.data.shape, [3, 32, 32]);
    assert_eq!(record.config.normalization, Some(vec![(0.5, 0.25); 3]));
    let card = examples::model_card::ModelCard::read(&wrn.join("model.safetensors")).unwrap();
    assert_eq!(card.normalization, vec![(0.5, 0.25); 3]);
}

#[test]
fn a_bad_image_folder_is_refused_before_anything_is_charged() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    examples::data::write_synthetic_image_folder(data.path(), &["a", "b"], 3, 2, 16).unwrap();
    std::fs::write(
        data.path().join("train/b/broken.jpg"),
        b"\xff\xd8 not a jpeg",
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let mut args = folder_args(dir, run.to_str().unwrap());
    args.extend(["--steps", "2", "--batch-size", "2"]);
    assert_one_line_error(&dp_train(&args), "broken.jpg");
    assert!(!run.exists(), "a refused start left a run directory");
    std::fs::remove_file(data.path().join("train/b/broken.jpg")).unwrap();
    let mut bad_constants = args.clone();
    bad_constants.extend(["--normalize", "1,2,3"]);
    assert_one_line_error(&dp_train(&bad_constants), "--normalize");
    let mut bad_model = args.clone();
    bad_model[1] = "wrn11-2";
    assert_one_line_error(&dp_train(&bad_model), "6n + 4");
    let no_dir = [
        "--model",
        "cnn",
        "--dataset",
        "image-folder",
        "--steps",
        "2",
    ];
    assert_one_line_error(&dp_train(&no_dir), "--data-dir");
    assert!(!run.exists());
}

#[test]
fn help_texts_have_no_rustdoc_link_syntax() {
    let programs: [(&str, &[&str]); 7] = [
        (env!("CARGO_BIN_EXE_dp-train"), &["--help"]),
        (env!("CARGO_BIN_EXE_dp-train"), &["orchestrator", "--help"]),
        (env!("CARGO_BIN_EXE_dp-eval"), &["--help"]),
        (env!("CARGO_BIN_EXE_dp-predict"), &["--help"]),
        (env!("CARGO_BIN_EXE_dp-bench"), &["--help"]),
        (env!("CARGO_BIN_EXE_dp-audit"), &["--help"]),
        (env!("CARGO_BIN_EXE_dp-compare-plot"), &["--help"]),
    ];
    for (exe, args) in programs {
        let o = run_bin(exe, args);
        let help = String::from_utf8(o.stdout).unwrap();
        assert!(
            o.status.success() && help.contains("Usage"),
            "{exe} {args:?}: {help}"
        );
        for link in ["[`", "`]", "](", "[crate::", "[Self::"] {
            assert!(
                !help.contains(link),
                "{exe} {args:?} shows {link:?}:\n{help}"
            );
        }
    }
}

/// Every ScatterNet preset (Fashion-MNIST and CIFAR-10, linear and CNN heads) trains on
/// generated files in the real formats: features computed once, the full run spending the ε in
/// the preset's name, evaluation reading the features, and a model K > 1 refused before
/// anything is written.
#[test]
fn every_scatternet_preset_trains_on_generated_files() {
    let (fmnist, cifar) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_synthetic_fashion_mnist(fmnist.path(), 12, 5, 5).unwrap();
    write_synthetic_cifar10(cifar.path(), 4, 6, 3).unwrap();
    let scatter: Vec<Preset> = presets()
        .into_iter()
        .filter(|p| matches!(p.model, ModelKind::ScatterNet { .. }))
        .collect();
    assert_eq!(scatter.len(), 4);
    for preset in scatter {
        let full = preset.full_run_epsilon().unwrap();
        let target = target_of(preset.name).unwrap();
        assert!(
            full <= target && full > 0.999 * target,
            "{}: {full}",
            preset.name
        );
        let data = match preset.dataset {
            Dataset::Cifar10 => cifar.path(),
            _ => fmnist.path(),
        };
        let out = tempfile::tempdir().unwrap();
        let run_dir = out.path().join("run");
        let overrides = Overrides {
            data_dir: Some(data.to_path_buf()),
            steps: Some(2),
            batch_size: Some(4),
            micro_batch: Some(3),
            seed: Some(5),
            eval_every: Some(1),
            ..Overrides::default()
        };
        let refused = RunConfig::new(
            &preset,
            Overrides {
                augmult: Some(2),
                ..overrides.clone()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("one view"), "{refused}");
        let config = RunConfig::new(&preset, overrides).unwrap();
        let summary = finished(train(Some(config), &options(&run_dir)).unwrap());
        assert_eq!(summary.steps, 2, "{}", preset.name);
        assert!(
            (0.0..=1.0).contains(&summary.test_accuracy),
            "{}",
            preset.name
        );
        assert!(
            run_dir.join("model.safetensors").exists(),
            "{}",
            preset.name
        );
    }
}

/// With `--validation N` the run says what it measured: the evaluation lines, the terminal
/// summary and summary.json name the validation images (the last N training images, held out
/// of training), and a run without it names the test set.
#[test]
fn a_validation_run_reports_validation_accuracy_not_test_accuracy() {
    let data = fmnist_data();
    for (validation, set) in [(Some("16"), "validation"), (None, "test")] {
        let out = tempfile::tempdir().unwrap();
        let run = out.path().join("run");
        let mut more = vec![
            "--steps",
            "2",
            "--batch-size",
            "8",
            "--seed",
            "3",
            "--no-progress",
        ];
        if let Some(n) = validation {
            more.extend(["--validation", n]);
        }
        let o = dp_train_preset("fmnist-cnn-quick", data.path(), &run, &more);
        assert!(o.status.success(), "{}", stderr(&o));
        let (text, log) = (String::from_utf8_lossy(&o.stdout), stderr(&o));
        assert!(text.contains(&format!("{set} accuracy")), "{text}");
        assert!(log.contains(&format!(", {set} accuracy ")), "{log}");
        let other = if set == "test" { "validation" } else { "test" };
        assert!(!text.contains(&format!("{other} accuracy")), "{text}");
        assert!(!log.contains(&format!("{other} accuracy")), "{log}");
        let summary: Summary =
            serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary.evaluated_on, set);
        let trained_on = if validation.is_some() { 64 - 16 } else { 64 };
        assert_eq!(summary.dataset_size, trained_on);
    }
}

#[test]
fn ema_decay_flag_turns_the_parameter_average_on_and_off() {
    let data = fmnist_data();
    // (preset, --ema-decay, whether the run keeps an average): fmnist-cnn-quick has one
    // (μ = 0.999), fmnist-scatternet-linear-eps3 has none.
    for (preset, flag, averaged) in [
        ("fmnist-cnn-quick", None, true),
        ("fmnist-cnn-quick", Some("0"), false),
        ("fmnist-scatternet-linear-eps3", None, false),
        ("fmnist-scatternet-linear-eps3", Some("0.9"), true),
    ] {
        let out = tempfile::tempdir().unwrap();
        let run = out.path().join("run");
        let mut more = vec!["--steps", "2", "--batch-size", "8", "--seed", "5"];
        more.extend(["--eval-every", "1", "--no-progress"]);
        if let Some(mu) = flag {
            more.extend(["--ema-decay", mu]);
        }
        let o = dp_train_preset(preset, data.path(), &run, &more);
        assert!(o.status.success(), "{preset} {flag:?}: {}", stderr(&o));
        let log = stderr(&o);
        assert_eq!(log.contains("(EMA "), averaged, "{preset} {flag:?}: {log}");
        assert_eq!(
            run.join("model-ema.safetensors").exists(),
            averaged,
            "{preset} {flag:?}"
        );
    }
    for bad in ["1", "-0.5", "NaN"] {
        let out = tempfile::tempdir().unwrap();
        let run = out.path().join("run");
        let flag = format!("--ema-decay={bad}");
        let o = dp_train_preset("fmnist-cnn-quick", data.path(), &run, &[&flag]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "--ema-decay {bad}: {}",
            stderr(&o)
        );
        assert!(stderr(&o).contains("--ema-decay"), "{}", stderr(&o));
        assert!(!run.exists(), "--ema-decay {bad} made the run directory");
    }
}

/// dp-eval recomputes a ScatterNet's features from the test images, chunk by chunk (here
/// two chunks of 250 or fewer), and scores the released model exactly as the run's last
/// evaluation did.
#[test]
fn dp_eval_scores_a_released_scatternet_as_the_run_did() {
    let data = tempfile::tempdir().unwrap();
    write_synthetic_fashion_mnist(data.path(), 40, 260, 9).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let more = ["--steps", "3", "--batch-size", "8", "--seed", "2", "--json"];
    let o = dp_train_preset("fmnist-scatternet-linear-eps3", data.path(), &run, &more);
    let summary: Summary = serde_json::from_value(json_of(&o)).unwrap();
    let model = run.join("model.safetensors");
    let eval = json_of(&run_bin(
        env!("CARGO_BIN_EXE_dp-eval"),
        &[
            "--model",
            model.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(eval["evaluation"]["images"], 260);
    let accuracy = eval["evaluation"]["test_accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - summary.test_accuracy).abs() < 1e-9,
        "{accuracy} vs {}",
        summary.test_accuracy
    );
    // The loss as well: a constant guess would give the same accuracy on other features.
    let last = read_evaluations(&run).unwrap().pop().unwrap();
    let loss = eval["evaluation"]["test_loss"].as_f64().unwrap();
    assert!(
        (loss - last.test_loss).abs() < 1e-4 * last.test_loss.abs(),
        "{loss} vs {}",
        last.test_loss
    );
}
