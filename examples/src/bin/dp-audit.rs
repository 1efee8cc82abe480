//! `dp-audit`: empirical lower bounds on ε, to set against what an accountant claims.
//!
//! `dp-audit mechanism --noise-multiplier 0.717 --sampling-rate 0.005 --steps 600 --delta 1e-5`
//! audits the DP-SGD mechanism alone through dp-core's own code (`dp_core::audit`): canaries
//! sampled, clipped, noised and charged by `DpOptimizer`, scored from every step's release and
//! from the final model, bounded by the one-run and f-DP methods. It prints the claimed ε, the
//! bounds and a verdict, and exits 1 when a bound exceeds the claim.
//!
//! `dp-audit bound --in-scores in.txt --out-scores out.txt --significance 0.05 --delta 1e-5
//! --method fdp` turns any scores (one number per line; higher means "more likely in") into a
//! bound, for audits of other systems.
//!
//! Human output by default, one JSON object on stdout with `--json`; bad input: one line on
//! stderr naming the flag, exit 2.

use burn::backend::{Autodiff, Flex};
use clap::{Parser, Subcommand, ValueEnum};
use dp_accountant::audit::{AuditMethod, CanaryScores, LowerBound, ThresholdChoice};
use dp_accountant::cli::{parse_args, print_stdout};
use dp_accountant::AccountantKind;
use dp_core::audit::{MechanismAudit, MechanismAuditReport};
use dp_core::DpError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "dp-audit", about = "Empirical lower bounds on ε from canaries")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Audit the DP-SGD mechanism alone (canaries through dp-core, no model).
    Mechanism(MechanismArgs),
    /// Turn canary scores into a lower bound on ε.
    Bound(BoundArgs),
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
struct MechanismArgs {
    /// Noise multiplier σ (noise std over the clipping norm), > 0.
    #[arg(long)]
    noise_multiplier: f64,
    /// Poisson sampling rate q ∈ (0, 1].
    #[arg(long)]
    sampling_rate: f64,
    /// Steps T ≥ 1.
    #[arg(long)]
    steps: u64,
    /// δ of the claim and of the bounds, in (0, 1).
    #[arg(long)]
    delta: f64,
    /// Canaries m ≥ 2 (each in with probability ½).
    #[arg(long, default_value_t = 5000)]
    canaries: usize,
    /// Significance of the bounds (one minus their confidence), in (0, 1).
    #[arg(long, default_value_t = 0.05)]
    significance: f64,
    /// A canary's gradient norm over the clipping norm, ≥ 1.
    #[arg(long, default_value_t = dp_core::audit::DEFAULT_CANARY_NORM)]
    canary_norm: f64,
    /// Accountant that makes the claim.
    #[arg(long, value_enum, default_value_t = AccountantArg::Pld)]
    accountant: AccountantArg,
    /// Seed for membership, sampling and noise: reproducible, not secure.
    #[arg(long)]
    seed: Option<u64>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress on stderr.
    #[arg(long)]
    no_progress: bool,
}

#[derive(clap::Args, Debug)]
#[command(allow_negative_numbers = true)]
struct BoundArgs {
    /// Scores of canaries that were in (one number per line).
    #[arg(long)]
    in_scores: PathBuf,
    /// Scores of canaries that were out (one number per line).
    #[arg(long)]
    out_scores: PathBuf,
    /// Significance (one minus the confidence), in (0, 1).
    #[arg(long)]
    significance: f64,
    /// δ, in (0, 1).
    #[arg(long)]
    delta: f64,
    /// Method: fdp (Mahloujifar, Melis & Chaudhuri 2024, Gaussian trade-off curve) or
    /// one-run (Steinke, Nasr & Jagielski 2023).
    #[arg(long, default_value = "fdp", value_parser = parse_method)]
    method: AuditMethod,
    /// A threshold fixed before the scores were seen (default: the best of the ROC hull's,
    /// Bonferroni-corrected).
    #[arg(long)]
    threshold: Option<f64>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum AccountantArg {
    Rdp,
    Pld,
}

fn parse_method(s: &str) -> Result<AuditMethod, String> {
    s.parse()
        .map_err(|e: dp_accountant::AccountantError| e.to_string())
}

fn accountant_name(a: AccountantArg) -> &'static str {
    match a {
        AccountantArg::Rdp => "rdp",
        AccountantArg::Pld => "pld",
    }
}

/// One line on stderr naming the flag; exit 2.
fn bad(flag: &str, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {flag}: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Args = match parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match args.command {
        Command::Mechanism(a) => mechanism(a),
        Command::Bound(a) => bound(a),
    }
}

/// Progress on stderr: a bar on a terminal, a line at every tenth of the steps otherwise.
fn progress(total: u64, quiet: bool) -> impl FnMut(u64, u64) {
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {pos}/{len} steps [{elapsed_precise} < {eta_precise}]",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let every = total.div_ceil(10).max(1);
    move |done, total| match &bar {
        Some(bar) => {
            bar.set_position(done);
            if done == total {
                bar.finish_and_clear();
            }
        }
        None if !quiet && (done.is_multiple_of(every) || done == total) => {
            eprintln!("audit: step {done}/{total}");
        }
        None => {}
    }
}

fn bound_json(b: &LowerBound) -> serde_json::Value {
    json!({
        "epsilon_lower_bound": b.epsilon,
        "threshold": if b.threshold.is_finite() { json!(b.threshold) } else { json!(null) },
        "guesses": b.guesses,
        "correct": b.correct,
        "rule_significance": b.rule_significance,
    })
}

fn report_json(r: &MechanismAuditReport, a: &MechanismArgs) -> serde_json::Value {
    let pair = |b: &dp_core::audit::AuditBounds| json!({"one_run": bound_json(&b.one_run), "fdp": bound_json(&b.fdp)});
    json!({
        "claimed_epsilon": r.claimed_epsilon,
        "delta": r.delta,
        "accountant": accountant_name(a.accountant),
        "noise_multiplier": a.noise_multiplier,
        "sampling_rate": a.sampling_rate,
        "steps": a.steps,
        "canaries": r.canaries,
        "canaries_in": r.included,
        "significance": r.significance,
        "white_box": pair(&r.white_box),
        "final_model": pair(&r.final_model),
        "epsilon_lower_bound": r.largest_bound(),
        "consistency": r.consistency,
        "claim_refuted": r.claim_refuted(),
        "verdict_significance": r.verdict_significance(),
    })
}

fn report_text(r: &MechanismAuditReport, a: &MechanismArgs) -> String {
    let best = r.largest_bound();
    let by = if best <= r.claimed_epsilon {
        "the consistency check: the released noise or participation is not what was charged"
    } else if r
        .white_box
        .one_run
        .epsilon
        .max(r.final_model.one_run.epsilon)
        > r.claimed_epsilon
    {
        "a one-run bound: the run is not (ε, δ)-DP as claimed"
    } else {
        "an f-DP bound: the run is less private than the Gaussian trade-off curve of the claimed (ε, δ)"
    };
    let verdict = if r.claim_refuted() {
        format!(
            "REFUTED by {by} (largest lower bound {best:.3}; wrong with probability at most {})",
            r.verdict_significance()
        )
    } else {
        format!(
            "consistent with the claim (largest lower bound {best:.3} ≤ {:.3})",
            r.claimed_epsilon
        )
    };
    let consistency = match &r.consistency {
        Some(c) => format!(
            "noise variance {:.4} (charged: 1; p = {:.3e}), participation {:.5} (charged: q; p = {:.3e})",
            c.noise_variance, c.noise_p_value, c.participation, c.participation_p_value
        ),
        None => "not run (every canary was in)".into(),
    };
    format!(
        "claimed ε = {:.4} at δ = {:e} ({} accountant; σ = {}, q = {}, T = {})\n\
         audit: {} canaries, {} in; significance {}\n\
         \x20 white box (every step): f-DP ε ≥ {:.4}, one-run ε ≥ {:.4}\n\
         \x20 final model only:       f-DP ε ≥ {:.4}, one-run ε ≥ {:.4}\n\
         \x20 consistency:            {consistency}\n\
         verdict: {verdict}",
        r.claimed_epsilon,
        r.delta,
        accountant_name(a.accountant),
        a.noise_multiplier,
        a.sampling_rate,
        a.steps,
        r.canaries,
        r.included,
        r.significance,
        r.white_box.fdp.epsilon,
        r.white_box.one_run.epsilon,
        r.final_model.fdp.epsilon,
        r.final_model.one_run.epsilon,
    )
}

fn mechanism(a: MechanismArgs) -> ExitCode {
    let mut audit = MechanismAudit::new(a.noise_multiplier, a.sampling_rate, a.steps, a.delta);
    audit.canaries = a.canaries;
    audit.significance = a.significance;
    audit.canary_norm = a.canary_norm;
    audit.accountant = match a.accountant {
        AccountantArg::Rdp => AccountantKind::Rdp,
        AccountantArg::Pld => AccountantKind::Pld,
    };
    audit.seed = a.seed;
    // The settings' field names are the flags' names with dashes.
    if let Err(e) = audit.validate() {
        return match &e {
            DpError::InvalidParameter { name, .. } => {
                bad(&format!("--{}", name.replace('_', "-")), e)
            }
            _ => bad("dp-audit mechanism", e),
        };
    }
    if a.seed.is_some() {
        eprintln!("warning: --seed makes membership, sampling and noise reproducible: for tests, not for privacy");
    }
    let report =
        match audit.run::<Autodiff<Flex>>(&Default::default(), progress(a.steps, a.no_progress)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let text = if a.json {
        report_json(&report, &a).to_string()
    } else {
        report_text(&report, &a)
    };
    let code = print_stdout(&text);
    if code != ExitCode::SUCCESS {
        return code;
    }
    if report.claim_refuted() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn read_scores(path: &Path, flag: &str) -> Result<Vec<f64>, ExitCode> {
    let text =
        std::fs::read_to_string(path).map_err(|e| bad(flag, format!("{}: {e}", path.display())))?;
    let mut scores = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match line.parse::<f64>() {
            Ok(v) if v.is_finite() => scores.push(v),
            _ => {
                return Err(bad(
                    flag,
                    format!(
                        "{} line {}: {line:?} is not a finite number",
                        path.display(),
                        n + 1
                    ),
                ))
            }
        }
    }
    if scores.is_empty() {
        return Err(bad(flag, format!("{}: no scores", path.display())));
    }
    Ok(scores)
}

fn bound(a: BoundArgs) -> ExitCode {
    if !(a.significance > 0.0 && a.significance < 1.0) {
        return bad(
            "--significance",
            format!("{} must be in (0, 1)", a.significance),
        );
    }
    if !(a.delta > 0.0 && a.delta < 1.0) {
        return bad("--delta", format!("{} must be in (0, 1)", a.delta));
    }
    if a.threshold.is_some_and(f64::is_nan) {
        return bad("--threshold", "NaN is not a threshold");
    }
    let (held_in, held_out) = match (
        read_scores(&a.in_scores, "--in-scores"),
        read_scores(&a.out_scores, "--out-scores"),
    ) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let (n_in, n_out) = (held_in.len(), held_out.len());
    let m = (n_in + n_out) as f64;
    if ((n_in as f64 - m / 2.0) / (m / 4.0).sqrt()).abs() > 4.0 {
        eprintln!(
            "warning: {n_in} in and {n_out} out is unlikely for canaries put in with probability ½ each; \
             the bound is valid only for such canaries"
        );
    }
    let method = a.method;
    let choice = a
        .threshold
        .map_or(ThresholdChoice::Bonferroni, ThresholdChoice::Fixed);
    let result = CanaryScores::new(held_in, held_out)
        .and_then(|s| s.epsilon_lower_bound(method, a.significance, a.delta, choice));
    let b = match result {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if a.json {
        let mut v = bound_json(&b);
        v["method"] = json!(method.name());
        v["significance"] = json!(a.significance);
        v["delta"] = json!(a.delta);
        v["canaries_in"] = json!(n_in);
        v["canaries_out"] = json!(n_out);
        v.to_string()
    } else {
        format!(
            "ε ≥ {:.4} at δ = {} with confidence {} ({} method; {} in, {} out; rule: {} of {} guesses right at threshold {})",
            b.epsilon, a.delta, 1.0 - a.significance, method.name(), n_in, n_out, b.correct, b.guesses, b.threshold
        )
    };
    print_stdout(&text)
}
