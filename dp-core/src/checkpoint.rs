//! Checkpoints: model, optimizer, EMA, accountant ledger, sampler and noise state in one file,
//! written atomically, with a format version and a checksum.
//!
//! Layout: `DPBURNCK` · version (u32 LE) · four length-prefixed sections (u64 LE length):
//! metadata JSON, model record, optimizer record, EMA record (may be empty) · CRC-32 of
//! everything before it (u32 LE).

use crate::error::{DpError, Result};
use crate::noise::GaussianNoise;
use crate::optimizer::{DpOptimizer, DpSgdConfig};
use crate::params::param_infos;
use crate::rng::RngState;
use crate::sampler::SamplerState;
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use dp_accountant::{AccountantConfig, Ledger, NeighboringRelation};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The checkpoint format this build writes and reads.
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"DPBURNCK";

#[derive(Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    steps: u64,
    config: DpSgdConfig,
    accountant: AccountantConfig,
    relation: NeighboringRelation,
    ledger: Ledger,
    sampler: Option<SamplerState>,
    noise: Option<RngState>,
    params: Vec<(String, Vec<usize>)>,
    extra: serde_json::Value,
}

/// The privacy ledger alone, rewritten at every step by [`DpOptimizer::with_journal`].
#[derive(Serialize, Deserialize)]
struct Journal {
    accountant: AccountantConfig,
    relation: NeighboringRelation,
    ledger: Ledger,
}

/// What [`DpOptimizer::resume`] gives back.
pub struct Resumed<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> {
    /// The model with the checkpoint's weights.
    pub model: M,
    /// The optimizer, with its accountant ledger, EMA and noise state restored.
    pub optimizer: DpOptimizer<AB, M, O>,
    /// The sampler state saved with the checkpoint; `None` if steps were charged after the
    /// checkpoint (see `lost_steps`): then draw batches with a fresh OS-seeded sampler, since
    /// replaying the saved sampler would reuse the batches of those steps with new noise.
    pub sampler: Option<SamplerState>,
    /// Steps charged after the checkpoint was written (from the journal); their privacy cost
    /// is kept.
    pub lost_steps: u64,
    /// Caller data saved with the checkpoint.
    pub extra: serde_json::Value,
}

fn fail(path: &Path, reason: impl std::fmt::Display) -> DpError {
    DpError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`. On failure `path` is untouched.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| fail(path, "not a file path"))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(path, e));
    }
    Ok(())
}

fn push_section(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn read_sections<'a>(path: &Path, bytes: &'a [u8]) -> Result<[&'a [u8]; 4]> {
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(fail(path, "not a dp-burn checkpoint (bad magic)"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err(fail(
            path,
            "checksum mismatch: the file is corrupt or truncated",
        ));
    }
    let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if version != CHECKPOINT_FORMAT_VERSION {
        return Err(fail(
            path,
            format!("format version {version}, this build reads {CHECKPOINT_FORMAT_VERSION}"),
        ));
    }
    let mut rest = &body[12..];
    let mut sections: [&[u8]; 4] = [&[]; 4];
    for section in &mut sections {
        if rest.len() < 8 {
            return Err(fail(path, "truncated section header"));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&rest[..8]);
        let len = u64::from_le_bytes(len) as usize;
        if rest.len() < 8 + len {
            return Err(fail(path, "truncated section"));
        }
        *section = &rest[8..8 + len];
        rest = &rest[8 + len..];
    }
    Ok(sections)
}

fn structure<B: burn::tensor::backend::Backend, M: Module<B>>(
    model: &M,
) -> Vec<(String, Vec<usize>)> {
    param_infos(model)
        .into_iter()
        .map(|p| (p.path, p.dims))
        .collect()
}

impl<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> DpOptimizer<AB, M, O> {
    /// Saves everything needed to resume to `path`, atomically.
    pub fn save_checkpoint(
        &self,
        path: impl AsRef<Path>,
        model: &M,
        sampler: Option<SamplerState>,
        extra: serde_json::Value,
    ) -> Result<()> {
        let path = path.as_ref();
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let meta = Meta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            steps: self.steps,
            config: self.config.clone(),
            accountant: self.accountant.config(),
            relation: self.accountant.neighboring_relation(),
            ledger: self.accountant.ledger().clone(),
            sampler,
            noise: self.noise.state(),
            params: structure(model),
            extra,
        };
        let meta = serde_json::to_vec(&meta).map_err(|e| fail(path, e))?;
        let model_bytes = Recorder::<AB>::record(&recorder, model.clone().into_record(), ())
            .map_err(|e| fail(path, e))?;
        let optim_bytes = Recorder::<AB>::record(&recorder, self.inner.to_record(), ())
            .map_err(|e| fail(path, e))?;
        let ema_bytes = match &self.ema {
            Some(ema) => Recorder::<AB::InnerBackend>::record(
                &recorder,
                ema.model().clone().into_record(),
                (),
            )
            .map_err(|e| fail(path, e))?,
            None => Vec::new(),
        };
        let mut out = Vec::with_capacity(
            meta.len() + model_bytes.len() + optim_bytes.len() + ema_bytes.len() + 48,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        for section in [&meta, &model_bytes, &optim_bytes, &ema_bytes] {
            push_section(&mut out, section);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        write_atomically(path, &out)
    }

    /// Rebuilds model and optimizer from a checkpoint. `model` and `inner` are fresh instances
    /// of the same architecture and optimizer; a checkpoint of another architecture, a corrupt
    /// file or another format version is an error. If `journal` names a privacy journal with
    /// more steps than the checkpoint (steps were charged after it was written), its ledger is
    /// used: resuming never forgets spent budget.
    pub fn resume(
        path: impl AsRef<Path>,
        journal: Option<&Path>,
        model: M,
        inner: O,
    ) -> Result<Resumed<AB, M, O>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| fail(path, e))?;
        let [meta, model_bytes, optim_bytes, ema_bytes] = read_sections(path, &bytes)?;
        let meta: Meta =
            serde_json::from_slice(meta).map_err(|e| fail(path, format!("metadata: {e}")))?;
        let expected = structure(&model);
        if meta.params != expected {
            let missing: Vec<String> = expected
                .iter()
                .filter(|p| !meta.params.contains(p))
                .map(|(n, d)| format!("{n} {d:?}"))
                .collect();
            let unexpected: Vec<String> = meta
                .params
                .iter()
                .filter(|p| !expected.contains(p))
                .map(|(n, d)| format!("{n} {d:?}"))
                .collect();
            return Err(fail(path, format!("the model does not match: missing or mis-shaped {missing:?}, unexpected {unexpected:?}")));
        }
        let device = model.devices().into_iter().next().unwrap_or_default();
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let record = Recorder::<AB>::load(&recorder, model_bytes.to_vec(), &device)
            .map_err(|e| fail(path, format!("model record: {e}")))?;
        let model = model.load_record(record);
        let optim_record = Recorder::<AB>::load(&recorder, optim_bytes.to_vec(), &device)
            .map_err(|e| fail(path, format!("optimizer record: {e}")))?;
        let inner = inner.load_record(optim_record);
        let saved_count = meta.ledger.total_count();
        let mut ledger = meta.ledger;
        if let Some(journal_path) = journal.filter(|p| p.exists()) {
            let text = std::fs::read(journal_path).map_err(|e| fail(journal_path, e))?;
            let journal: Journal =
                serde_json::from_slice(&text).map_err(|e| fail(journal_path, e))?;
            if journal.relation != meta.relation || journal.accountant != meta.accountant {
                return Err(fail(
                    journal_path,
                    "the journal belongs to another accountant",
                ));
            }
            if journal.ledger.total_count() > ledger.total_count() {
                ledger = journal.ledger;
            }
        }
        let lost_steps = ledger.total_count() - saved_count;
        let accountant = meta.accountant.restore(meta.relation, &ledger)?;
        let mut optimizer = DpOptimizer::new(&model, inner, meta.config, accountant)?;
        optimizer.steps = meta.steps + lost_steps;
        // Replaying the saved noise is only safe if nothing happened after the checkpoint.
        if let (Some(state), 0) = (&meta.noise, lost_steps) {
            optimizer.noise = GaussianNoise::from_state(state);
        }
        if let Some(ema) = &mut optimizer.ema {
            if !ema_bytes.is_empty() {
                let record =
                    Recorder::<AB::InnerBackend>::load(&recorder, ema_bytes.to_vec(), &device)
                        .map_err(|e| fail(path, format!("EMA record: {e}")))?;
                ema.set_model(ema.model().clone().load_record(record));
            }
        }
        let sampler = if lost_steps == 0 { meta.sampler } else { None };
        Ok(Resumed {
            model,
            optimizer,
            sampler,
            lost_steps,
            extra: meta.extra,
        })
    }

    /// Rewrites the privacy journal at `path` after every charged step (atomically), so that
    /// [`DpOptimizer::resume`] can recover budget spent after the last checkpoint.
    pub fn with_journal(mut self, path: impl Into<PathBuf>) -> Self {
        self.journal = Some(path.into());
        self
    }

    pub(crate) fn write_journal(&self) -> Result<()> {
        let Some(path) = &self.journal else {
            return Ok(());
        };
        let journal = Journal {
            accountant: self.accountant.config(),
            relation: self.accountant.neighboring_relation(),
            ledger: self.accountant.ledger().clone(),
        };
        let bytes = serde_json::to_vec(&journal).map_err(|e| fail(path, e))?;
        write_atomically(path, &bytes)
    }
}
