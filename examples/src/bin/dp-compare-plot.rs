//! `dp-compare-plot`: test accuracy against ε spent, for a dp-train run and an Opacus run of
//! `../shared/peers/opacus_fmnist.py`, on one chart.
//!
//! ```text
//! cargo run --release -p examples --bin dp-compare-plot -- \
//!     --run runs/fmnist-cnn-eps3 --opacus opacus_fmnist.json --out docs/fmnist-eps3.png
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
    /// dp-train run directory (with metrics.jsonl).
    #[arg(long)]
    run: PathBuf,
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
    let evaluations = read_evaluations(&args.run)?;
    if evaluations.is_empty() {
        return Err(TrainError::Usage(format!(
            "no evaluations in {}",
            args.run.display()
        )));
    }
    let mut series = accuracy_series(&evaluations, "dp-burn", "dp-burn, EMA weights");
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
        "ε spent (RDP)",
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
