//! The run directory: its files, its lock, private permissions, and what counts as a run that
//! never started.

use crate::error::{Result, TrainError};
use dp_core::files::{self, is_temporary, LOCK_FILE};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Files of a run directory.
pub struct RunDir {
    /// The directory.
    pub dir: PathBuf,
}

/// Files a start writes before its first step is charged: a directory holding nothing else
/// (and no checkpoint) is a start that failed, which a new start may replace.
const START_FILES: [&str; 4] = [
    LOCK_FILE,
    "run.json",
    "privacy-journal.json",
    "train_loss.csv",
];

impl RunDir {
    /// The run in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    /// A file of the run.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// `run.json`.
    pub fn record(&self) -> PathBuf {
        self.file("run.json")
    }
    /// `checkpoint.dpck`.
    pub fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint.dpck")
    }
    /// `privacy-journal.json`.
    pub fn journal(&self) -> PathBuf {
        self.file("privacy-journal.json")
    }
    /// `summary.json`.
    pub fn summary(&self) -> PathBuf {
        self.file("summary.json")
    }
    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.file("metrics.jsonl")
    }
    /// `train_loss.csv`.
    pub fn losses(&self) -> PathBuf {
        self.file("train_loss.csv")
    }

    fn names(&self) -> Result<Vec<String>> {
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .map(|e| {
                    e.map(|e| e.file_name().to_string_lossy().into_owned())
                        .map_err(|err| TrainError::io(&self.dir, err))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(TrainError::io(&self.dir, e)),
        }
    }

    /// Whether the directory holds only what a start writes before charging anything (a
    /// journal, if any, with no step charged).
    fn holds_only_a_failed_start(&self, names: &[String]) -> bool {
        let only_start_files = names
            .iter()
            .all(|n| START_FILES.contains(&n.as_str()) || is_temporary(n));
        let journal = self.journal();
        only_start_files
            && (!journal.exists() || dp_core::journal::journaled_steps(&journal).ok() == Some(0))
    }

    /// Checks, without writing anything, that a new run may start here: the directory does not
    /// exist, is empty, or holds only a start that failed before its first step.
    pub fn check_available(&self) -> Result<()> {
        if self.dir.exists() && !self.dir.is_dir() {
            return Err(TrainError::RunDirectory(format!(
                "{} is not a directory",
                self.dir.display()
            )));
        }
        let names = self.names()?;
        if !names.is_empty() && !self.holds_only_a_failed_start(&names) {
            return Err(TrainError::RunDirectory(format!(
                "{} is not empty: pass --resume to continue the run there, or choose another --out",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Creates the directory (mode 0700), locks it, and clears what a failed start left.
    /// Returns the lock, and whether the directory was created here.
    pub fn create(&self) -> Result<(File, bool)> {
        let created = !self.dir.exists();
        files::create_private_dir(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let lock = files::lock_dir(&self.dir)?;
        let names = self.names()?;
        if !self.holds_only_a_failed_start(&names) {
            return Err(TrainError::RunDirectory(format!(
                "{} was filled by another process while this run started",
                self.dir.display()
            )));
        }
        for name in names.iter().filter(|n| n.as_str() != LOCK_FILE) {
            let path = self.file(name);
            std::fs::remove_file(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        Ok((lock, created))
    }

    /// Locks an existing run for `--resume` and removes temporary files that a killed writer
    /// left.
    pub fn open(&self) -> Result<File> {
        if !self.dir.is_dir() {
            return Err(TrainError::RunDirectory(format!(
                "cannot resume: {} does not exist; start a new run with --preset",
                self.dir.display()
            )));
        }
        let lock = files::lock_dir(&self.dir)?;
        files::remove_stale_temporaries(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        Ok(lock)
    }

    /// Undoes a start that failed before its first step: removes the directory if this start
    /// created it, otherwise the files it wrote.
    pub fn abandon(&self, created: bool) {
        if created {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else if let Ok(names) = self.names() {
            for name in names {
                let _ = std::fs::remove_file(self.file(&name));
            }
        }
    }
}

/// Writes `bytes` to `path` atomically with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(files::write_atomically(path, bytes)?)
}
