//! The privacy journal: the accountant's ledger, written ahead of every charge.
//!
//! # Privacy
//! [`DpOptimizer::begin_step`] writes the ledger *including* the step it is about to charge,
//! atomically and flushed to disk, before the step touches any data; a step whose journal write
//! fails is not taken. So after a crash, a power loss or a full disk the journal on disk covers
//! every step whose noisy update could have been released, and [`DpOptimizer::resume`] refuses
//! to continue without it, or with one that records less than the checkpoint, belongs to
//! another run, or fails its checksum.
//!
//! Not covered: a deliberate forger who edits the journal, its checksum and the checkpoint
//! consistently can make a resumed run under-report; the journal is a safeguard against
//! accidents, not a signature.

use crate::error::{DpError, Result};
use crate::files::write_atomically;
use crate::optimizer::DpOptimizer;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::tensor::backend::AutodiffBackend;
use dp_accountant::{AccountantConfig, Ledger, NeighboringRelation, PrivacyAccountant};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The journal format this build writes and reads.
pub const JOURNAL_FORMAT_VERSION: u32 = 2;

/// What the journal records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalBody {
    /// [`JOURNAL_FORMAT_VERSION`].
    pub format_version: u32,
    /// The run ([`DpOptimizer::run_id`]).
    pub run_id: String,
    /// The accountant charging the run.
    pub accountant: AccountantConfig,
    /// Its neighbouring relation.
    pub relation: NeighboringRelation,
    /// Every step charged (or about to be).
    pub ledger: Ledger,
}

#[derive(Serialize, Deserialize)]
struct JournalFile {
    body: JournalBody,
    /// CRC-32 of the body's JSON: catches a file damaged so that it still parses.
    crc32: u32,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> DpError {
    DpError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn checksum(path: &Path, body: &JournalBody) -> Result<u32> {
    let bytes = serde_json::to_vec(body).map_err(|e| fail(path, e))?;
    Ok(crc32fast::hash(&bytes))
}

/// Reads and checks the journal at `path`; a missing file is an error that says why it matters.
pub fn read_journal(path: &Path) -> Result<JournalBody> {
    let bytes =
        match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(fail(
                path,
                "the privacy journal is missing: it records every step charged, including those \
                 after the last checkpoint, so without it the budget already spent cannot be \
                 bounded; the run cannot be resumed",
            )),
            Err(e) => return Err(fail(path, e)),
        };
    parse_journal(path, &bytes)
}

/// The number of steps the journal at `path` records as charged (an error if it is missing or
/// damaged).
pub fn journaled_steps(path: &Path) -> Result<u64> {
    Ok(read_journal(path)?.ledger.total_count())
}

/// Parses journal bytes (`path` names them in errors).
pub fn parse_journal(path: &Path, bytes: &[u8]) -> Result<JournalBody> {
    let file: JournalFile = serde_json::from_slice(bytes)
        .map_err(|e| fail(path, format!("not a privacy journal of this build: {e}")))?;
    if file.body.format_version != JOURNAL_FORMAT_VERSION {
        return Err(fail(
            path,
            format!(
                "journal format version {}, this build reads {JOURNAL_FORMAT_VERSION}",
                file.body.format_version
            ),
        ));
    }
    if checksum(path, &file.body)? != file.crc32 {
        return Err(fail(path, "checksum mismatch: the journal is damaged"));
    }
    Ok(file.body)
}

/// Checks that `journal` continues the run whose checkpoint recorded `checkpoint` and returns
/// the ledger to resume with: the journal's, which must hold every step of the checkpoint's.
pub(crate) fn reconcile(
    path: &Path,
    journal: JournalBody,
    checkpoint: &JournalBody,
) -> Result<Ledger> {
    if journal.run_id != checkpoint.run_id {
        return Err(fail(
            path,
            format!(
                "the journal belongs to run {}, the checkpoint to run {}",
                journal.run_id, checkpoint.run_id
            ),
        ));
    }
    if journal.relation != checkpoint.relation || journal.accountant != checkpoint.accountant {
        return Err(fail(path, "the journal belongs to another accountant"));
    }
    for (mechanism, count) in checkpoint.ledger.entries() {
        let journaled = journal
            .ledger
            .entries()
            .iter()
            .find(|(m, _)| m == mechanism)
            .map_or(0, |(_, c)| *c);
        if journaled < *count {
            return Err(fail(
                path,
                format!(
                    "the journal records {journaled} step(s) of {mechanism:?}, the checkpoint \
                     {count}: the journal is stale or was replaced, so it may miss spent budget"
                ),
            ));
        }
    }
    Ok(journal.ledger)
}

/// Writes `body` as the journal at `path` (atomically, with its checksum).
pub fn write_journal_file(path: &Path, body: JournalBody) -> Result<()> {
    let file = JournalFile {
        crc32: checksum(path, &body)?,
        body,
    };
    let bytes = serde_json::to_vec_pretty(&file).map_err(|e| fail(path, e))?;
    write_atomically(path, &bytes)
}

impl<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> DpOptimizer<AB, M, O> {
    /// Keeps a privacy journal at `path`: rewritten atomically before every charge (and with
    /// every checkpoint), so that [`DpOptimizer::resume`] can recover budget spent after the
    /// last checkpoint. See the [module docs](crate::journal).
    pub fn with_journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    pub(crate) fn journal_body(&self, accountant: &dyn PrivacyAccountant) -> JournalBody {
        JournalBody {
            format_version: JOURNAL_FORMAT_VERSION,
            run_id: self.run_id.clone(),
            accountant: accountant.config(),
            relation: accountant.neighboring_relation(),
            ledger: accountant.ledger().clone(),
        }
    }

    /// Writes the journal for `accountant`'s ledger (nothing if no journal is kept).
    pub(crate) fn write_journal(&self, accountant: &dyn PrivacyAccountant) -> Result<()> {
        let Some(path) = &self.journal else {
            return Ok(());
        };
        write_journal_file(path, self.journal_body(accountant))
    }
}
