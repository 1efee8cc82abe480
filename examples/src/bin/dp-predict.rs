//! `dp-predict`: the most probable classes of images, by a model released by `dp-train`.
//!
//! ```text
//! dp-predict --model runs/fmnist/model-ema.safetensors shoe.png bag.jpg
//! dp-predict --model runs/pets/model.safetensors --top 1 --json photos/*.jpg
//! ```
//!
//! Images (PNG or JPEG, any size) are converted to the model's channels and resized to its
//! input. Exit codes: 0 on success, 2 on bad input (one line on stderr), 1 on other failures.

use burn::tensor::backend::Backend;
use clap::Parser;
use examples::error::TrainError;
use examples::inference::{
    describe, images, on_device, with_released_model, Guess, OnBackend, Predict,
    SEEDED_MODEL_WARNING,
};
use examples::model_card::ModelCard;
use examples::train::DeviceChoice;
use std::path::PathBuf;
use std::process::ExitCode;

/// The most probable classes of images, by a model released by dp-train.
#[derive(Parser, Debug)]
#[command(name = "dp-predict", version)]
struct Args {
    /// The model file (model.safetensors or model-ema.safetensors of a dp-train run).
    #[arg(long)]
    model: PathBuf,
    /// Classes to print per image, most probable first.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// PNG or JPEG images.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

struct Run<'a> {
    args: &'a Args,
    card: &'a ModelCard,
}

impl OnBackend for Run<'_> {
    type Output = Vec<Vec<Guess>>;

    fn run<B: Backend>(self, device: B::Device) -> Result<Vec<Vec<Guess>>, TrainError> {
        let set = images(self.card, &self.args.images)?;
        let predict = Predict {
            card: self.card,
            set: &set,
            top: self.args.top,
            device: &device,
        };
        with_released_model::<B, _>(&self.args.model, self.card, &device, predict)
    }
}

fn run(args: &Args) -> Result<String, TrainError> {
    if args.top == 0 {
        return Err(TrainError::Usage("--top 0 must be at least 1".into()));
    }
    let card = ModelCard::read(&args.model)?;
    let guesses = on_device(args.device, Run { args, card: &card })?;
    // After the work, so that an error stays one line.
    if card.seeded {
        eprintln!("{SEEDED_MODEL_WARNING}");
    }
    if args.json {
        let predictions: Vec<_> = args
            .images
            .iter()
            .zip(&guesses)
            .map(|(image, top)| serde_json::json!({ "image": image, "top": top }))
            .collect();
        return serde_json::to_string(&serde_json::json!({
            "model": args.model,
            "epsilon": card.epsilon,
            "delta": card.delta,
            "predictions": predictions,
        }))
        .map_err(|e| TrainError::Usage(e.to_string()));
    }
    eprintln!("{}: {}", args.model.display(), describe(&card));
    let lines: Vec<String> = args
        .images
        .iter()
        .zip(&guesses)
        .map(|(image, top)| {
            let ranked: Vec<String> = top
                .iter()
                .map(|g| format!("{} {:.2}%", g.class, 100.0 * g.probability))
                .collect();
            format!("{}: {}", image.display(), ranked.join(", "))
        })
        .collect();
    Ok(lines.join("\n"))
}

fn main() -> ExitCode {
    let args: Args = match dp_accountant::cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    examples::error::finish(run(&args))
}
