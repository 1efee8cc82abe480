//! What a run writes and what a resume accepts (issue 9): no secret in any file of an unseeded
//! run, private permissions, the released model files; a resume refuses a missing, stale,
//! foreign or forged journal, an edited run.json and changed data before anything is
//! charged; every check runs before the first charge; evaluation lines without a terminal.

mod common;
use common::{dp_train, dp_train_preset, finished, fmnist_data, options, stderr};

use dp_accountant::{DpEvent, Ledger};
use dp_core::journal::{read_journal, write_journal_file};
use dp_core::test_hooks::{files_holding_seeds, os_seeds};
use examples::data::write_synthetic_fashion_mnist;
use examples::error::TrainError;
use examples::presets::preset;
use examples::train::{train, Outcome, Overrides, RunConfig, TrainOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn quick(data: &Path, steps: u64, seed: Option<u64>) -> RunConfig {
    RunConfig::new(
        &preset("fmnist-cnn-quick").unwrap(),
        Overrides {
            data_dir: Some(data.to_path_buf()),
            steps: Some(steps),
            batch_size: Some(16),
            eval_every: Some(2),
            seed,
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn resume_options(dir: &Path) -> TrainOptions {
    TrainOptions {
        resume: true,
        ..options(dir)
    }
}

fn paused(data: &Path, dir: &Path, steps: u64, after: u64) {
    let outcome = train(
        Some(quick(data, steps, None)),
        &TrainOptions {
            pause_after: Some(after),
            ..options(dir)
        },
    )
    .unwrap();
    assert!(matches!(outcome, Outcome::Paused { .. }), "{outcome:?}");
}

fn resume_error(dir: &Path) -> String {
    let err = train(None, &resume_options(dir)).unwrap_err();
    assert!(
        matches!(
            err,
            TrainError::RunDirectory(_) | TrainError::Dp(_) | TrainError::Malformed { .. }
        ),
        "{err:?}"
    );
    err.to_string()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn an_unseeded_run_writes_no_seed_and_only_private_files() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    // Paused and resumed, so that a checkpoint is written and read back.
    paused(data.path(), &dir, 5, 3);
    let summary = finished(train(None, &resume_options(&dir)).unwrap());
    assert!(!summary.seeded);
    let seeds = os_seeds();
    assert!(seeds.len() >= 4, "the hook saw {} OS seeds", seeds.len());
    assert_eq!(files_holding_seeds(&dir, &seeds), Vec::<PathBuf>::new());
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }
    // The released files hold the weights in the layout dp_models reads.
    let device = Default::default();
    for name in ["model.safetensors", "model-ema.safetensors"] {
        let model = dp_models::TanhCnn::<burn::backend::Flex>::new(10, &device).unwrap();
        dp_models::load_safetensors(model, dir.join(name), dp_models::KeyLayout::Native, &device)
            .unwrap();
    }
}

#[test]
fn the_seed_scan_finds_a_seeded_runs_stream() {
    // Power of the scan above: a seeded run stores its generators' states, and they are found.
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let outcome = train(
        Some(quick(data.path(), 4, Some(3))),
        &TrainOptions {
            pause_after: Some(2),
            ..options(&dir)
        },
    )
    .unwrap();
    assert!(matches!(outcome, Outcome::Paused { .. }));
    let checkpoint = std::fs::read(dir.join("checkpoint.dpck")).unwrap();
    let text = String::from_utf8_lossy(&checkpoint);
    assert!(
        text.contains("\"seeded\":true"),
        "the checkpoint does not say it is seeded"
    );
    let start = text.find("\"seed\":[").unwrap() + "\"seed\":".len();
    let end = start + text[start..].find(']').unwrap() + 1;
    let seed: [u8; 32] = serde_json::from_str(&text[start..end]).unwrap();
    assert_eq!(
        files_holding_seeds(&dir, &[seed]),
        vec![dir.join("checkpoint.dpck")]
    );
}

#[test]
fn two_resumes_of_copies_of_one_checkpoint_give_different_parameters() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 4, 2);
    let mut models = Vec::new();
    for copy in ["a", "b"] {
        let target = out.path().join(copy);
        std::fs::create_dir(&target).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
        finished(train(None, &resume_options(&target)).unwrap());
        models.push(std::fs::read(target.join("model.safetensors")).unwrap());
    }
    assert_ne!(
        models[0], models[1],
        "both continuations replayed the same noise"
    );
}

#[test]
fn a_resume_without_its_journal_or_with_a_stale_one_is_refused() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 8, 3);
    let journal = dir.join("privacy-journal.json");
    let saved = std::fs::read(&journal).unwrap();
    std::fs::remove_file(&journal).unwrap();
    assert!(resume_error(&dir).contains("journal is missing"));
    // Lowered below the steps the run's own loss log shows (the checkpoint is at step 3, so
    // only the logs witness the lost steps 4 and 5).
    std::fs::write(&journal, &saved).unwrap();
    let losses = dir.join("train_loss.csv");
    let mut text = std::fs::read_to_string(&losses).unwrap();
    text += "4,2.0\n5,2.0\n";
    std::fs::write(&losses, text).unwrap();
    assert!(resume_error(&dir).contains("lost charged steps"));
}

#[test]
fn a_journal_with_another_sigma_is_refused() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 6, 2);
    let journal = dir.join("privacy-journal.json");
    let mut body = read_journal(&journal).unwrap();
    let count = body.ledger.total_count();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let q = record["plan"]["sampling_rate"].as_f64().unwrap();
    let mut ledger =
        Ledger::from_event(&DpEvent::poisson_gaussian(q, 100.0).self_composed(count)).unwrap();
    // Also keep the real steps, so that only the foreign entry is wrong.
    ledger.merge(&body.ledger).unwrap();
    body.ledger = ledger;
    write_journal_file(&journal, body).unwrap();
    let err = resume_error(&dir);
    assert!(err.contains("never takes"), "{err}");
}

#[test]
fn an_edited_run_record_or_changed_data_is_refused_before_any_charge() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 6, 2);
    let journal = std::fs::read(dir.join("privacy-journal.json")).unwrap();
    let record_path = dir.join("run.json");
    let record = std::fs::read_to_string(&record_path).unwrap();
    let edited = record.replace("\"eval_every\": 2", "\"eval_every\": 3");
    assert_ne!(edited, record);
    std::fs::write(&record_path, &edited).unwrap();
    assert!(resume_error(&dir).contains("run.json was changed"));
    std::fs::write(&record_path, &record).unwrap();
    // Same size and shape, other pixels.
    write_synthetic_fashion_mnist(data.path(), 64, 20, 10).unwrap();
    assert!(resume_error(&dir).contains("contents changed"));
    write_synthetic_fashion_mnist(data.path(), 63, 20, 9).unwrap();
    assert!(resume_error(&dir).contains("63 training examples"));
    assert_eq!(
        std::fs::read(dir.join("privacy-journal.json")).unwrap(),
        journal
    );
}

#[test]
fn damaged_report_lines_are_caught_before_a_resume_charges() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 6, 4);
    let metrics = dir.join("metrics.jsonl");
    let good = std::fs::read_to_string(&metrics).unwrap();
    assert_eq!(good.lines().count(), 2);
    let journal = std::fs::read(dir.join("privacy-journal.json")).unwrap();
    std::fs::write(&metrics, format!("{{\"step\": oops\n{good}")).unwrap();
    let err = resume_error(&dir);
    assert!(err.contains("line 1"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("privacy-journal.json")).unwrap(),
        journal
    );
    // A torn last line (a crash mid-append) is cut off, and the run finishes.
    std::fs::write(&metrics, format!("{good}{{\"step\": 9, \"epo")).unwrap();
    let summary = finished(train(None, &resume_options(&dir)).unwrap());
    assert_eq!(summary.steps, 6);
}

/// An IDX image file `[n, h, w]` (raw).
fn idx_images(n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend((0..n * h * w).map(|i| (i * 31 % 251) as u8));
    out
}

fn idx_labels(n: usize) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 1];
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.extend((0..n).map(|i| (i % 10) as u8));
    out
}

fn write_fmnist(dir: &Path, train: (usize, usize, usize), test: (usize, usize, usize)) {
    for (prefix, (n, h, w)) in [("train", train), ("t10k", test)] {
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx_images(n, h, w),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx_labels(n),
        )
        .unwrap();
    }
}

fn assert_one_line_exit_2(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
}

#[test]
fn shapes_that_do_not_fit_the_model_are_refused_before_the_run_directory_exists() {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("run");
    let (run_s, data_s) = (run.to_str().unwrap(), work.path().to_str().unwrap());
    let args = [
        "--preset",
        "fmnist-cnn-quick",
        "--data-dir",
        data_s,
        "--out",
        run_s,
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--no-progress",
    ];
    // 14×56 has 28×28's byte count.
    write_fmnist(work.path(), (40, 14, 56), (10, 14, 56));
    assert_one_line_exit_2(
        &dp_train(&args),
        "does not accept images of shape [1, 14, 56]",
    );
    assert!(!run.exists());
    // Test images of another shape than the training images.
    write_fmnist(work.path(), (40, 28, 28), (10, 14, 56));
    assert_one_line_exit_2(&dp_train(&args), "test images [1, 14, 56]");
    // An empty test set.
    write_fmnist(work.path(), (40, 28, 28), (0, 28, 28));
    assert_one_line_exit_2(&dp_train(&args), "the test set is empty");
    assert!(!run.exists());
    // A device that is not there (a build without CUDA): nothing is written, and the same
    // command then succeeds on the CPU.
    write_fmnist(work.path(), (40, 28, 28), (10, 28, 28));
    let mut cuda = args.to_vec();
    cuda.extend(["--device", "cuda"]);
    let o = dp_train(&cuda);
    assert_ne!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert!(!run.exists(), "a failed start left {}", run.display());
    let o = dp_train(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_start_killed_before_its_first_step_is_accepted_by_a_rerun() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 4, 1);
    // What a start leaves if killed between writing run.json and the first checkpoint.
    std::fs::remove_file(dir.join("checkpoint.dpck")).unwrap();
    for name in ["metrics.jsonl", "train_loss.csv"] {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    let journal = dir.join("privacy-journal.json");
    let mut body = read_journal(&journal).unwrap();
    body.ledger = Ledger::new();
    write_journal_file(&journal, body).unwrap();
    let err = resume_error(&dir);
    assert!(err.contains("never took a step"), "{err}");
    finished(train(Some(quick(data.path(), 2, None)), &options(&dir)).unwrap());
    // A directory whose journal records a charged step is not a failed start.
    let other = out.path().join("other");
    paused(data.path(), &other, 4, 1);
    std::fs::remove_file(other.join("checkpoint.dpck")).unwrap();
    std::fs::remove_file(other.join("metrics.jsonl")).unwrap();
    let err = train(Some(quick(data.path(), 2, None)), &options(&other)).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn a_corrupt_checkpoint_exits_2_with_one_line() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    paused(data.path(), &dir, 4, 2);
    let path = dir.join("checkpoint.dpck");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let o = dp_train(&["--out", dir.to_str().unwrap(), "--resume"]);
    assert_one_line_exit_2(&o, "checksum");
}

#[test]
fn without_a_terminal_every_evaluation_prints_a_line() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    // stderr is a pipe here, not a terminal; the progress bar is not asked away.
    let more = ["--steps", "6", "--batch-size", "16", "--eval-every", "2"];
    let o = dp_train_preset("fmnist-cnn-quick", data.path(), &run, &more);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(lines.len(), 3, "{err}");
    for (line, step) in lines.iter().zip([2, 4, 6]) {
        assert!(line.starts_with(&format!("step {step}/6 ")), "{line}");
        for part in ["ε = ", "train loss ", "test accuracy "] {
            assert!(line.contains(part), "{line}");
        }
    }
    // A seeded run says so on stderr and in its summary.
    let seeded = out.path().join("seeded");
    let more = [
        "--steps",
        "2",
        "--batch-size",
        "16",
        "--seed",
        "4",
        "--json",
    ];
    let o = dp_train_preset("fmnist-cnn-quick", data.path(), &seeded, &more);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(examples::train::SEEDED_WARNING),
        "{}",
        stderr(&o)
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["seeded"], true);
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    // `dp-train --list-presets | head -c 10`: the reader is gone before the list is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_dp-train"))
        .arg("--list-presets")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}
