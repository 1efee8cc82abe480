//! The one error type of the training programs.

use std::path::PathBuf;

/// Result alias.
pub type Result<T> = std::result::Result<T, TrainError>;

/// What can go wrong in a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file is not what it claims to be.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No dataset where one was expected.
    #[error("no {dataset} data in {dir}: {hint}")]
    MissingData {
        /// The dataset.
        dataset: &'static str,
        /// Where it was looked for.
        dir: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A bad command-line value or combination.
    #[error("{0}")]
    Usage(String),
    /// The run directory already holds a finished or different run.
    #[error("{0}")]
    RunDirectory(String),
    /// Private training failed.
    #[error(transparent)]
    Dp(#[from] dp_core::DpError),
    /// Accounting failed (e.g. an unreachable target ε).
    #[error(transparent)]
    Accountant(#[from] dp_accountant::AccountantError),
    /// A model could not be built or loaded.
    #[error(transparent)]
    Model(#[from] dp_models::ModelError),
}

impl TrainError {
    /// An I/O error at `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A malformed file at `path`.
    pub fn malformed(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Malformed {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Whether the error is bad input (a flag, a missing or malformed file, a run directory
    /// that cannot be used, a missing device): the programs exit with code 2 for these, 1
    /// for the rest.
    pub fn is_bad_input(&self) -> bool {
        use dp_core::DpError;
        use dp_models::ModelError;
        matches!(
            self,
            Self::Usage(_)
                | Self::MissingData { .. }
                | Self::Malformed { .. }
                | Self::RunDirectory(_)
                | Self::Io { .. }
                | Self::Accountant(_)
                | Self::Dp(DpError::Checkpoint { .. })
                | Self::Dp(DpError::DeviceUnavailable(_))
                | Self::Dp(DpError::InvalidParameter { .. })
                | Self::Model(ModelError::Checkpoint { .. })
                | Self::Model(ModelError::Mismatch { .. })
        )
    }

    /// The exit code of a program that failed with this error.
    pub fn exit_code(&self) -> std::process::ExitCode {
        std::process::ExitCode::from(if self.is_bad_input() { 2 } else { 1 })
    }
}

/// How a program ends: its output on stdout (a closed pipe is not an error), or the error as
/// one line on stderr with [`TrainError::exit_code`].
pub fn finish(result: Result<String>) -> std::process::ExitCode {
    match result {
        Ok(text) => dp_accountant::cli::print_stdout(&text),
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}
