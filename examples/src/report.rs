//! What a run leaves in its directory: `metrics.jsonl` (one line per evaluation),
//! `train_loss.csv` (one line per step), `summary.json`, and two PNG plots.
//!
//! The training loss is computed on the private training batches: it is a diagnostic for the
//! person running the job and is not covered by the privacy guarantee (only the model and
//! the evaluation on public test data are).

use crate::error::{Result, TrainError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// One evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Logical steps taken.
    pub step: u64,
    /// Epochs (steps · q).
    pub epoch: f64,
    /// ε spent at the run's δ.
    pub epsilon: f64,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Test accuracy of the current weights.
    pub test_accuracy: f64,
    /// Test loss of the current weights.
    pub test_loss: f64,
    /// Test accuracy of the EMA weights.
    pub test_accuracy_ema: Option<f64>,
    /// Seconds of training so far (evaluations included).
    pub wall_s: f64,
    /// Seconds spent in training steps since the previous evaluation (no evaluation time).
    #[serde(default)]
    pub train_s: f64,
}

fn test_set() -> String {
    "test".into()
}

fn one_peer() -> usize {
    1
}

/// The end of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Preset.
    pub preset: String,
    /// The images the accuracies were measured on: `test`, or `validation` (with
    /// `--validation N`: the last N training images, held out of training; the test images
    /// are not used).
    #[serde(default = "test_set")]
    pub evaluated_on: String,
    /// Final test accuracy (on `evaluated_on`).
    pub test_accuracy: f64,
    /// Final test accuracy of the EMA weights (the current weights' if there is no EMA).
    pub test_accuracy_ema: f64,
    /// ε spent (an upper bound, by `accountant`).
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Accountant that charged the run.
    pub accountant: String,
    /// ε of the same run by the RDP accountant (`epsilon` itself if RDP charged it).
    #[serde(default)]
    pub epsilon_rdp: Option<f64>,
    /// ε of the same run by the PLD accountant (`epsilon` itself if PLD charged it).
    pub epsilon_pld: Option<f64>,
    /// σ.
    pub noise_multiplier: f64,
    /// q.
    pub sampling_rate: f64,
    /// Logical steps charged.
    pub steps: u64,
    /// Steps charged after the last checkpoint of an interrupted run (their updates were
    /// lost, their cost is kept).
    pub lost_steps: u64,
    /// Training examples.
    pub dataset_size: usize,
    /// Expected logical batch size.
    pub batch_size: usize,
    /// C.
    pub clip_norm: f64,
    /// K.
    pub augmult: usize,
    /// Whether the run was seeded with `--seed` (its noise is then reproducible by anyone who
    /// knows the seed: not a private release).
    #[serde(default)]
    pub seeded: bool,
    /// Wall-clock seconds of training (evaluations included).
    pub wall_s: f64,
    /// Mean wall-clock seconds per epoch (evaluations included).
    pub epoch_s: f64,
    /// Mean seconds per epoch spent in training steps (evaluations excluded).
    pub epoch_train_s: f64,
    /// ε the preset's full run spends on the real dataset.
    pub preset_full_run_epsilon: f64,
    /// The name of each class, by label (the model's output `i` is class `i`).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Peers of the data-parallel group that trained the run (1: one device).
    #[serde(default = "one_peer")]
    pub peers: usize,
    /// The privacy audit of `--audit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Box<AuditSummary>>,
}

/// What the canaries of `dp-train --audit` showed: a lower bound on ε that holds with
/// confidence 1 − `significance`, to set against the claimed (upper-bound) ε.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    /// The lower bound on ε at the run's δ.
    pub epsilon_lower_bound: f64,
    /// `one-run` (Steinke, Nasr & Jagielski 2023) or `fdp` (Mahloujifar, Melis & Chaudhuri
    /// 2024).
    pub method: String,
    /// One minus the bound's confidence.
    pub significance: f64,
    /// m.
    pub canaries: usize,
    /// Canaries that were in the dataset.
    pub included: usize,
    /// What the scores were computed from.
    pub scores: String,
    /// Whether the bound exceeds the claimed ε (the claim is then refuted).
    pub exceeds_claim: bool,
    /// Whether the released noise and the canaries' participation fit the charged σ and q
    /// (`None` when every canary was in or nothing was observed).
    #[serde(default)]
    pub consistency: Option<dp_core::audit::ConsistencyCheck>,
}

/// The header line of `train_loss.csv`.
pub const LOSS_HEADER: &str = "step,loss";

/// Appends one line to `path` (created with mode 0600).
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = dp_core::files::private_options()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    writeln!(file, "{line}").map_err(|e| TrainError::io(path, e))
}

/// Appends `evaluation` to `metrics.jsonl` in `dir`.
pub fn append_evaluation(dir: &Path, evaluation: &Evaluation) -> Result<()> {
    let line = serde_json::to_string(evaluation).map_err(|e| TrainError::Usage(e.to_string()))?;
    append_line(&dir.join("metrics.jsonl"), &line)
}

/// Reads `metrics.jsonl` of `dir` (empty if absent).
pub fn read_evaluations(dir: &Path) -> Result<Vec<Evaluation>> {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| TrainError::malformed(&path, e.to_string())))
        .collect()
}

/// Reads `train_loss.csv` of `dir` as (step, loss) pairs (empty if absent).
pub fn read_losses(dir: &Path) -> Result<Vec<(u64, f64)>> {
    let path = dir.join("train_loss.csv");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Vec::new());
    };
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (s, v) = l
                .split_once(',')
                .ok_or_else(|| TrainError::malformed(&path, format!("bad line {l:?}")))?;
            let bad = |_| TrainError::malformed(&path, format!("bad line {l:?}"));
            Ok((
                s.parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
                v.parse()
                    .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
            ))
        })
        .collect()
}

/// Writes `summary.json` in `dir` (atomically, mode 0600): the mark of a finished run.
pub fn write_summary(dir: &Path, summary: &Summary) -> Result<()> {
    let path = dir.join("summary.json");
    let text =
        serde_json::to_string_pretty(summary).map_err(|e| TrainError::Usage(e.to_string()))?;
    Ok(dp_core::files::write_atomically(
        &path,
        (text + "\n").as_bytes(),
    )?)
}

pub use plots::{accuracy_series, line_plot, write_plots, Series};

mod plots {
    use super::{read_evaluations, read_losses, Evaluation};
    use crate::error::{Result, TrainError};
    use plotters::prelude::*;
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    const FONT_PATHS: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ];

    /// Registers a system font for plot text once; false if none was found (plots are then
    /// drawn without text).
    fn font_available() -> bool {
        static FOUND: OnceLock<bool> = OnceLock::new();
        *FOUND.get_or_init(|| {
            for path in FONT_PATHS {
                if let Ok(bytes) = std::fs::read(path) {
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                        .is_ok()
                    {
                        return true;
                    }
                }
            }
            false
        })
    }

    fn private(path: &Path) -> Result<()> {
        dp_core::files::make_private(path).map_err(|e| TrainError::io(path, e))
    }

    fn fail(path: &Path, e: impl std::fmt::Display) -> TrainError {
        TrainError::malformed(path, format!("could not draw the plot: {e}"))
    }

    fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
        let span = (hi - lo).abs().max(1e-9);
        (lo - 0.05 * span)..(hi + 0.05 * span)
    }

    /// A named line: its points and its colour.
    pub type Series = (String, Vec<(f64, f64)>, RGBColor);

    /// Test accuracy (%) against ε spent: one line for the current weights, and one for the EMA
    /// weights when every evaluation has them.
    pub fn accuracy_series(evaluations: &[Evaluation], current: &str, ema: &str) -> Vec<Series> {
        let mut series: Vec<Series> = vec![(
            current.into(),
            evaluations
                .iter()
                .map(|e| (e.epsilon, 100.0 * e.test_accuracy))
                .collect(),
            RGBColor(31, 119, 180),
        )];
        if evaluations.iter().all(|e| e.test_accuracy_ema.is_some()) {
            series.push((
                ema.into(),
                evaluations
                    .iter()
                    .filter_map(|e| e.test_accuracy_ema.map(|a| (e.epsilon, 100.0 * a)))
                    .collect(),
                RGBColor(255, 127, 14),
            ));
        }
        series
    }

    /// A vertical line at `x` spanning the y range of `series`.
    fn vertical_line(name: String, x: f64, series: &[Series], color: RGBColor) -> Series {
        let ys = series.iter().flat_map(|s| s.1.iter().map(|p| p.1));
        let (lo, hi) = ys.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
        let (lo, hi) = if lo > hi { (0.0, 100.0) } else { (lo, hi) };
        (name, vec![(x, lo), (x, hi)], color)
    }

    /// Draws `series` as lines (with markers when short) into the PNG at `path`.
    pub fn line_plot(
        path: &Path,
        title: &str,
        x_label: &str,
        y_label: &str,
        series: &[Series],
    ) -> Result<()> {
        let points = series.iter().flat_map(|s| s.1.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            return Ok(());
        }
        let text = font_available();
        let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(path, e))?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(20);
        if text {
            builder
                .caption(title, ("sans-serif", 22))
                .x_label_area_size(45)
                .y_label_area_size(65);
        }
        let mut chart = builder
            .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
            .map_err(|e| fail(path, e))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc(x_label).y_desc(y_label);
        } else {
            mesh.disable_x_mesh()
                .disable_y_mesh()
                .x_labels(0)
                .y_labels(0);
        }
        mesh.draw().map_err(|e| fail(path, e))?;
        for (name, points, color) in series {
            let color = *color;
            let drawn = chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| fail(path, e))?;
            if text {
                drawn.label(name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            if points.len() <= 100 {
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| fail(path, e))?;
            }
        }
        if text && series.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| fail(path, e))?;
        }
        root.present().map_err(|e| fail(path, e))
    }

    /// Draws `accuracy_vs_epsilon.png` and `loss_vs_steps.png` in `dir` from its metric files;
    /// returns the paths written.
    /// With `audit_epsilon`, the accuracy plot marks the audit's lower bound on ε with a
    /// vertical line.
    /// `evaluated_on` names the images the accuracies were measured on (`test`, `validation`).
    pub fn write_plots(
        dir: &Path,
        title: &str,
        evaluated_on: &str,
        audit_epsilon: Option<f64>,
    ) -> Result<Vec<PathBuf>> {
        let evaluations = read_evaluations(dir)?;
        let losses = read_losses(dir)?;
        let mut written = Vec::new();
        if !evaluations.is_empty() {
            let mut series = accuracy_series(&evaluations, "current weights", "EMA weights");
            if let Some(lower) = audit_epsilon {
                series.push(vertical_line(
                    format!("audit: ε ≥ {lower:.3}"),
                    lower,
                    &series,
                    RGBColor(214, 39, 40),
                ));
            }
            let path = dir.join("accuracy_vs_epsilon.png");
            line_plot(
                &path,
                &format!("{title}: {evaluated_on} accuracy vs privacy spent"),
                "ε spent",
                &format!("{evaluated_on} accuracy (%)"),
                &series,
            )?;
            private(&path)?;
            written.push(path);
        }
        if !losses.is_empty() {
            let series: Vec<Series> = vec![(
                "training loss".into(),
                losses.iter().map(|&(s, l)| (s as f64, l)).collect(),
                RGBColor(44, 160, 44),
            )];
            let path = dir.join("loss_vs_steps.png");
            line_plot(
                &path,
                &format!("{title}: training loss"),
                "step",
                "mean training loss",
                &series,
            )?;
            private(&path)?;
            written.push(path);
        }
        Ok(written)
    }
}
