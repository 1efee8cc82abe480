//! Checkpoints: model, optimizer, EMA, accountant ledger and the kind of noise in one file,
//! written atomically, with a format version and a checksum.
//!
//! # Privacy
//! A checkpoint holds nothing from which the noise or the batches can be reproduced unless the
//! run was seeded explicitly: the state of a generator seeded from the operating system is
//! never recorded ([`crate::rng::SecureRng::state`]), and a resumed run draws fresh entropy,
//! so two continuations of one checkpoint add independent noise. A seeded run records its
//! generators' states and says so (`seeded`); anyone holding such a checkpoint can remove the
//! noise of its run.
//!
//! Layout: `DPBURNCK` · version (u32 LE) · four length-prefixed sections (u64 LE length):
//! metadata JSON, model record, optimizer record, EMA record (may be empty) · CRC-32 of
//! everything before it (u32 LE).

use crate::error::{DpError, Result};
use crate::files::write_atomically;
use crate::journal::{read_journal, reconcile, JournalBody, JOURNAL_FORMAT_VERSION};
use crate::noise::{GaussianNoise, NoiseRecord};
use crate::optimizer::{DpOptimizer, DpSgdConfig};
use crate::params::param_infos;
use crate::sampler::SamplerState;
use burn::module::{AutodiffModule, Module};
use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use dp_accountant::{AccountantConfig, Ledger, NeighboringRelation};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The checkpoint format this build writes and reads (version 1 stored generator states).
pub const CHECKPOINT_FORMAT_VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"DPBURNCK";

#[derive(Serialize, Deserialize)]
struct Meta {
    format_version: u32,
    run_id: String,
    steps: u64,
    /// Whether the noise or the sampler was seeded explicitly (their states are then stored).
    seeded: bool,
    config: DpSgdConfig,
    accountant: AccountantConfig,
    relation: NeighboringRelation,
    ledger: Ledger,
    sampler: Option<SamplerState>,
    noise: NoiseRecord,
    params: Vec<(String, Vec<usize>)>,
    extra: serde_json::Value,
}

/// What [`DpOptimizer::resume`] gives back.
pub struct Resumed<AB: AutodiffBackend, M: AutodiffModule<AB>, O: Optimizer<M, AB>> {
    /// The model with the checkpoint's weights.
    pub model: M,
    /// The optimizer, with its accountant ledger, EMA and noise state restored.
    pub optimizer: DpOptimizer<AB, M, O>,
    /// The sampler state saved with the checkpoint (its generator only if it was seeded);
    /// `None` if steps were charged after the checkpoint (see `lost_steps`): then draw batches
    /// with a fresh OS-seeded sampler, since replaying a seeded sampler would reuse the
    /// batches of those steps with new noise.
    pub sampler: Option<SamplerState>,
    /// Whether the checkpointed run was seeded explicitly.
    pub seeded: bool,
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
        let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
        if len > rest.len() - 8 {
            return Err(fail(path, "truncated section"));
        }
        *section = &rest[8..8 + len];
        rest = &rest[8 + len..];
    }
    Ok(sections)
}

/// Runs burn's decoding of a record section. burn panics on records whose tensors do not fit
/// (a rank or shape that the module does not have); a checkpoint that passed its checksum can
/// still hold one if it was edited, so the panic is caught and becomes an error naming the
/// section. (The process's panic hook still runs and may print burn's message.)
fn decoded<T>(path: &Path, section: &str, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(result) => result,
        Err(payload) => {
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("burn could not decode it");
            let text = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("==="))
                .collect::<Vec<_>>()
                .join(" ");
            Err(fail(path, format!("{section} is malformed: {text}")))
        }
    }
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
        // The journal is never behind a checkpoint.
        self.write_journal(self.accountant.as_ref())?;
        let out = self.checkpoint_bytes(path, model, sampler, extra)?;
        write_atomically(path, &out)
    }

    /// The bytes [`Self::save_checkpoint`] writes (`path` names them in errors), e.g. to hand
    /// the state of a run to the other peers of a data-parallel group
    /// ([`Self::resume_from_bytes`] reads them). Like the file, they hold a generator's state
    /// only for a seeded run.
    pub fn checkpoint_bytes(
        &self,
        path: &Path,
        model: &M,
        sampler: Option<SamplerState>,
        extra: serde_json::Value,
    ) -> Result<Vec<u8>> {
        let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
        let seeded = self.noise.is_seeded() || sampler.as_ref().is_some_and(|s| s.rng.is_some());
        let meta = Meta {
            format_version: CHECKPOINT_FORMAT_VERSION,
            run_id: self.run_id.clone(),
            steps: self.steps,
            seeded,
            config: self.config.clone(),
            accountant: self.accountant.config(),
            relation: self.accountant.neighboring_relation(),
            ledger: self.accountant.ledger().clone(),
            sampler,
            noise: self.noise.record(),
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
        Ok(out)
    }

    /// Rebuilds model and optimizer from a checkpoint. `model` and `inner` are fresh instances
    /// of the same architecture and optimizer; a checkpoint of another architecture, a corrupt
    /// file or another format version is an error. `journal` names the run's privacy journal
    /// (see [`crate::journal`]): it must exist, belong to the same run and hold at least the
    /// checkpoint's steps, and its ledger is the one resumed, so steps charged after the
    /// checkpoint keep their cost. With `None` the checkpoint's own ledger is used (for callers
    /// that keep no journal). Noise and unseeded sampling continue from fresh operating-system
    /// entropy; the kind of noise (fast or exact) is kept.
    pub fn resume(
        path: impl AsRef<Path>,
        journal: Option<&Path>,
        model: M,
        inner: O,
    ) -> Result<Resumed<AB, M, O>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| fail(path, e))?;
        Self::resume_from_bytes(path, &bytes, journal, model, inner)
    }

    /// [`DpOptimizer::resume`] from the checkpoint's bytes (`path` names them in errors).
    pub fn resume_from_bytes(
        path: &Path,
        bytes: &[u8],
        journal: Option<&Path>,
        model: M,
        inner: O,
    ) -> Result<Resumed<AB, M, O>> {
        let [meta, model_bytes, optim_bytes, ema_bytes] = read_sections(path, bytes)?;
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
        let model = decoded(path, "model record", || {
            let record = Recorder::<AB>::load(&recorder, model_bytes.to_vec(), &device)
                .map_err(|e| fail(path, format!("model record: {e}")))?;
            Ok(model.load_record(record))
        })?;
        let inner = decoded(path, "optimizer record", || {
            let record = Recorder::<AB>::load(&recorder, optim_bytes.to_vec(), &device)
                .map_err(|e| fail(path, format!("optimizer record: {e}")))?;
            Ok(inner.load_record(record))
        })?;
        let saved_count = meta.ledger.total_count();
        let ledger = match journal {
            Some(journal_path) => {
                let saved = JournalBody {
                    format_version: JOURNAL_FORMAT_VERSION,
                    run_id: meta.run_id.clone(),
                    accountant: meta.accountant.clone(),
                    relation: meta.relation,
                    ledger: meta.ledger.clone(),
                };
                reconcile(journal_path, read_journal(journal_path)?, &saved)?
            }
            None => meta.ledger.clone(),
        };
        let lost_steps = ledger.total_count().saturating_sub(saved_count);
        let accountant = meta.accountant.restore(meta.relation, &ledger)?;
        let mut optimizer = DpOptimizer::new(&model, inner, meta.config, accountant)?;
        optimizer.steps = meta
            .steps
            .checked_add(lost_steps)
            .ok_or_else(|| fail(path, "step count overflows"))?;
        optimizer.run_id = meta.run_id;
        // A seeded stream is replayed only if nothing happened after the checkpoint; the kind
        // of noise is always kept.
        let noise = match (&meta.noise, lost_steps) {
            (NoiseRecord::Seeded(_), 1..) => NoiseRecord::Os,
            (record, _) => record.clone(),
        };
        optimizer.noise = GaussianNoise::from_record(&noise)?;
        if let Some(ema) = &mut optimizer.ema {
            if !ema_bytes.is_empty() {
                let model = decoded(path, "EMA record", || {
                    let record =
                        Recorder::<AB::InnerBackend>::load(&recorder, ema_bytes.to_vec(), &device)
                            .map_err(|e| fail(path, format!("EMA record: {e}")))?;
                    Ok(ema.model().clone().load_record(record))
                })?;
                ema.set_model(model);
            }
        }
        let sampler = if lost_steps == 0 { meta.sampler } else { None };
        Ok(Resumed {
            model,
            optimizer,
            sampler,
            seeded: meta.seeded,
            lost_steps,
            extra: meta.extra,
        })
    }
}
