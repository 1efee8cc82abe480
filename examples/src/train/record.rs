//! `run.json`: a run's settings, its privacy plan and a fingerprint of its training data, so
//! that `--resume` continues with exactly the same settings on exactly the same data.

use super::config::RunConfig;
use crate::data::{ImageSet, Split};
use crate::error::{Result, TrainError};
use crate::presets::PrivacyPlan;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The size, shape and SHA-256 of a training set.
///
/// # Privacy
/// A content hash lets anyone who can guess the whole training set confirm the guess, so
/// `run.json` is a file to keep private (README: "What to release, what to keep private").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Training examples.
    pub train_size: usize,
    /// Test examples.
    pub test_size: usize,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// Classes.
    pub classes: usize,
    /// SHA-256 (hex) of the training set: shape, classes, labels and pixels.
    pub train_sha256: String,
}

fn sha256(set: &ImageSet) -> String {
    let mut hash = Sha256::new();
    for d in set.shape {
        hash.update((d as u64).to_le_bytes());
    }
    hash.update((set.classes as u64).to_le_bytes());
    hash.update((set.labels.len() as u64).to_le_bytes());
    hash.update(&set.labels);
    hash.update(&set.pixels);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl DataFingerprint {
    /// The fingerprint of `split`.
    pub fn of(split: &Split) -> Self {
        Self {
            train_size: split.train.len(),
            test_size: split.test.len(),
            shape: split.train.shape,
            classes: split.train.classes,
            train_sha256: sha256(&split.train),
        }
    }
}

/// What `run.json` in a run directory holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The settings.
    pub config: RunConfig,
    /// σ, q, steps and the planned ε.
    pub plan: PrivacyPlan,
    /// The training data the run was started on.
    pub data: DataFingerprint,
    /// The name of each class, by label (an image folder's folder names).
    #[serde(default)]
    pub class_names: Vec<String>,
}

impl RunRecord {
    /// The bytes written to `run.json`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| TrainError::Usage(e.to_string()))?;
        Ok((text + "\n").into_bytes())
    }
}

/// SHA-256 (hex) of `bytes`: the checkpoint records that of `run.json`, so an edited `run.json`
/// is refused on resume.
pub fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reads `run.json` at `path`: the record and the SHA-256 of its bytes.
pub fn read_run_record_file(path: &Path) -> Result<(RunRecord, String)> {
    let bytes = std::fs::read(path).map_err(|e| {
        TrainError::RunDirectory(format!(
            "cannot resume: {} ({e}); start a new run with --preset",
            path.display()
        ))
    })?;
    let record = parse_run_record(path, &bytes)?;
    Ok((record, digest(&bytes)))
}

/// Parses the bytes of a `run.json` (`path` names them in errors).
pub fn parse_run_record(path: &Path, bytes: &[u8]) -> Result<RunRecord> {
    serde_json::from_slice(bytes).map_err(|e| TrainError::malformed(path, e.to_string()))
}

/// Checks that `split` is the data `record` was started on.
pub fn check_same_data(record: &RunRecord, split: &Split) -> Result<()> {
    let now = DataFingerprint::of(split);
    if now == record.data {
        return Ok(());
    }
    let what = if now.train_size != record.data.train_size {
        format!(
            "{} training examples, the run started with {}",
            now.train_size, record.data.train_size
        )
    } else if now.shape != record.data.shape || now.classes != record.data.classes {
        format!(
            "images {:?} in {} classes, the run started with {:?} in {}",
            now.shape, now.classes, record.data.shape, record.data.classes
        )
    } else if now.train_sha256 != record.data.train_sha256 {
        "the training set's contents changed (SHA-256 differs)".to_string()
    } else {
        format!(
            "{} test examples, the run started with {}",
            now.test_size, record.data.test_size
        )
    };
    Err(TrainError::RunDirectory(format!(
        "cannot resume on different data in {}: {what}; nothing was charged",
        record.config.data_dir.display()
    )))
}
