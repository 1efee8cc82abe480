//! A paused and resumed run equals an uninterrupted one with the same seed, with and without
//! the canaries of `--audit` (whose membership and scores the checkpoint carries).
//!
//! Alone in its own test binary: model initialization draws from burn's process-wide
//! generator, which tests running in parallel threads would otherwise share.

mod common;
use common::{finished, fmnist_data, options};

use examples::report::read_losses;
use examples::train::{train, Outcome, Overrides, RunConfig, TrainOptions};

#[test]
fn a_paused_and_resumed_run_equals_an_uninterrupted_one() {
    paused_and_resumed_equals_uninterrupted(None);
    paused_and_resumed_equals_uninterrupted(Some(48));
}

fn paused_and_resumed_equals_uninterrupted(audit: Option<usize>) {
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
                audit,
                // Little noise when audited, so that the bound has something to lose.
                noise_multiplier: audit.map(|_| 0.3),
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
    // The audit goes on where it paused: the same canaries, the same scores, the same bound.
    assert_eq!(whole.audit.is_some(), audit.is_some());
    assert_eq!(resumed.audit.is_some(), audit.is_some());
    if let (Some(a), Some(b)) = (&whole.audit, &resumed.audit) {
        eprintln!("uninterrupted: {a:?}\nresumed: {b:?}");
        assert!(a.epsilon_lower_bound > 0.0, "{a:?}");
        assert_eq!(a.included, b.included);
        let (ca, cb) = (a.consistency.unwrap(), b.consistency.unwrap());
        assert!(
            (ca.noise_variance - cb.noise_variance).abs() <= 1e-9,
            "{ca:?} vs {cb:?}"
        );
        assert!(
            (ca.participation - cb.participation).abs() <= 1e-9,
            "{ca:?} vs {cb:?}"
        );
        assert!(
            (a.epsilon_lower_bound - b.epsilon_lower_bound).abs() <= 1e-6,
            "{a:?} vs {b:?}"
        );
    }
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
