//! Two dp-train processes and `dp-train orchestrator` on 127.0.0.1 train the run that one
//! process does (seeded: the same batches and noise), to float rounding; a process with
//! another job's secret is refused while the job goes on. Every process is bounded: killed
//! after `LIMIT`.

mod common;
use common::{dp_train_preset, fmnist_data};

use examples::report::Summary;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

fn dp_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dp-train"))
}

/// Waits for `child` at most until `deadline`, killing it then.
fn bounded(mut child: Child, deadline: Instant) -> Output {
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    panic!(
        "a dp-train process ran past {LIMIT:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn summary(dir: &Path) -> Summary {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

const RUN: [&str; 10] = [
    "--steps",
    "6",
    "--batch-size",
    "24",
    "--micro-batch",
    "5",
    "--learning-rate",
    "0.5",
    "--seed",
    "11",
];

#[test]
fn two_processes_with_an_orchestrator_train_the_run_of_one() {
    let deadline = Instant::now() + LIMIT;
    let data = fmnist_data();
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("job.secret");
    let secret_arg = secret.to_str().unwrap();

    let one_dir = tmp.path().join("one");
    let one = dp_train_preset("fmnist-cnn-quick", data.path(), &one_dir, &RUN);
    assert!(
        one.status.success(),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );

    let mut orchestrator = dp_train()
        .args(["orchestrator", "--listen", "127.0.0.1:0", "--nodes", "2"])
        .args(["--secret-file", secret_arg, "--admission-timeout", "120"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its second line names the port the system chose.
    let mut lines = BufReader::new(orchestrator.stderr.take().unwrap()).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the orchestrator says where it listens")
            .unwrap();
        if let Some(rest) = line.strip_prefix("orchestrator listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(address.starts_with("127.0.0.1:"), "{address}");
    let log = std::thread::spawn(move || lines.map_while(|l| l.ok()).collect::<Vec<_>>());
    let group = [
        "--nodes",
        "2",
        "--orchestrator",
        &address,
        "--secret-file",
        secret_arg,
    ];

    // Another job's secret: refused, and the job waits for the real peer.
    let stranger_secret = tmp.path().join("other.secret");
    std::fs::write(&stranger_secret, format!("{}\n", "ab".repeat(32))).unwrap();
    let stranger = dp_train()
        .args([
            "--node-rank",
            "1",
            "--nodes",
            "2",
            "--orchestrator",
            &address,
        ])
        .args(["--secret-file", stranger_secret.to_str().unwrap()])
        .args(["--data-dir", data.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!stranger.status.success());
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("secret"));

    let follower = dp_train()
        .args(["--node-rank", "1"])
        .args(group)
        .args(["--data-dir", data.path().to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let group_dir = tmp.path().join("group");
    let mut leader_args = vec![
        "--preset",
        "fmnist-cnn-quick",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--out",
        group_dir.to_str().unwrap(),
        "--node-rank",
        "0",
    ];
    leader_args.extend(group);
    leader_args.extend(RUN);
    let leader = dp_train()
        .args(&leader_args)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let leader = bounded(leader, deadline);
    let follower = bounded(follower, deadline);
    let orchestrator = bounded(orchestrator, deadline);
    let log = log.join().unwrap();
    assert!(
        leader.status.success(),
        "{}",
        String::from_utf8_lossy(&leader.stderr)
    );
    assert!(
        follower.status.success(),
        "{}",
        String::from_utf8_lossy(&follower.stderr)
    );
    assert!(orchestrator.status.success(), "{log:?}");
    assert!(log.iter().any(|l| l.contains("refused")), "{log:?}");
    assert!(String::from_utf8_lossy(&follower.stdout).contains("peer 1 of 2: trained to step 6"));

    let (one, group) = (summary(&one_dir), summary(&group_dir));
    eprintln!(
        "one process: accuracy {}, ε {}; two: accuracy {}, ε {}",
        one.test_accuracy, one.epsilon, group.test_accuracy, group.epsilon
    );
    assert_eq!(group.peers, 2);
    assert_eq!((group.steps, group.epsilon), (one.steps, one.epsilon));
    assert_eq!(group.test_accuracy, one.test_accuracy);
    let (a, b) = (
        std::fs::read(one_dir.join("model.safetensors")).unwrap(),
        std::fs::read(group_dir.join("model.safetensors")).unwrap(),
    );
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&a).unwrap(),
        safetensors::SafeTensors::deserialize(&b).unwrap(),
    );
    let mut gap = 0f32;
    for (name, view) in a.tensors() {
        let other = b.tensor(&name).unwrap();
        for (x, y) in view.data().chunks(4).zip(other.data().chunks(4)) {
            let (x, y) = (
                f32::from_le_bytes(x.try_into().unwrap()),
                f32::from_le_bytes(y.try_into().unwrap()),
            );
            gap = gap.max((x - y).abs());
        }
    }
    eprintln!("largest weight difference: {gap}");
    assert!(gap < 1e-5, "{gap}");
}
