//! Crash soak: a short training is killed (SIGKILL) at random moments and resumed each time.
//! The finished run's ε must be what `dp-accountant epsilon` gives for every step it charged,
//! no step may be charged twice (a journal that lost steps would charge their numbers again),
//! and no temporary file may remain.
//!
//! A witness outside the run directory (dp-core's test hook `DP_CORE_TEST_CHARGE_LOG`) records
//! each charged step's number as it is committed.

mod common;
use common::{cli_epsilon, fmnist_data};

use dp_core::test_hooks::CHARGE_LOG_ENV;
use examples::report::Summary;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: u64 = 2000;

fn spawn(data: &Path, run: &Path, witness: &Path, resume: bool) -> std::process::Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dp-train"));
    if resume {
        command.args(["--out", run.to_str().unwrap(), "--resume"]);
    } else {
        command.args([
            "--preset",
            "fmnist-cnn-quick",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--steps",
            &STEPS.to_string(),
            "--batch-size",
            "8",
            "--eval-every",
            "7",
        ]);
    }
    command
        .arg("--json")
        .env(CHARGE_LOG_ENV, witness)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Whether a failed resume means that the run never started (then start it again).
fn never_started(stderr: &str) -> bool {
    stderr.contains("never took a step") || stderr.contains("does not exist")
}

#[test]
fn killed_and_resumed_runs_charge_every_step_once_and_report_it() {
    let data = fmnist_data();
    let work = tempfile::tempdir().unwrap();
    let (run, witness) = (work.path().join("run"), work.path().join("charged.log"));
    // Fixed seed for the kill times; the run itself draws OS entropy.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261201);
    let (mut kills, mut resume) = (0, false);
    let started = Instant::now();
    let summary: Summary = loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the soak took too long"
        );
        let mut child = spawn(data.path(), &run, &witness, resume);
        let deadline = if kills < 8 {
            Some(Instant::now() + Duration::from_millis(rng.random_range(30..400)))
        } else {
            None
        };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                child.kill().unwrap();
                child.wait().unwrap();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        match status {
            None => {
                kills += 1;
                eprintln!("kill {kills} after {:?}", started.elapsed());
                resume = true;
            }
            Some(s) if s.success() => break serde_json::from_slice(&output.stdout).unwrap(),
            Some(_) if resume && never_started(&stderr) => resume = false,
            Some(s) => panic!("dp-train failed ({s}): {stderr}"),
        }
    };
    assert!(kills >= 5, "only {kills} kills landed");
    let charged: Vec<u64> = std::fs::read_to_string(&witness)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let distinct: BTreeSet<u64> = charged.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        charged.len(),
        "a step number was charged twice"
    );
    assert!(charged.len() as u64 <= summary.steps);
    assert!(distinct.iter().all(|&s| s < summary.steps));
    assert_eq!(summary.steps, STEPS);
    assert_eq!(cli_epsilon(&summary, &summary.accountant), summary.epsilon);
    eprintln!(
        "{kills} kills; {} steps charged ({} witnessed, {} lost after checkpoints); ε = {}",
        summary.steps,
        charged.len(),
        summary.lost_steps,
        summary.epsilon
    );
    let leftovers: Vec<String> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| dp_core::files::is_temporary(n))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files remain: {leftovers:?}"
    );
}
