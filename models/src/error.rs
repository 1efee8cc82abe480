//! The one error type of this crate.

use dp_core::DpError;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Everything that can go wrong building or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A configuration or layer error from dp-core.
    #[error(transparent)]
    Core(#[from] DpError),
    /// The checkpoint does not fit the model: every problem at once.
    #[error("{path}: the checkpoint does not match the model — missing: [{}]; unexpected: [{}]; mis-shaped: [{}]", missing.join(", "), unexpected.join(", "), mis_shaped.join(", "))]
    Mismatch {
        /// The file.
        path: String,
        /// Model parameters absent from the file (as file keys).
        missing: Vec<String>,
        /// File keys the model has no parameter for.
        unexpected: Vec<String>,
        /// Keys whose shape differs: `key: file [..] vs model [..]`.
        mis_shaped: Vec<String>,
    },
    /// The file could not be read or parsed.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}
