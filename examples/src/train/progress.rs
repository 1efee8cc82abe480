//! What a run tells the person watching it: a progress bar on a terminal, or one plain line per
//! evaluation when stderr is not a terminal (cluster jobs, CI, nohup) or with `--no-progress`.

use super::TrainOptions;
use crate::presets::PrivacyPlan;
use crate::report::Evaluation;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The run's progress display.
pub struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    total: u64,
    /// The images evaluated on (`test`, `validation`).
    evaluated_on: &'static str,
    /// Mean loss of the last step's batch.
    pub loss: f64,
}

/// The line printed for an evaluation on `evaluated_on` (`test`, `validation`).
pub fn evaluation_line(e: &Evaluation, plan: &PrivacyPlan, evaluated_on: &str) -> String {
    let ema = e
        .test_accuracy_ema
        .map(|a| format!(" (EMA {:.2}%)", 100.0 * a))
        .unwrap_or_default();
    format!(
        "step {}/{} (epoch {:.1}): ε = {:.4} at δ = {}, train loss {:.4}, {evaluated_on} accuracy {:.2}%{ema}",
        e.step,
        plan.steps,
        e.epoch,
        e.epsilon,
        plan.delta,
        e.train_loss,
        100.0 * e.test_accuracy
    )
}

impl Progress {
    /// A bar if asked for and stderr is a terminal; plain lines otherwise (unless quiet).
    pub fn new(
        plan: &PrivacyPlan,
        position: u64,
        options: &TrainOptions,
        evaluated_on: &'static str,
    ) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (options.progress && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(Some(plan.steps), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(position);
            bar
        });
        Self {
            lines: options.verbose,
            bar,
            total: plan.steps,
            evaluated_on,
            loss: f64::NAN,
        }
    }

    /// Reports an evaluation.
    pub fn evaluated(&self, evaluation: &Evaluation, plan: &PrivacyPlan) {
        if !self.lines {
            return;
        }
        let line = evaluation_line(evaluation, plan, self.evaluated_on);
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Moves the bar after a step.
    pub fn stepped(&mut self, done: u64, epsilon: f64, last: Option<&Evaluation>) {
        let Some(bar) = &self.bar else {
            return;
        };
        bar.set_position(done.min(self.total));
        bar.set_message(format!(
            "loss {:.3} | {} acc {} | ε {epsilon:.3}",
            self.loss,
            self.evaluated_on,
            last.map(|e| format!("{:.1}%", 100.0 * e.test_accuracy))
                .unwrap_or_else(|| "-".into()),
        ));
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
