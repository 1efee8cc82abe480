//! `dp-compare-plot`: test accuracy against ε spent, for dp-train runs (one or several, each
//! with its label) and an Opacus run of `../shared/peers/opacus_fmnist.py`, on one chart.
//!
//! ```text
//! cargo run --release -p examples --bin dp-compare-plot -- \
//!     --run runs/fmnist-cnn-eps3 --opacus opacus_fmnist.json --out docs/fmnist-eps3.png
//! cargo run --release -p examples --bin dp-compare-plot -- \
//!     --run runs/cnn --label "end-to-end CNN" --run runs/lin --label "ScatterNet + linear" \
//!     --epsilon-label "ε spent (PLD)" --out docs/fmnist-scatternet.png
//! ```

use clap::Parser;
use examples::error::TrainError;
use examples::report::{accuracy_series, line_plot, read_evaluations};
use plotters::style::RGBColor;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dp-compare-plot",
    about = "Accuracy vs ε of a dp-train run and an Opacus run"
)]
struct Args {
    /// dp-train run directory (with metrics.jsonl); repeat for several runs.
    #[arg(long, required = true)]
    run: Vec<PathBuf>,
    /// Legend of each --run, in order (default: "dp-burn"; with several runs, give one each).
    #[arg(long)]
    label: Vec<String>,
    /// The x axis's label: which accountant's ε the runs report.
    #[arg(long, default_value = "ε spent (RDP)")]
    epsilon_label: String,
    /// JSON report of opacus_fmnist.py.
    #[arg(long)]
    opacus: Option<PathBuf>,
    /// PNG to write.
    #[arg(long)]
    out: PathBuf,
    /// Chart title.
    #[arg(long, default_value = "Fashion-MNIST, tanh CNN, δ = 1e-5")]
    title: String,
}

fn opacus_series(path: &PathBuf) -> Result<Vec<(f64, f64)>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::malformed(path, e.to_string()))?;
    let epochs = json["epochs"]
        .as_array()
        .ok_or_else(|| TrainError::malformed(path, "no \"epochs\" array"))?;
    epochs
        .iter()
        .map(
            |e| match (e["epsilon_opacus_rdp"].as_f64(), e["test_acc"].as_f64()) {
                (Some(eps), Some(acc)) => Ok((eps, 100.0 * acc)),
                _ => Err(TrainError::malformed(
                    path,
                    "an epoch without epsilon_opacus_rdp/test_acc",
                )),
            },
        )
        .collect()
}

fn run(args: Args) -> Result<(), TrainError> {
    if args.run.len() > 1 && args.label.len() != args.run.len() {
        return Err(TrainError::Usage(format!(
            "{} runs but {} labels: give one --label per --run",
            args.run.len(),
            args.label.len()
        )));
    }
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    let mut series = Vec::new();
    for (i, run) in args.run.iter().enumerate() {
        let evaluations = read_evaluations(run)?;
        if evaluations.is_empty() {
            return Err(TrainError::Usage(format!(
                "no evaluations in {}",
                run.display()
            )));
        }
        let label = args.label.get(i).map_or("dp-burn", String::as_str);
        let mut of_run = accuracy_series(&evaluations, label, &format!("{label}, EMA weights"));
        if args.run.len() > 1 {
            // Several runs: one colour each, the EMA curve only for a single run.
            of_run.truncate(1);
            of_run[0].2 = COLORS[i % COLORS.len()];
        }
        series.extend(of_run);
    }
    if let Some(path) = &args.opacus {
        series.push((
            "Opacus 1.6".into(),
            opacus_series(path)?,
            RGBColor(44, 160, 44),
        ));
    }
    line_plot(
        &args.out,
        &args.title,
        &args.epsilon_label,
        "test accuracy (%)",
        &series,
    )
}

fn main() -> ExitCode {
    let args: Args = match dp_accountant::cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
