//! Checks made before a run charges its first step: the data, the model's fit to it, and every
//! file a resume reads. A run that fails here has spent nothing.

use super::classifier::Classifier;
use super::eval::tensors;
use super::run_dir::RunDir;
use crate::data::Split;
use crate::error::{Result, TrainError};
use crate::features::{batch_rows, Part};
use crate::report::{Evaluation, LOSS_HEADER};
use burn::tensor::backend::Backend;
use std::path::Path;

/// Non-empty training and test sets of one image shape and one class count.
pub fn check_split(split: &Split, data_dir: &Path) -> Result<()> {
    for (name, set) in [("training", &split.train), ("test", &split.test)] {
        if set.is_empty() {
            return Err(TrainError::malformed(
                data_dir,
                format!("the {name} set is empty"),
            ));
        }
    }
    if split.train.shape != split.test.shape || split.train.classes != split.test.classes {
        return Err(TrainError::malformed(
            data_dir,
            format!(
                "training images are {:?} in {} classes, test images {:?} in {}",
                split.train.shape, split.train.classes, split.test.shape, split.test.classes
            ),
        ));
    }
    Ok(())
}

/// Runs `model` on one test image (evaluation mode; public data, and of the training images'
/// shape: [`check_split`]) and checks that it gives one row of `classes` logits. burn panics on shapes that do not fit; the panic is caught here, before
/// anything is charged, and becomes an error naming the shapes.
pub fn probe_model<B: Backend, M: Classifier<B>>(
    model: &M,
    split: &Split,
    resolution: Option<usize>,
    device: &B::Device,
) -> Result<()> {
    let set = &split.test;
    let augment = crate::augment::Augment::none(set.shape[0]);
    let (values, _, shape) = batch_rows(split, Part::Test, &[0], &augment, 0, 0)?;
    let (x, _) = tensors::<B>(values, vec![0], shape, resolution, device);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.logits(x).dims()));
    std::panic::set_hook(hook);
    let input = match (resolution, &split.features) {
        (Some(r), _) => format!("{:?} (upsampled to {r}×{r})", set.shape),
        (None, Some(f)) => format!("{:?} (scattering features {:?})", set.shape, f.shape),
        (None, None) => format!("{:?}", set.shape),
    };
    match outcome {
        Ok([1, c]) if c == set.classes => Ok(()),
        Ok(dims) => Err(TrainError::Usage(format!(
            "the model maps images {input} to logits {dims:?}, not [1, {}]",
            set.classes
        ))),
        Err(_) => Err(TrainError::Usage(format!(
            "the model does not accept images of shape {input} (C, H, W); check the data \
             files and the preset"
        ))),
    }
}

/// Reads a line-oriented report file, first cutting off a torn last line (a crash mid-append
/// leaves one); every other line must parse with `parse`, or the file is reported malformed
/// with the line's number.
fn read_lines<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::malformed(path, e.to_string())),
    };
    let whole = match text.rfind('\n') {
        Some(end) => &text[..=end],
        None => "",
    };
    if whole.len() != text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        file.set_len(whole.len() as u64)
            .map_err(|e| TrainError::io(path, e))?;
    }
    whole
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse(l).ok_or_else(|| {
                TrainError::malformed(
                    path,
                    format!("line {} is not valid: {l:?}; fix or delete the line", i + 1),
                )
            })
        })
        .collect()
}

/// The report files of a run being resumed, checked line by line.
pub struct Logs {
    /// Its evaluations so far.
    pub evaluations: Vec<Evaluation>,
    /// The last step with a training-loss line (0 if none).
    pub last_loss_step: u64,
}

/// Checks `metrics.jsonl` and `train_loss.csv` of `run` (repairing a torn last line).
pub fn check_logs(run: &RunDir) -> Result<Logs> {
    let evaluations = read_lines(&run.metrics(), |l| serde_json::from_str(l).ok())?;
    let steps = read_lines(&run.losses(), |l| {
        if l == LOSS_HEADER {
            return Some(0);
        }
        let (step, loss) = l.split_once(',')?;
        loss.parse::<f64>().ok()?;
        step.parse::<u64>().ok()
    })?;
    Ok(Logs {
        evaluations,
        last_loss_step: steps.into_iter().max().unwrap_or(0),
    })
}
