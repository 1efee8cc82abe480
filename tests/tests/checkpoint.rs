//! Checkpoints: an interrupted run resumes exactly; corrupt, foreign or mismatched files are
//! errors; writes are atomic; resuming never forgets spent budget.

mod common;
use common::{lin, lin_step, Lin, LinOpt, Sgd, TB};

use burn::optim::SgdConfig;
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::noise::GaussianNoise;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{DpError, DpOptimizer, DpSgdConfig};
use std::path::Path;

type Resumed = dp_core::checkpoint::Resumed<TB, Lin<TB>, Sgd>;
type Opt = LinOpt;

fn optimizer(model: &Lin<TB>) -> Opt {
    let mut config = DpSgdConfig::new(1.0, 1.0);
    config.ema_decay = Some(0.99);
    let accountant = AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap();
    DpOptimizer::new(
        model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        config,
        accountant,
    )
    .unwrap()
    .with_noise(GaussianNoise::seeded(1))
}

fn step(opt: &mut Opt, model: Lin<TB>, sampler: &mut PoissonSampler) -> Lin<TB> {
    lin_step(opt, model, sampler, 4).unwrap()
}

fn weights(m: &Lin<TB>) -> Vec<f32> {
    m.fc.weight
        .val()
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .unwrap()
}

fn resume(path: &Path, journal: Option<&Path>, d: usize) -> Result<Resumed, DpError> {
    Opt::resume(
        path,
        journal,
        lin(d),
        SgdConfig::new().init::<TB, Lin<TB>>(),
    )
}

#[test]
fn a_resumed_run_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let model = lin(6);
    let mut opt = optimizer(&model);
    let mut sampler = PoissonSampler::seeded(40, 0.3, 7).unwrap();
    let mut m = step(&mut opt, model, &mut sampler);
    m = step(&mut opt, m, &mut sampler);
    opt.save_checkpoint(
        &path,
        &m,
        Some(sampler.state()),
        serde_json::json!({"epoch": 1}),
    )
    .unwrap();
    // Uninterrupted.
    let mut a = m;
    for _ in 0..2 {
        a = step(&mut opt, a, &mut sampler);
    }
    // Interrupted and resumed.
    let resumed = resume(&path, None, 6).unwrap();
    assert_eq!(resumed.extra["epoch"], 1);
    assert_eq!(resumed.lost_steps, 0);
    let mut sampler_b = PoissonSampler::from_state(&resumed.sampler.unwrap()).unwrap();
    let (mut b, mut opt_b) = (resumed.model, resumed.optimizer);
    assert_eq!(opt_b.steps(), 2);
    for _ in 0..2 {
        b = step(&mut opt_b, b, &mut sampler_b);
    }
    assert_eq!(weights(&a), weights(&b));
    assert_eq!(opt.epsilon(1e-5).unwrap(), opt_b.epsilon(1e-5).unwrap());
    let ema_a = opt
        .ema_model()
        .unwrap()
        .fc
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let ema_b = opt_b
        .ema_model()
        .unwrap()
        .fc
        .weight
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(ema_a, ema_b);
}

fn saved_checkpoint(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("run.ckpt");
    let model = lin(6);
    let mut opt = optimizer(&model);
    let mut sampler = PoissonSampler::seeded(40, 0.3, 7).unwrap();
    let m = step(&mut opt, model, &mut sampler);
    opt.save_checkpoint(&path, &m, Some(sampler.state()), serde_json::Value::Null)
        .unwrap();
    path
}

fn expect_checkpoint_error(result: Result<impl Sized, DpError>, needle: &str) {
    match result {
        Err(DpError::Checkpoint { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("accepted a bad checkpoint"),
    }
}

#[test]
fn corrupt_truncated_and_foreign_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_checkpoint(dir.path());
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("bad.ckpt");
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x40;
    std::fs::write(&bad, &flipped).unwrap();
    expect_checkpoint_error(resume(&bad, None, 6), "checksum");
    std::fs::write(&bad, &good[..good.len() - 100]).unwrap();
    expect_checkpoint_error(resume(&bad, None, 6), "checksum");
    std::fs::write(&bad, b"not a checkpoint at all").unwrap();
    expect_checkpoint_error(resume(&bad, None, 6), "magic");
    // Another format version, with a valid checksum.
    let mut other = good[..good.len() - 4].to_vec();
    other[8] = 99;
    let crc = crc32(&other);
    other.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(&bad, &other).unwrap();
    expect_checkpoint_error(resume(&bad, None, 6), "format version 99");
    expect_checkpoint_error(
        resume(&dir.path().join("missing.ckpt"), None, 6),
        "No such file",
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    // Bitwise CRC-32 (IEEE), independent of the crate's implementation.
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_checkpoint_of_another_architecture_is_refused_with_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_checkpoint(dir.path());
    expect_checkpoint_error(resume(&path, None, 5), "fc.weight");
}

#[test]
fn failed_writes_leave_existing_files_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved_checkpoint(dir.path());
    let before = std::fs::read(&path).unwrap();
    let model = lin(6);
    let opt = optimizer(&model);
    // A directory in the way of the rename: the save fails and nothing is left behind.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("keep"), b"x").unwrap();
    let err = opt
        .save_checkpoint(&blocked, &model, None, serde_json::Value::Null)
        .unwrap_err();
    assert!(matches!(err, DpError::Checkpoint { .. }));
    assert!(blocked.join("keep").exists());
    let err = opt
        .save_checkpoint(
            dir.path().join("no/such/dir/x.ckpt"),
            &model,
            None,
            serde_json::Value::Null,
        )
        .unwrap_err();
    assert!(matches!(err, DpError::Checkpoint { .. }));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn resuming_keeps_budget_spent_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.ckpt");
    let journal = dir.path().join("run.ledger.json");
    let model = lin(6);
    let mut opt = optimizer(&model).with_journal(&journal);
    let mut sampler = PoissonSampler::seeded(40, 0.3, 7).unwrap();
    let mut m = step(&mut opt, model, &mut sampler);
    opt.save_checkpoint(&path, &m, Some(sampler.state()), serde_json::Value::Null)
        .unwrap();
    for _ in 0..3 {
        m = step(&mut opt, m, &mut sampler);
    }
    let spent = opt.epsilon(1e-5).unwrap();
    // The process dies; the run resumes from the older checkpoint.
    let resumed = resume(&path, Some(&journal), 6).unwrap();
    assert_eq!(resumed.lost_steps, 3);
    assert!(
        resumed.sampler.is_none(),
        "the saved sampler would replay charged batches"
    );
    assert_eq!(resumed.optimizer.epsilon(1e-5).unwrap(), spent);
    assert_eq!(resumed.optimizer.steps(), 4);
    // Without the journal the checkpoint's own ledger is the floor.
    let plain = resume(&path, None, 6).unwrap();
    assert!(plain.optimizer.epsilon(1e-5).unwrap() > 0.0);
    let _ = m;
}

/// Found by `scripts/fuzz.sh` (target `checkpoint`): a checkpoint with a valid checksum whose
/// optimizer record declares a momentum tensor of rank 0 with 32 values. burn panics decoding
/// it; resuming must return an error instead.
#[test]
fn a_record_that_does_not_fit_is_an_error_not_a_panic() {
    use burn::optim::momentum::MomentumConfig;
    use std::io::Read;
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fuzz-checkpoint-rank-mismatch.dpck.gz");
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    type Cnn = dp_models::TanhCnn<TB>;
    let inner = SgdConfig::new()
        .with_momentum(Some(MomentumConfig {
            momentum: 0.9,
            dampening: 0.0,
            nesterov: false,
        }))
        .init::<TB, Cnn>();
    let model = Cnn::new(10, &Default::default()).unwrap();
    let result = DpOptimizer::resume_from_bytes(&path, &bytes, None, model, inner);
    match result {
        Err(DpError::Checkpoint { reason, .. }) => {
            assert!(reason.contains("optimizer record is malformed"), "{reason}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a malformed record was accepted"),
    }
}

/// Found by `scripts/fuzz.sh` (target `checkpoint`): a section length near u64::MAX overflowed
/// the bounds check (`8 + len`), behind a valid checksum.
#[test]
fn a_section_length_that_overflows_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.ckpt");
    for len in [u64::MAX, u64::MAX - 7, 1 << 62] {
        let mut bytes = b"DPBURNCK".to_vec();
        bytes.extend_from_slice(&dp_core::checkpoint::CHECKPOINT_FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(b"{}");
        let crc = crc32(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        expect_checkpoint_error(resume(&path, None, 6), "truncated section");
    }
}
