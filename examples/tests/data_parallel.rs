//! Data-parallel training from the command line's side:
//! - `dp-train --devices cpu:N`: a group of CPU peers (threads) trains the run one device
//!   would, with the same ε and, for a seeded run, the same batches and noise: groups of 2 and
//!   3 peers give the single-device model (to float rounding of the sums), its accuracy and ε;
//!   a group paused and resumed on another number of peers too; `--audit` is refused;
//! - two dp-train processes and `dp-train orchestrator` on 127.0.0.1 train the run of one
//!   process; a process with another job's secret is refused while the job goes on (every
//!   process bounded: killed after `LIMIT`);
//! - `dp-bench --mode parallel` measures what it says on both transports.
//!
//! burn-collective keeps one group per backend in a process, and seeded model initialization
//! draws from burn's process-wide generator: the tests that train in this process take
//! `IN_PROCESS` and run one at a time.

mod common;
use common::{dp_train_preset, finished, fmnist_data, options, stderr};

use burn::backend::{Autodiff, Flex};
use dp_models::TanhCnn;
use examples::bench_parallel::{time_group, Transport};
use examples::report::{read_losses, Summary};
use examples::train::{train, DeviceChoice, Devices, Overrides, RunConfig, TrainOptions};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static IN_PROCESS: Mutex<()> = Mutex::new(());

fn in_process() -> std::sync::MutexGuard<'static, ()> {
    IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(data: &Path, seed: Option<u64>) -> RunConfig {
    RunConfig::new(
        &examples::presets::preset("fmnist-cnn-quick").unwrap(),
        Overrides {
            data_dir: Some(data.to_path_buf()),
            steps: Some(6),
            batch_size: Some(24),
            micro_batch: Some(5),
            // A gentle rate: the sums of 2 or 3 shards round differently from one sum (and the
            // group's sum in arrival order), and a large step would amplify that.
            learning_rate: Some(0.5),
            seed,
            eval_every: Some(3),
            ..Overrides::default()
        },
    )
    .unwrap()
}

fn on(peers: usize, out: &Path) -> TrainOptions {
    TrainOptions {
        devices: format!("cpu:{peers}").parse().unwrap(),
        ..options(out)
    }
}

/// Every parameter of a released model, by name.
fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (name, values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn max_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|((na, va), (nb, vb))| {
            assert_eq!(na, nb);
            assert_eq!(va.len(), vb.len());
            va.iter().zip(vb).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn assert_same_run(group: &Summary, group_dir: &Path, one: &Summary, one_dir: &Path) {
    assert_eq!(group.steps, one.steps);
    assert_eq!(group.epsilon, one.epsilon, "ε differs");
    assert_eq!(group.epsilon_pld, one.epsilon_pld);
    assert_eq!(group.epsilon_rdp, one.epsilon_rdp);
    assert_eq!(group.noise_multiplier, one.noise_multiplier);
    assert_eq!(group.sampling_rate, one.sampling_rate);
    assert_eq!(group.test_accuracy, one.test_accuracy);
    let gap = max_difference(&weights(group_dir), &weights(one_dir));
    // Printed as well: a panic's message can be lost in this binary.
    eprintln!(
        "{} peer(s): largest weight difference {gap}, accuracy {} vs {}",
        group.peers, group.test_accuracy, one.test_accuracy
    );
    assert!(gap < 1e-5, "the group's model is {gap} from one device's");
    let (lg, lo) = (
        read_losses(group_dir).unwrap(),
        read_losses(one_dir).unwrap(),
    );
    assert_eq!(lg.len(), lo.len());
    for ((sg, g), (so, o)) in lg.iter().zip(&lo) {
        assert_eq!(sg, so);
        assert!((g - o).abs() < 1e-5, "step {sg}: loss {g} (group) vs {o}");
    }
}

#[test]
fn groups_of_cpu_peers_train_the_run_of_one_device() {
    let _one = in_process();
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let seeded = Some(5);
    let one_dir = out.path().join("one");
    let one = finished(train(Some(config(data.path(), seeded)), &options(&one_dir)).unwrap());
    assert_eq!(one.peers, 1);
    for peers in [2, 3] {
        let dir = out.path().join(format!("group{peers}"));
        let group = finished(train(Some(config(data.path(), seeded)), &on(peers, &dir)).unwrap());
        assert_eq!(group.peers, peers);
        assert_same_run(&group, &dir, &one, &one_dir);
    }

    // Paused on two peers, resumed on three: still the same run.
    let dir = out.path().join("resumed");
    let paused = train(
        Some(config(data.path(), seeded)),
        &TrainOptions {
            pause_after: Some(4),
            ..on(2, &dir)
        },
    )
    .unwrap();
    assert!(matches!(
        paused,
        examples::train::Outcome::Paused { steps: 4, .. }
    ));
    let resumed = train(
        None,
        &TrainOptions {
            resume: true,
            ..on(3, &dir)
        },
    );
    let resumed = finished(resumed.unwrap());
    assert_same_run(&resumed, &dir, &one, &one_dir);

    // Unseeded: the key peer 0 draws keys one draw for the group, and the run is charged as
    // one device's.
    let dir = out.path().join("unseeded");
    let group = train(Some(config(data.path(), None)), &on(2, &dir));
    let group = finished(group.unwrap());
    assert_eq!((group.steps, group.epsilon), (one.steps, one.epsilon));
    assert!(group.test_accuracy.is_finite() && !group.seeded);
}

#[test]
fn the_audit_and_bad_device_lists_are_refused_before_anything_is_written() {
    let data = fmnist_data();
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("run");
    let audited = dp_train_preset(
        "fmnist-cnn-quick",
        data.path(),
        &dir,
        &[
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--audit",
            "20",
            "--devices",
            "cpu:2",
        ],
    );
    assert_eq!(audited.status.code(), Some(2), "{}", stderr(&audited));
    assert!(
        stderr(&audited).contains("--audit runs on one device"),
        "{}",
        stderr(&audited)
    );
    for bad in ["cpu:0", "gpu:1", "cuda:1,1"] {
        let o = dp_train_preset(
            "fmnist-cnn-quick",
            data.path(),
            &dir,
            &["--steps", "2", "--batch-size", "16", "--devices", bad],
        );
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    let both = dp_train_preset(
        "fmnist-cnn-quick",
        data.path(),
        &dir,
        &[
            "--steps",
            "2",
            "--batch-size",
            "16",
            "--devices",
            "cpu:2",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(!dir.exists(), "a refused run wrote its directory");
    // The one-device form parses to what --device gives.
    assert_eq!(
        "cpu".parse::<Devices>().unwrap(),
        Devices::one(DeviceChoice::Cpu)
    );
}

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

fn summary_of(dir: &Path) -> Summary {
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
        .stdout(Stdio::null())
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

    let (one, group) = (summary_of(&one_dir), summary_of(&group_dir));
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

#[test]
fn the_group_benchmark_reports_consistent_numbers_on_both_transports() {
    let _one = in_process();
    for transport in [Transport::Local, Transport::Network] {
        let t = time_group::<Autodiff<Flex>, _>(
            |d| TanhCnn::new(10, d),
            16,
            [1, 28, 28],
            2,
            transport,
            1,
            2,
            &Default::default(),
        )
        .unwrap();
        assert_eq!((t.peers, t.parameters), (2, 26_010), "{t:?}");
        assert!(t.one_device_ms > 0.0 && t.group_step_ms > 0.0 && t.all_reduce_ms > 0.0);
        // The step includes an all-reduce, so it takes longer than one alone.
        assert!(
            t.all_reduce_share > 0.0 && t.all_reduce_share < 1.0,
            "{t:?}"
        );
        let rate = 16.0 / (t.group_step_ms / 1e3);
        assert!((t.group_examples_per_s - rate).abs() < 1e-9 * rate);
        assert!((t.scaling - t.group_examples_per_s / t.one_device_examples_per_s).abs() < 1e-12);
    }
    // A group needs two peers and a batch to share.
    let one = time_group::<Autodiff<Flex>, _>(
        |d| TanhCnn::new(10, d),
        16,
        [1, 28, 28],
        1,
        Transport::Local,
        0,
        1,
        &Default::default(),
    );
    assert!(one.is_err());
}
