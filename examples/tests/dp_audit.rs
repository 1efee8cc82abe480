//! `dp-audit` as a user runs it: the mechanism audit on the honest pipeline (the CI check that
//! the shipped pipeline does not refute its own claim), the bound from score files, and bad
//! input.

use serde_json::Value;
use std::process::{Command, Output};

fn dp_audit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dp-audit"))
        .args(args)
        .output()
        .expect("dp-audit runs")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn the_honest_mechanism_does_not_refute_its_claim() {
    // 4,000 canaries, q = 0.02, 200 steps, σ = 0.8 (PLD: ε = 3.26 at δ = 1e-5). OS entropy, as
    // a user runs it: a correct pipeline fails with probability at most 3 × 0.001 (two
    // one-run bounds and the consistency check) plus the f-DP bounds' (measured
    // far below the claim; see tests/tests/audit.rs).
    let out = dp_audit(&[
        "mechanism",
        "--noise-multiplier",
        "0.8",
        "--sampling-rate",
        "0.02",
        "--steps",
        "200",
        "--delta",
        "1e-5",
        "--canaries",
        "4000",
        "--significance",
        "0.001",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let v = json(&out);
    let claimed = v["claimed_epsilon"].as_f64().unwrap();
    let lower = v["epsilon_lower_bound"].as_f64().unwrap();
    assert!(claimed > 1.0 && claimed < 10.0, "{v}");
    assert!(lower >= 0.0 && lower < claimed, "{v}");
    assert_eq!(v["claim_refuted"], Value::Bool(false));
    assert_eq!(v["canaries"].as_u64(), Some(4000));
    let noise_variance = v["consistency"]["noise_variance"].as_f64().unwrap();
    assert!((noise_variance - 1.0).abs() < 0.01, "{v}");
    assert!(
        v["consistency"]["participation_p_value"].as_f64().unwrap() >= 5e-4,
        "{v}"
    );
    // Progress goes to stderr as plain lines when stderr is not a terminal.
    assert!(stderr.contains("audit: step 200/200"), "stderr: {stderr}");
}

#[test]
fn bound_reads_score_files_and_agrees_with_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let (ins, outs) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    // Two well separated groups of 300.
    let held_in: Vec<f64> = (0..300).map(|i| 2.0 + (i as f64) / 100.0).collect();
    let held_out: Vec<f64> = (0..300).map(|i| (i as f64) / 100.0).collect();
    let lines = |v: &[f64]| v.iter().map(|x| format!("{x}\n")).collect::<String>();
    std::fs::write(&ins, lines(&held_in)).unwrap();
    std::fs::write(&outs, lines(&held_out)).unwrap();
    let out = dp_audit(&[
        "bound",
        "--in-scores",
        ins.to_str().unwrap(),
        "--out-scores",
        outs.to_str().unwrap(),
        "--significance",
        "0.05",
        "--delta",
        "1e-5",
        "--method",
        "one-run",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    let want = dp_accountant::audit::CanaryScores::new(held_in, held_out)
        .unwrap()
        .epsilon_lower_bound(
            dp_accountant::audit::AuditMethod::OneRun,
            0.05,
            1e-5,
            dp_accountant::audit::ThresholdChoice::Bonferroni,
        )
        .unwrap();
    assert_eq!(v["epsilon_lower_bound"].as_f64(), Some(want.epsilon));
    assert!(want.epsilon > 1.0, "{v}");
    assert_eq!(v["method"], "one-run");
}

#[test]
fn bad_input_names_the_flag_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "1.0\nabc\n").unwrap();
    let good = dir.path().join("good.txt");
    std::fs::write(&good, "1.0\n2.0\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "mechanism",
                "--noise-multiplier",
                "1",
                "--sampling-rate",
                "0.1",
                "--steps",
                "3",
                "--delta",
                "1e-5",
                "--canaries",
                "1",
                "--seed",
                "3",
            ],
            "--canaries",
        ),
        (
            vec![
                "mechanism",
                "--noise-multiplier",
                "-1",
                "--sampling-rate",
                "0.1",
                "--steps",
                "3",
                "--delta",
                "1e-5",
            ],
            "--noise-multiplier",
        ),
        (
            vec![
                "mechanism",
                "--noise-multiplier",
                "1",
                "--sampling-rate",
                "0.1",
                "--steps",
                "3",
                "--delta",
                "2",
            ],
            "--delta",
        ),
        (
            vec![
                "mechanism",
                "--noise-multiplier",
                "1",
                "--sampling-rate",
                "1.5",
                "--steps",
                "3",
                "--delta",
                "1e-5",
            ],
            "--sampling-rate",
        ),
        (
            vec![
                "bound",
                "--in-scores",
                bad.to_str().unwrap(),
                "--out-scores",
                good.to_str().unwrap(),
                "--significance",
                "0.05",
                "--delta",
                "1e-5",
            ],
            "--in-scores",
        ),
        (
            vec![
                "bound",
                "--in-scores",
                good.to_str().unwrap(),
                "--out-scores",
                good.to_str().unwrap(),
                "--significance",
                "0",
                "--delta",
                "1e-5",
            ],
            "--significance",
        ),
    ];
    for (args, flag) in cases {
        let out = dp_audit(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}
