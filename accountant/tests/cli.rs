//! The `dp-accountant` binary: JSON answers agree with the library, bad input exits 2 with
//! one line naming the flag.

use dp_accountant::PrivacyAccountant as _;
use dp_accountant::{DpEvent, PldAccountant, RdpAccountant};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dp-accountant"))
        .args(args)
        .output()
        .expect("binary runs")
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.trim().lines().count(),
        1,
        "exactly one JSON object: {stdout}"
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

fn field(args: &[&str], key: &str) -> f64 {
    json(args)[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {args:?}"))
}

#[test]
fn epsilon_json_is_the_library_value() {
    let v = json(&[
        "epsilon",
        "--dataset-size",
        "50000",
        "--batch-size",
        "4096",
        "--noise-multiplier",
        "3",
        "--steps",
        "2468",
        "--delta",
        "1e-5",
        "--accountant",
        "rdp",
        "--json",
    ]);
    let mut a = RdpAccountant::new();
    a.compose(&DpEvent::poisson_gaussian(4096.0 / 50000.0, 3.0).self_composed(2468))
        .unwrap();
    let expected = a.epsilon_and_order(1e-5).unwrap();
    assert_eq!(v["epsilon"].as_f64().unwrap(), expected.epsilon);
    assert_eq!(v["order"].as_f64().unwrap(), expected.order);
    assert_eq!(v["delta"].as_f64().unwrap(), 1e-5);
    assert_eq!(v["accountant"], "rdp");
}

#[test]
fn pld_is_the_default_accountant() {
    let v = json(&[
        "epsilon",
        "--dataset-size",
        "60000",
        "--batch-size",
        "2048",
        "--noise-multiplier",
        "1.8",
        "--steps",
        "1172",
        "--delta",
        "1e-5",
        "--json",
    ]);
    let mut a = PldAccountant::new();
    a.compose(&DpEvent::poisson_gaussian(2048.0 / 60000.0, 1.8).self_composed(1172))
        .unwrap();
    assert_eq!(v["accountant"], "pld");
    assert_eq!(v["epsilon"].as_f64().unwrap(), a.epsilon(1e-5).unwrap());
}

#[test]
fn pld_is_tighter_than_rdp_on_the_cli() {
    let base = [
        "epsilon",
        "--sampling-rate",
        "0.01",
        "--noise-multiplier",
        "1",
        "--steps",
        "1000",
        "--delta",
        "1e-5",
        "--json",
    ];
    let pld = json(&base);
    let mut with_rdp = base.to_vec();
    with_rdp.extend(["--accountant", "rdp"]);
    let rdp = field(&with_rdp, "epsilon");
    assert!(pld.get("order").is_none());
    assert!(pld["epsilon"].as_f64().unwrap() < rdp);
}

#[test]
fn noise_steps_and_delta_answer_consistently() {
    let q = ["--sampling-rate", "0.08192", "--accountant", "rdp"];
    let mut noise = vec!["noise"];
    noise.extend(q);
    noise.extend([
        "--steps",
        "875",
        "--epsilon",
        "1",
        "--delta",
        "1e-5",
        "--json",
    ]);
    let sigma = field(&noise, "noise_multiplier");
    assert!((sigma - 9.8896).abs() < 0.01, "{sigma}"); // dp_accounting 0.6: 9.88956
    let s = sigma.to_string();
    let mut eps = vec!["epsilon"];
    eps.extend(q);
    eps.extend([
        "--noise-multiplier",
        &s,
        "--steps",
        "875",
        "--delta",
        "1e-5",
        "--json",
    ]);
    assert!(field(&eps, "epsilon") <= 1.0);
    let mut steps = vec!["steps"];
    steps.extend(q);
    steps.extend([
        "--noise-multiplier",
        &s,
        "--epsilon",
        "1",
        "--delta",
        "1e-5",
        "--json",
    ]);
    let t = field(&steps, "steps");
    assert!((875.0..900.0).contains(&t), "{t}");
    let mut delta = vec!["delta"];
    delta.extend(q);
    delta.extend([
        "--noise-multiplier",
        &s,
        "--steps",
        "875",
        "--epsilon",
        "1",
        "--json",
    ]);
    let d = field(&delta, "delta");
    assert!(d <= 1e-5 && d > 1e-7, "{d}");
}

#[test]
fn human_output_names_what_it_computed() {
    let out = run(&[
        "epsilon",
        "--sampling-rate",
        "0.01",
        "--noise-multiplier",
        "1",
        "--steps",
        "100",
        "--delta",
        "1e-5",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("ε = ") && text.contains("noise_multiplier = 1"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_flag() {
    let eps = |extra: &[&'static str]| {
        let mut v = vec!["epsilon"];
        v.extend_from_slice(extra);
        v
    };
    let ok_rest = [
        "--noise-multiplier",
        "1",
        "--steps",
        "10",
        "--delta",
        "1e-5",
    ];
    let with_q = |q: &'static str| {
        let mut v = eps(&["--sampling-rate", q]);
        v.extend(ok_rest);
        v
    };
    let q01 = |rest: &[&'static str]| {
        let mut v = eps(&["--sampling-rate", "0.1"]);
        v.extend_from_slice(rest);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (with_q("1.5"), "--sampling-rate (q = 1.5)"),
        (with_q("0"), "--sampling-rate (q = 0)"),
        (with_q("abc"), "--sampling-rate"),
        (
            q01(&[
                "--noise-multiplier",
                "0",
                "--steps",
                "10",
                "--delta",
                "1e-5",
            ]),
            "--noise-multiplier (σ = 0)",
        ),
        (
            q01(&[
                "--noise-multiplier",
                "-2",
                "--steps",
                "10",
                "--delta",
                "1e-5",
            ]),
            "--noise-multiplier (σ = -2)",
        ),
        (
            q01(&["--noise-multiplier", "1", "--steps", "0", "--delta", "1e-5"]),
            "--steps (T = 0)",
        ),
        (
            q01(&["--noise-multiplier", "1", "--steps", "10", "--delta", "1"]),
            "--delta (δ = 1)",
        ),
        (
            q01(&["--noise-multiplier", "1", "--steps", "10", "--delta", "0"]),
            "--delta (δ = 0)",
        ),
        (
            q01(&[
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
                "--delta",
                "1e-5",
                "--unknown",
            ]),
            "--unknown",
        ),
        (
            q01(&[
                "--noise-multiplier",
                "1",
                "--steps",
                "10",
                "--delta",
                "1e-5",
                "--neighboring-relation",
                "replace-one",
                "--accountant",
                "rdp",
            ]),
            "replace-one",
        ),
        (
            {
                let mut v = eps(&["--dataset-size", "100", "--batch-size", "200"]);
                v.extend(ok_rest);
                v
            },
            "--batch-size (B = 200)",
        ),
        (eps(&ok_rest), "--sampling-rate"),
        (
            vec![
                "noise",
                "--sampling-rate",
                "0.1",
                "--steps",
                "10",
                "--epsilon",
                "-1",
                "--delta",
                "1e-5",
            ],
            "--epsilon (ε = -1)",
        ),
        (
            vec![
                "steps",
                "--sampling-rate",
                "0.5",
                "--noise-multiplier",
                "0.5",
                "--epsilon",
                "0.01",
                "--delta",
                "1e-5",
            ],
            "single step",
        ),
    ];
    for (args, needle) in cases {
        let out = run(&args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr} lacks {needle}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!stderr.contains("panicked"), "{args:?}");
    }
}

#[test]
fn help_texts_have_no_rustdoc_link_syntax() {
    for sub in [&[][..], &["epsilon"], &["delta"], &["noise"], &["steps"]] {
        let mut args = sub.to_vec();
        args.push("--help");
        let o = run(&args);
        let help = String::from_utf8(o.stdout).unwrap();
        assert!(
            o.status.success() && help.contains("Usage"),
            "{args:?}: {help}"
        );
        for link in ["[`", "`]", "]("] {
            assert!(!help.contains(link), "{args:?} shows {link:?}:\n{help}");
        }
    }
    let o = run(&["epsilon", "--help"]);
    let help = String::from_utf8(o.stdout).unwrap();
    assert!(help.contains("pld (privacy loss distributions"), "{help}");
}
