//! The `dp-accountant` binary at the edges: huge caps and tiny or huge parameters give a clear
//! answer or one line naming the flag, JSON fields keep one type, and a closed stdout pipe is
//! a quiet end. Every run is bounded in time, so a search that never ends fails the test.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn start(args: &[&str], stdout: Stdio) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dp-accountant"))
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts")
}

/// Waits for `child` at most `LIMIT`; kills it and fails the test beyond.
fn finish(mut child: Child, args: &[&str]) -> Output {
    let begun = Instant::now();
    while child.try_wait().expect("child can be waited on").is_none() {
        if begun.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} still running after {LIMIT:?}");
        }
        sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output is read")
}

fn run(args: &[&str]) -> Output {
    finish(start(args, Stdio::piped()), args)
}

fn text(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(args: &[&str]) -> serde_json::Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    serde_json::from_str(text(&with_json).trim()).expect("one JSON object")
}

/// Bad input: exit code 2, nothing on stdout, one line on stderr containing every needle.
fn refused(args: &[&str], needles: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{args:?}: {stderr} lacks {needle}");
    }
    stderr
}

const MAX: &str = "18446744073709551615";

fn steps_args<'a>(q: &'a str, epsilon: &'a str, cap: &'a str) -> Vec<&'a str> {
    vec![
        "steps",
        "--sampling-rate",
        q,
        "--noise-multiplier",
        "1",
        "--epsilon",
        epsilon,
        "--delta",
        "1e-5",
        "--max-steps",
        cap,
        "--accountant",
        "rdp",
    ]
}

#[test]
fn steps_with_a_cap_of_u64_max_ends_and_says_the_budget_allows_more() {
    let args = steps_args("1e-15", "1", MAX);
    let v = json(&args);
    assert_eq!(v["steps"].as_u64(), Some(u64::MAX), "{v}");
    assert_eq!(v["capped"], true, "{v}");
    let out = text(&args);
    assert!(
        out.contains(&format!("at least {MAX} (the --max-steps cap)"))
            && out.contains("the budget allows more"),
        "{out}"
    );
}

#[test]
fn steps_at_the_cap_say_capped_and_below_it_are_exact() {
    // q = 0.01, σ = 1, ε = 1 at δ = 1e-5 allows exactly 4 steps by RDP.
    let exact = json(&steps_args("0.01", "1", "10"));
    assert_eq!(
        (exact["steps"].as_u64(), &exact["capped"]),
        (Some(4), &false.into())
    );
    // A cap equal to the answer is the answer, not a cap that hides more.
    let at_cap = json(&steps_args("0.01", "1", "4"));
    assert_eq!(
        (at_cap["steps"].as_u64(), &at_cap["capped"]),
        (Some(4), &false.into())
    );
    // ε = 10 allows far more than 10 steps.
    let args = steps_args("0.01", "10", "10");
    let capped = json(&args);
    assert_eq!(
        (capped["steps"].as_u64(), &capped["capped"]),
        (Some(10), &true.into())
    );
    let out = text(&args);
    assert!(
        out.starts_with("steps T = at least 10 (the --max-steps cap)"),
        "{out}"
    );
}

fn epsilon_args(sigma: &str) -> Vec<&str> {
    let mut args = vec![
        "epsilon",
        "--sampling-rate",
        "0.01",
        "--noise-multiplier",
        sigma,
    ];
    args.extend(["--steps", "10", "--delta", "1e-5", "--accountant", "rdp"]);
    args
}

/// `args` with the default accountant (PLD): without their trailing `--accountant rdp`.
fn by_default<'a>(args: &[&'a str]) -> Vec<&'a str> {
    assert_eq!(args[args.len() - 2..], ["--accountant", "rdp"]);
    args[..args.len() - 2].to_vec()
}

#[test]
fn the_default_pld_accountant_at_the_edges_answers_or_says_what_to_use() {
    // A cap of u64::MAX ends: at q = 1e-15 the pessimistic grid (Δ = 1e-4 a step) allows
    // fewer steps than RDP's ≥ u64::MAX, still an upper bound on ε.
    let v = json(&by_default(&steps_args("1e-15", "1", MAX)));
    assert_eq!(v["accountant"], "pld", "{v}");
    assert!(v["steps"].as_u64().is_some_and(|t| t > 1_000_000), "{v}");
    // σ at the bottom of the range needs a grid past the limit: one line naming the way out.
    refused(
        &by_default(&epsilon_args("1e-6")),
        &["grid points", "--accountant rdp"],
    );
    // A δ below the truncated tail mass: unbounded by PLD, said so, and RDP named.
    let mut tiny = by_default(&epsilon_args("1"));
    tiny[8] = "1e-300";
    let v = json(&tiny);
    assert!(v["epsilon"].is_null() && v["unbounded"] == true, "{v}");
    let out = text(&tiny);
    assert!(
        out.contains("pld accountant proves no finite ε") && out.contains("--accountant rdp"),
        "{out}"
    );
    let v = json(&epsilon_args("1")[..]);
    assert_eq!(v["accountant"], "rdp", "{v}");
}

#[test]
fn noise_multipliers_outside_the_supported_range_are_refused_naming_it() {
    for (sigma, shown) in [
        ("1e-300", "1e-300"),
        ("1e300", "1e300"),
        ("1e-7", "1e-7"),
        ("2e6", "2000000"),
    ] {
        let needle = format!("--noise-multiplier (σ = {shown}) must be in [1e-6, 1000000]");
        refused(&epsilon_args(sigma), &[&needle]);
    }
    // The ends of the range have answers; a huge σ costs (almost) nothing.
    let small = json(&epsilon_args("1e-6"))["epsilon"].as_f64().unwrap();
    let large = json(&epsilon_args("1e6"))["epsilon"].as_f64().unwrap();
    assert!(
        small > 1e9 && small.is_finite() && (0.0..1e-3).contains(&large),
        "{small} {large}"
    );
}

#[test]
fn json_fields_keep_one_type_and_an_unbounded_epsilon_is_null() {
    // PLD cannot certify any finite ε at δ = 1e-30 (its mass at +∞ is larger).
    let mut args = by_default(&epsilon_args("1"));
    args[8] = "1e-30";
    let v = json(&args);
    assert!(v["epsilon"].is_null() && v["unbounded"] == true, "{v}");
    assert!(text(&args).starts_with("ε = ∞ at δ = 1e-30 (unbounded"));
    let finite = json(&epsilon_args("1"));
    assert!(
        finite["epsilon"].is_f64() && finite["unbounded"] == false,
        "{finite}"
    );
    // Every field of every subcommand: reals are numbers (or null), flags are booleans.
    let q = ["--sampling-rate", "0.01", "--delta", "1e-5"];
    let queries: [&[&str]; 4] = [
        &["epsilon", "--noise-multiplier", "1", "--steps", "10"],
        &[
            "delta",
            "--noise-multiplier",
            "1",
            "--steps",
            "10",
            "--epsilon",
            "1",
        ],
        &["noise", "--steps", "10", "--epsilon", "1"],
        &["steps", "--noise-multiplier", "1", "--epsilon", "1"],
    ];
    for query in queries {
        let mut args = query.to_vec();
        if query[0] == "delta" {
            args.extend(&q[..2]);
        } else {
            args.extend(q);
        }
        for (key, value) in json(&args).as_object().expect("an object") {
            let ok = match key.as_str() {
                "accountant" => value.is_string(),
                "unbounded" | "capped" => value.is_boolean(),
                "steps" => value.is_u64(),
                _ => value.is_number() || value.is_null(),
            };
            assert!(ok, "{args:?}: {key} = {value}");
        }
    }
}

#[test]
fn negative_numbers_are_refused_naming_the_flag_and_value() {
    let mut steps = epsilon_args("1");
    steps[6] = "-5";
    refused(&steps, &["--steps", "'-5'"]);
    let mut cap = steps_args("0.01", "1", "-1");
    refused(&cap, &["--max-steps", "'-1'"]);
    cap[10] = "1.5";
    refused(&cap, &["--max-steps", "'1.5'"]);
    let mut delta = epsilon_args("1");
    delta[8] = "-1e-5";
    refused(&delta, &["--delta (δ = -1e-5)"]);
    let sizes = ["epsilon", "--dataset-size", "-100", "--batch-size", "10"];
    let mut args = sizes.to_vec();
    args.extend(&epsilon_args("1")[3..]);
    refused(&args, &["--dataset-size", "'-100'"]);
}

#[test]
fn tiny_and_huge_numbers_print_in_scientific_notation() {
    let mut args = epsilon_args("1");
    args[8] = "1e-300";
    let out = text(&args);
    assert!(out.contains("at δ = 1e-300,"), "{out}");
    assert!(out.lines().all(|line| line.chars().count() < 120), "{out}");
    let big = text(&epsilon_args("1e-6"));
    assert!(
        big.starts_with("ε = 5.4") && big.contains("e12 at δ = 1e-5"),
        "{big}"
    );
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    // Calibration takes a while, so the answer is written after the reader has gone.
    let args = [
        "noise",
        "--sampling-rate",
        "0.08192",
        "--steps",
        "875",
        "--epsilon",
        "1",
        "--delta",
        "1e-5",
    ];
    let mut child = start(&args, Stdio::piped());
    drop(child.stdout.take());
    let out = finish(child, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    // Sanity check: with the pipe open the same run prints its answer.
    let mut child = start(&args, Stdio::piped());
    let mut answer = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut answer)
        .expect("stdout is read");
    assert!(finish(child, &args).status.success() && answer.starts_with("noise_multiplier"));
}
