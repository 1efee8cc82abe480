//! `dp-eval`: the test accuracy of a model released by `dp-train`, overall and per class.
//!
//! ```text
//! dp-eval --model runs/fmnist/model-ema.safetensors
//! dp-eval --model runs/pets/model.safetensors --data-dir pets --json
//! ```
//!
//! The model file's card (written by `dp-train`) gives the architecture, input size,
//! normalization and class names; the data default to the dataset it was trained on (an
//! image folder's `test/`, labelled by the card's class names). Exit codes: 0 on success, 2 on
//! bad input (one line on stderr), 1 on other failures.

use burn::tensor::backend::Backend;
use clap::Parser;
use examples::error::TrainError;
use examples::inference::{
    describe, on_device, test_set, with_released_model, Evaluation, OnBackend, Score,
    SEEDED_MODEL_WARNING,
};
use examples::model_card::ModelCard;
use examples::presets::Dataset;
use examples::train::DeviceChoice;
use std::path::PathBuf;
use std::process::ExitCode;

/// The test accuracy of a model released by dp-train, overall and per class.
#[derive(Parser, Debug)]
#[command(name = "dp-eval", version)]
struct Args {
    /// The model file (model.safetensors or model-ema.safetensors of a dp-train run).
    #[arg(long)]
    model: PathBuf,
    /// The dataset's directory (default: the dataset's usual place; for an image folder,
    /// DIR/test/CLASS/* or DIR/CLASS/*).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The dataset (default: the one the model was trained on).
    #[arg(long, value_enum)]
    dataset: Option<Dataset>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Print one JSON object on stdout (the card and the evaluation).
    #[arg(long)]
    json: bool,
}

struct Eval<'a> {
    args: &'a Args,
    card: &'a ModelCard,
}

impl OnBackend for Eval<'_> {
    type Output = Evaluation;

    fn run<B: Backend>(self, device: B::Device) -> Result<Evaluation, TrainError> {
        let dataset = self.args.dataset.unwrap_or(self.card.dataset);
        let set = test_set(self.card, dataset, self.args.data_dir.as_deref())?;
        let score = Score {
            card: self.card,
            set: &set,
            device: &device,
        };
        with_released_model::<B, _>(&self.args.model, self.card, &device, score)
    }
}

fn run(args: &Args) -> Result<String, TrainError> {
    let card = ModelCard::read(&args.model)?;
    let evaluation = on_device(args.device, Eval { args, card: &card })?;
    // After the work, so that an error stays one line.
    if card.seeded {
        eprintln!("{SEEDED_MODEL_WARNING}");
    }
    if args.json {
        return serde_json::to_string(&serde_json::json!({
            "model": args.model,
            "card": card,
            "evaluation": evaluation,
        }))
        .map_err(|e| TrainError::Usage(e.to_string()));
    }
    let width = card
        .class_names
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = format!(
        "{}: {}\ntest accuracy {:.2}% on {} images (mean loss {:.4})",
        args.model.display(),
        describe(&card),
        100.0 * evaluation.test_accuracy,
        evaluation.images,
        evaluation.test_loss
    );
    for class in &evaluation.per_class {
        let accuracy = class
            .accuracy
            .map_or("     -".to_string(), |a| format!("{:6.2}%", 100.0 * a));
        text += &format!(
            "\n  {:<width$}  {accuracy}  ({}/{})",
            class.class, class.correct, class.images
        );
    }
    Ok(text)
}

fn main() -> ExitCode {
    let args: Args = match dp_accountant::cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    examples::error::finish(run(&args))
}
