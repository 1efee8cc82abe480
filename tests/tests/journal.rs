//! The privacy journal and what checkpoints keep secret: a resume needs the run's own journal,
//! at least as new as the checkpoint and undamaged; the journal is written before a step is
//! charged; an unseeded checkpoint holds no generator state, and two continuations of one
//! checkpoint draw independent noise; the exact noise mode survives a resume.

mod common;
use common::{lin, lin_step, Lin, LinOpt, Sgd, TB};

use burn::optim::SgdConfig;
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::noise::GaussianNoise;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::test_hooks::files_holding_seeds;
use dp_core::{DpError, DpOptimizer, DpSgdConfig};
use std::path::{Path, PathBuf};

type Opt = LinOpt;
type Resumed = dp_core::checkpoint::Resumed<TB, Lin<TB>, Sgd>;

fn optimizer(model: &Lin<TB>) -> Opt {
    let accountant = AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap();
    DpOptimizer::new(
        model,
        SgdConfig::new().init::<TB, Lin<TB>>(),
        DpSgdConfig::new(1.0, 1.0),
        accountant,
    )
    .unwrap()
}

fn step(opt: &mut Opt, model: Lin<TB>, sampler: &mut PoissonSampler) -> Result<Lin<TB>, DpError> {
    lin_step(opt, model, sampler, 8)
}

fn weights(m: &Lin<TB>) -> Vec<f32> {
    m.fc.weight.val().into_data().to_vec::<f32>().unwrap()
}

fn resume(dir: &Path, journal: Option<&Path>) -> Result<Resumed, DpError> {
    Opt::resume(
        dir.join("run.ckpt"),
        journal,
        lin(6),
        SgdConfig::new().init::<TB, Lin<TB>>(),
    )
}

/// An unseeded run with a journal: `before` steps, a checkpoint, then `after` more steps.
fn unseeded_run(dir: &Path, before: usize, after: usize) -> (PathBuf, f64) {
    let journal = dir.join("journal.json");
    let model = lin(6);
    let mut opt = optimizer(&model).with_journal(&journal);
    let mut sampler = PoissonSampler::new(40, 0.25).unwrap();
    let mut m = model;
    for _ in 0..before {
        m = step(&mut opt, m, &mut sampler).unwrap();
    }
    opt.save_checkpoint(
        dir.join("run.ckpt"),
        &m,
        Some(sampler.state()),
        serde_json::Value::Null,
    )
    .unwrap();
    for _ in 0..after {
        m = step(&mut opt, m, &mut sampler).unwrap();
    }
    (journal, opt.epsilon(1e-5).unwrap())
}

fn expect_refusal(result: Result<Resumed, DpError>, needle: &str) {
    match result {
        Err(DpError::Checkpoint { reason, .. }) => {
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}")
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("resumed, expected a refusal containing {needle:?}"),
    }
}

#[test]
fn a_missing_journal_is_refused_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = unseeded_run(dir.path(), 2, 3);
    std::fs::remove_file(&journal).unwrap();
    expect_refusal(resume(dir.path(), Some(&journal)), "journal is missing");
}

#[test]
fn a_journal_behind_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = unseeded_run(dir.path(), 3, 0);
    let stale = std::fs::read(&journal).unwrap();
    // Two more steps and a newer checkpoint; then the old journal comes back.
    let resumed = resume(dir.path(), Some(&journal)).unwrap();
    let (mut opt, mut m) = (resumed.optimizer.with_journal(&journal), resumed.model);
    let mut sampler = PoissonSampler::new(40, 0.25).unwrap();
    for _ in 0..2 {
        m = step(&mut opt, m, &mut sampler).unwrap();
    }
    opt.save_checkpoint(
        dir.path().join("run.ckpt"),
        &m,
        None,
        serde_json::Value::Null,
    )
    .unwrap();
    std::fs::write(&journal, stale).unwrap();
    expect_refusal(resume(dir.path(), Some(&journal)), "stale");
}

#[test]
fn a_journal_of_another_run_or_a_damaged_one_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (journal_a, _) = unseeded_run(a.path(), 1, 1);
    let (journal_b, _) = unseeded_run(b.path(), 1, 1);
    std::fs::copy(&journal_b, &journal_a).unwrap();
    expect_refusal(resume(a.path(), Some(&journal_a)), "belongs to run");
    // A count edited so that the file still parses: the checksum catches it.
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&journal_b).unwrap()).unwrap();
    assert_eq!(value["body"]["ledger"]["entries"][0][1], 2, "{value}");
    value["body"]["ledger"]["entries"][0][1] = 1.into();
    std::fs::write(&journal_b, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
    expect_refusal(resume(b.path(), Some(&journal_b)), "checksum");
}

#[test]
fn the_journal_keeps_steps_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, spent) = unseeded_run(dir.path(), 1, 4);
    let resumed = resume(dir.path(), Some(&journal)).unwrap();
    assert_eq!(resumed.lost_steps, 4);
    assert_eq!(resumed.optimizer.steps(), 5);
    assert_eq!(resumed.optimizer.epsilon(1e-5).unwrap(), spent);
}

#[test]
fn a_step_whose_journal_cannot_be_written_is_not_charged() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the journal should be: the atomic rename fails.
    let journal = dir.path().join("journal.json");
    std::fs::create_dir(&journal).unwrap();
    std::fs::write(journal.join("keep"), b"x").unwrap();
    let model = lin(6);
    let mut opt = optimizer(&model).with_journal(&journal);
    let mut sampler = PoissonSampler::new(40, 0.25).unwrap();
    let err = step(&mut opt, model, &mut sampler).unwrap_err();
    assert!(matches!(err, DpError::Checkpoint { .. }), "{err}");
    assert_eq!(opt.steps(), 0);
    assert_eq!(opt.epsilon(1e-5).unwrap(), 0.0);
}

#[test]
fn an_unseeded_checkpoint_holds_no_generator_seed() {
    let dir = tempfile::tempdir().unwrap();
    let _ = unseeded_run(dir.path(), 2, 1);
    let seeds = dp_core::test_hooks::os_seeds();
    assert!(seeds.len() >= 2, "the hook saw {} OS seeds", seeds.len());
    assert_eq!(
        files_holding_seeds(dir.path(), &seeds),
        Vec::<PathBuf>::new()
    );
    // Power: a seeded run's checkpoint holds its stream, and the scan finds it there.
    let seeded = tempfile::tempdir().unwrap();
    let model = lin(6);
    let noise = GaussianNoise::seeded(5);
    let opt = optimizer(&model).with_noise(noise);
    let sampler = PoissonSampler::seeded(40, 0.25, 6).unwrap();
    opt.save_checkpoint(
        seeded.path().join("run.ckpt"),
        &model,
        Some(sampler.state()),
        serde_json::Value::Null,
    )
    .unwrap();
    let state = serde_json::to_value(sampler.state()).unwrap();
    let seed: [u8; 32] = serde_json::from_value(state["rng"]["seed"].clone()).unwrap();
    assert_eq!(files_holding_seeds(seeded.path(), &[seed]).len(), 1);
    assert!(resume(seeded.path(), None).unwrap().seeded);
}

#[test]
fn two_continuations_of_one_unseeded_checkpoint_draw_different_noise() {
    let dir = tempfile::tempdir().unwrap();
    let (journal, _) = unseeded_run(dir.path(), 2, 0);
    let continue_once = || {
        let resumed = resume(dir.path(), Some(&journal)).unwrap();
        assert!(!resumed.seeded);
        let state = resumed.sampler.unwrap();
        assert_eq!(state.rng, None);
        let mut sampler = PoissonSampler::from_state(&state).unwrap();
        let mut opt = resumed.optimizer;
        weights(&step(&mut opt, resumed.model, &mut sampler).unwrap())
    };
    let (a, b) = (continue_once(), continue_once());
    assert_ne!(a, b, "both continuations replayed the same noise");
}

#[test]
fn the_exact_noise_mode_survives_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let model = lin(6);
    let opt = optimizer(&model).with_noise(GaussianNoise::exact());
    opt.save_checkpoint(
        dir.path().join("run.ckpt"),
        &model,
        None,
        serde_json::Value::Null,
    )
    .unwrap();
    let resumed = resume(dir.path(), None).unwrap();
    assert!(resumed.optimizer.noise().is_exact());
    let fast = tempfile::tempdir().unwrap();
    optimizer(&model)
        .save_checkpoint(
            fast.path().join("run.ckpt"),
            &model,
            None,
            serde_json::Value::Null,
        )
        .unwrap();
    assert!(!resume(fast.path(), None)
        .unwrap()
        .optimizer
        .noise()
        .is_exact());
}
