//! A paused and resumed run equals an uninterrupted one with the same seed.
//!
//! Alone in its own test binary: model initialization draws from burn's process-wide
//! generator, which tests running in parallel threads would otherwise share.

mod common;
use common::{finished, fmnist_data, options};

use examples::report::read_losses;
use examples::train::{train, Outcome, Overrides, RunConfig, TrainOptions};

#[test]
fn a_paused_and_resumed_run_equals_an_uninterrupted_one() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let config = || {
        RunConfig::new(
            &examples::presets::preset("fmnist-cnn-quick").unwrap(),
            Overrides {
                data_dir: Some(data.path().to_path_buf()),
                steps: Some(5),
                batch_size: Some(16),
                seed: Some(21),
                eval_every: Some(2),
                ..Overrides::default()
            },
        )
        .unwrap()
    };
    let whole = finished(train(Some(config()), &options(&out.path().join("whole"))).unwrap());

    let dir = out.path().join("split");
    let paused = train(
        Some(config()),
        &TrainOptions {
            pause_after: Some(3),
            ..options(&dir)
        },
    )
    .unwrap();
    assert!(
        matches!(paused, Outcome::Paused { steps: 3, .. }),
        "{paused:?}"
    );
    assert!(!dir.join("summary.json").exists());
    let resumed = finished(
        train(
            None,
            &TrainOptions {
                resume: true,
                ..options(&dir)
            },
        )
        .unwrap(),
    );
    assert_eq!(resumed.steps, whole.steps);
    assert_eq!(resumed.epsilon, whole.epsilon);
    assert_eq!(resumed.lost_steps, 0);
    let a = read_losses(&out.path().join("whole")).unwrap();
    let b = read_losses(&dir).unwrap();
    assert_eq!(a.len(), 5);
    assert_eq!(b.len(), 5);
    for ((sa, la), (sb, lb)) in a.iter().zip(&b) {
        assert_eq!(sa, sb);
        assert!(
            (la - lb).abs() <= 1e-5 * la.abs(),
            "step {sa}: loss {la} vs {lb}"
        );
    }
    assert!((resumed.test_accuracy - whole.test_accuracy).abs() < 1e-9);
    // A finished run cannot be resumed.
    let err = train(
        None,
        &TrainOptions {
            resume: true,
            ..options(&dir)
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("finished"), "{err}");
}
