//! Data-parallel DP-SGD on burn-collective, with flex peers as threads of this process
//! (`dp_core::collective::Peer`, `DpOptimizer::finish_step_all_reduced`):
//! - with σ = 0, groups of 2 and 3 peers give the parameters of one process on the same
//!   logical batches;
//! - the noise of a step is N(0, σ²C²) once, not once per peer (KS test with power against a
//!   planted bug that lets every peer add it);
//! - the shards of a batch partition it;
//! - a step in which a peer's shard is empty completes, and the peers' models stay identical.
//!
//! - the network group (`Orchestrator`, `NetworkPeer`) on 127.0.0.1, peers as threads: sums
//!   over many rounds of changing sizes; only peers holding the job's secret are admitted (a
//!   wrong secret, a taken rank, another group size are refused, and a peer refuses an
//!   orchestrator without the secret); the orchestrator binds only the address it is given; a
//!   peer that disappears stops the others with an error instead of a hang.
//!
//! burn-collective keeps one group per backend in a process, so the tests that start local
//! groups take a lock and run one at a time (the network groups need none).

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::collective::{
    share_bytes, share_key, AllReduce, JobSecret, NetworkPeer, Orchestrator, Peer,
};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::rng::SecureRng;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::test_hooks::{plant, PlantedBug};
use dp_core::{DpOptimizer, DpSgdConfig};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

type B = Autodiff<Flex>;

static ONE_GROUP_AT_A_TIME: Mutex<()> = Mutex::new(());

#[derive(Module, Debug)]
struct Net<B: Backend> {
    hidden: Linear<B>,
    out: Linear<B>,
}

impl<B: Backend> Net<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out.forward(self.hidden.forward(x).tanh())
    }
}

const FEATURES: usize = 50;
const HIDDEN: usize = 40;
const CLIP: f64 = 0.5;

fn net() -> Net<B> {
    let device = Default::default();
    Net {
        hidden: LinearConfig::new(FEATURES, HIDDEN).init(&device).unwrap(),
        out: LinearConfig::new(HIDDEN, 3).init(&device).unwrap(),
    }
}

fn params(model: &Net<B>) -> Vec<f32> {
    let mut v = Vec::new();
    for t in [
        model.hidden.weight.val().into_data(),
        model.hidden.bias.as_ref().unwrap().val().into_data(),
        model.out.weight.val().into_data(),
        model.out.bias.as_ref().unwrap().val().into_data(),
    ] {
        v.extend(t.convert::<f32>().to_vec::<f32>().unwrap());
    }
    v
}

/// Rows `indices` of a deterministic dataset (features and labels).
fn rows(indices: &[usize]) -> (Tensor<B, 2>, Tensor<B, 1, Int>) {
    let device = Default::default();
    let x: Vec<f32> = indices
        .iter()
        .flat_map(|&i| (0..FEATURES).map(move |j| (((i * 31 + j * 17) % 97) as f32 / 48.0) - 1.0))
        .collect();
    let y: Vec<i64> = indices.iter().map(|&i| (i % 3) as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [indices.len(), FEATURES]), &device),
        Tensor::from_data(TensorData::new(y, [indices.len()]), &device),
    )
}

/// How a test trains.
#[derive(Clone, Copy)]
struct Setting {
    dataset: u64,
    sampling_rate: f64,
    sigma: f64,
    steps: u64,
    /// Zero gradients (the loss is 0 × the logits): the update is the noise alone.
    zero_gradients: bool,
    bug: Option<PlantedBug>,
}

/// Each peer's noise generator has a seed of its own (only peer 0's is used).
fn optimizer(
    model: &Net<B>,
    sigma: f64,
    rank: u64,
) -> DpOptimizer<B, Net<B>, impl burn::optim::Optimizer<Net<B>, B>> {
    let accountant = AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::AddOrRemoveOne)
        .unwrap();
    DpOptimizer::new(
        model,
        SgdConfig::new().init(),
        DpSgdConfig::new(sigma, CLIP),
        accountant,
    )
    .unwrap()
    .with_noise(GaussianNoise::seeded(7 + rank))
}

/// Per-row losses of `indices` on `model`.
fn losses(
    model: &Net<B>,
    x: &Tensor<B, 2>,
    y: &Tensor<B, 1, Int>,
    r: std::ops::Range<usize>,
    zero: bool,
) -> Tensor<B, 1> {
    let logits = model.forward(x.clone().slice(r.clone()));
    let logits = if zero { logits.mul_scalar(0.0) } else { logits };
    cross_entropy_per_row(logits, y.clone().slice(r))
}

/// What one peer (or the single process) ends with: its parameters and every step's released
/// noisy gradient of the hidden layer's weight, times the expected batch size.
struct Trained {
    params: Vec<f32>,
    released: Vec<f32>,
}

/// Trains `init` for `s.steps` as peer `rank` of `peers` (`None`: one process, no group).
fn train(init: &Net<B>, s: Setting, group: Option<(usize, usize)>) -> Trained {
    plant(s.bug);
    let mut model = init.clone();
    let mut opt = optimizer(&model, s.sigma, group.map_or(0, |g| g.0 as u64));
    opt.watch(model.hidden.weight.id);
    let mut sampler = PoissonSampler::seeded(s.dataset, s.sampling_rate, 99).unwrap();
    let peer = group
        .map(|(rank, peers)| Peer::<Flex>::join_local(rank, peers, Default::default()).unwrap());
    let mut released = Vec::new();
    for _ in 0..s.steps {
        let batch = sampler.next_batch();
        let expected = batch.sampling().expected_batch_size() as f32;
        let shard = match group {
            Some((rank, peers)) => batch.shard(rank, peers),
            None => batch,
        };
        let mut step = opt.begin_step(&shard).unwrap();
        for indices in shard.micro_batches(3) {
            let (x, y) = rows(indices);
            opt.accumulate(&mut step, &model, indices.len(), |m, r| {
                losses(m, &x, &y, r, s.zero_gradients)
            })
            .unwrap();
        }
        model = match &peer {
            Some(peer) => opt.finish_step_all_reduced(step, model, 0.5, peer).unwrap(),
            None => opt.finish_step(step, model, 0.5).unwrap(),
        };
        released.extend(opt.released().unwrap().iter().map(|g| g * expected));
    }
    if let Some(peer) = peer {
        peer.leave().unwrap();
    }
    plant(None);
    Trained {
        params: params(&model),
        released,
    }
}

/// Every peer of a group of `peers` threads, in rank order; fails if the group does not
/// finish within two minutes.
fn group(init: &Net<B>, s: Setting, peers: usize) -> Vec<Trained> {
    let _one = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Peer::<Flex>::reset();
    let (tx, rx) = std::sync::mpsc::channel();
    for rank in 0..peers {
        let (tx, init) = (tx.clone(), init.clone());
        std::thread::spawn(move || {
            let trained = train(&init, s, Some((rank, peers)));
            let _ = tx.send((rank, trained));
        });
    }
    drop(tx);
    let mut out: Vec<Option<Trained>> = (0..peers).map(|_| None).collect();
    for _ in 0..peers {
        let (rank, trained) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("every peer finishes within two minutes");
        out[rank] = Some(trained);
    }
    out.into_iter().map(Option::unwrap).collect()
}

#[test]
fn with_sigma_zero_groups_of_2_and_3_give_the_single_process_parameters() {
    // σ = 0 is refused by the accountants, so the noise is switched off by the test hook (in
    // both the single-process and the data-parallel step).
    let init = net();
    let s = Setting {
        dataset: 60,
        sampling_rate: 0.3,
        sigma: 1.0,
        steps: 4,
        zero_gradients: false,
        bug: Some(PlantedBug::NoNoise),
    };
    let single = train(&init, s, None);
    assert_ne!(
        single.params,
        params(&init),
        "training moved the parameters"
    );
    for peers in [2, 3] {
        let trained = group(&init, s, peers);
        for (rank, t) in trained.iter().enumerate() {
            let worst = t
                .params
                .iter()
                .zip(&single.params)
                .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "{peers} peers, rank {rank}: off by {worst}");
            assert_eq!(
                t.params, trained[0].params,
                "{peers} peers: rank {rank} differs from 0"
            );
        }
    }
}

/// Kolmogorov–Smirnov statistic of `samples` against N(0, std²).
fn ks_statistic(samples: &[f32], std: f64) -> f64 {
    let mut z: Vec<f64> = samples.iter().map(|s| *s as f64 / std).collect();
    z.sort_by(f64::total_cmp);
    let n = z.len() as f64;
    z.iter().enumerate().fold(0.0, |d: f64, (i, &x)| {
        let f = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
        d.max((f - i as f64 / n).abs())
            .max(((i + 1) as f64 / n - f).abs())
    })
}

#[test]
fn the_noise_is_added_once_per_step_not_once_per_peer() {
    // Zero gradients: the released update × the expected batch size is the noise alone,
    // 2,000 values of the hidden weight per step over 5 steps. KS at false-failure rate 1e-6
    // (critical value √(ln(2/1e-6)/(2n)) = 0.027 at n = 10,000); seeded, so deterministic.
    let init = net();
    let s = Setting {
        dataset: 40,
        sampling_rate: 0.25,
        sigma: 1.3,
        steps: 5,
        zero_gradients: true,
        bug: None,
    };
    let std = s.sigma * CLIP;
    let n = 5 * FEATURES * HIDDEN;
    let critical = ((2.0f64 / 1e-6).ln() / (2.0 * n as f64)).sqrt();
    let honest = group(&init, s, 2);
    for (rank, t) in honest.iter().enumerate() {
        assert_eq!(t.released.len(), n);
        let d = ks_statistic(&t.released, std);
        eprintln!("rank {rank}: KS {d:.4} against N(0, (σC)²), critical {critical:.4}");
        assert!(
            d < critical,
            "rank {rank}: KS {d} ≥ {critical} against N(0, (σC)²)"
        );
    }
    // Power: if every peer added the noise, its variance would be W·σ²C², and the same test
    // rejects it.
    let buggy = group(
        &init,
        Setting {
            bug: Some(PlantedBug::NoisePerPeer),
            ..s
        },
        2,
    );
    let d = ks_statistic(&buggy[0].released, std);
    eprintln!("noise added by every peer: KS {d:.4} against N(0, (σC)²)");
    assert!(
        d > critical,
        "noise added by every peer not detected: KS {d} < {critical}"
    );
    let d = ks_statistic(&buggy[0].released, std * 2f64.sqrt());
    assert!(d < critical, "the buggy noise is N(0, 2σ²C²): KS {d}");
}

#[test]
fn the_shards_of_a_batch_partition_it() {
    for (n, q) in [(1000u64, 0.01), (1000, 0.3), (7, 0.5), (50, 1.0)] {
        let mut sampler = PoissonSampler::seeded(n, q, 3).unwrap();
        for _ in 0..20 {
            let batch = sampler.next_batch();
            for peers in 1..=5 {
                let shards: Vec<_> = (0..peers).map(|r| batch.shard(r, peers)).collect();
                let union: Vec<usize> = shards.iter().flat_map(|s| s.indices().to_vec()).collect();
                assert_eq!(union, batch.indices(), "n = {n}, q = {q}, {peers} peers");
                let sizes: Vec<usize> = shards.iter().map(|s| s.indices().len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{sizes:?}");
                assert!(shards.iter().all(|s| s.sampling() == batch.sampling()));
            }
            assert!(batch.shard(5, 5).indices().is_empty());
        }
    }
}

#[test]
fn a_step_with_an_empty_shard_completes_and_the_peers_stay_identical() {
    // 4 examples at q = 0.25: most batches hold 0 to 2 examples, so among 3 peers some shard
    // is empty at most steps (and sometimes all are). With noise (σ = 1) the peers must still
    // end with identical parameters.
    let init = net();
    let s = Setting {
        dataset: 4,
        sampling_rate: 0.25,
        sigma: 1.0,
        steps: 8,
        zero_gradients: false,
        bug: None,
    };
    let mut sampler = PoissonSampler::seeded(s.dataset, s.sampling_rate, 99).unwrap();
    let empty_shards = (0..s.steps)
        .filter(|_| sampler.next_batch().shard(2, 3).indices().is_empty())
        .count();
    assert!(empty_shards > 0, "the setting has empty shards");
    let trained = group(&init, s, 3);
    assert_ne!(trained[0].params, params(&init));
    for t in &trained[1..] {
        assert_eq!(t.params, trained[0].params);
        assert_eq!(t.released, trained[0].released);
    }
}

#[test]
fn peer_0s_key_reaches_every_peer_and_keys_one_logical_draw() {
    // For groups of processes: peer 0 draws the sampler's key from the OS and shares it, so
    // that every peer draws the same batches (here checked over 5 batches).
    let _one = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Peer::<Flex>::reset();
    let key = SecureRng::os_key().unwrap();
    let peers = 3;
    let (tx, rx) = std::sync::mpsc::channel();
    for rank in 0..peers {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let device = Default::default();
            let peer = Peer::<Flex>::join_local(rank, peers, device).unwrap();
            let got = share_key(&peer, (rank == 0).then_some(key), &device).unwrap();
            let mut sampler = PoissonSampler::from_shared_key(100, 0.2, got).unwrap();
            let batches: Vec<Vec<usize>> = (0..5)
                .map(|_| sampler.next_batch().indices().to_vec())
                .collect();
            assert!(
                sampler.state().rng.is_none(),
                "a shared-key sampler exports no state"
            );
            peer.leave().unwrap();
            let _ = tx.send((rank, got, batches));
        });
    }
    drop(tx);
    let mut seen = Vec::new();
    for _ in 0..peers {
        seen.push(
            rx.recv_timeout(Duration::from_secs(60))
                .expect("every peer finishes"),
        );
    }
    for (rank, got, batches) in &seen {
        assert_eq!(*got, key, "peer {rank}");
        assert_eq!(batches, &seen[0].2, "peer {rank} drew other batches");
    }
    assert!(seen[0].2.iter().any(|b| !b.is_empty()));
}

#[test]
fn peer_0s_bytes_reach_every_peer_exactly() {
    // How a group starts from peer 0's replica: its settings and checkpoint travel as bytes,
    // three to an f32. Lengths that are not multiples of 3, an empty message and every byte
    // value must arrive unchanged, one message after another.
    let _one = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Peer::<Flex>::reset();
    let messages: Vec<Vec<u8>> = vec![
        (0..=255u8).cycle().take(100_001).collect(),
        Vec::new(),
        vec![255, 0, 255, 7],
        (0..3 * 70_000).map(|i| (i * 7919 % 251) as u8).collect(),
    ];
    let peers = 3;
    let (tx, rx) = std::sync::mpsc::channel();
    for rank in 0..peers {
        let (tx, messages) = (tx.clone(), messages.clone());
        std::thread::spawn(move || {
            let device = Default::default();
            let peer = Peer::<Flex>::join_local(rank, peers, device).unwrap();
            let got: Vec<Vec<u8>> = messages
                .iter()
                .map(|m| share_bytes(&peer, (rank == 0).then_some(&m[..]), &device).unwrap())
                .collect();
            // A follower that also gives bytes is refused before anything is sent.
            let refused = rank != 0 && share_bytes(&peer, Some(&[1u8][..]), &device).is_err();
            peer.leave().unwrap();
            let _ = tx.send((rank, got, refused));
        });
    }
    drop(tx);
    for _ in 0..peers {
        let (rank, got, refused) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("every peer finishes");
        assert_eq!(got, messages, "peer {rank}");
        assert!(
            rank == 0 || refused,
            "peer {rank} was allowed to give bytes"
        );
    }
}

// The network group.

const WAIT: Duration = Duration::from_secs(60);

/// What an orchestrator thread ends with: its result and its log.
type Ended = mpsc::Receiver<(Result<(), String>, Vec<String>)>;

/// An orchestrator for `nodes` on a free port of 127.0.0.1, running in a thread; returns its
/// address and a channel that gets its result and its log.
fn orchestrator(nodes: usize, secret: &JobSecret) -> (String, Ended) {
    let orchestrator = Orchestrator::bind(
        "127.0.0.1:0",
        nodes,
        secret.clone(),
        Duration::from_secs(30),
    )
    .unwrap();
    let address = orchestrator.local_addr().unwrap();
    assert!(
        address.ip().is_loopback(),
        "bound {address}, not the address given"
    );
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let log = std::sync::Mutex::new(Vec::new());
        let result = orchestrator
            .run(|line| log.lock().unwrap().push(line.to_string()))
            .map_err(|e| e.to_string());
        let _ = tx.send((result, log.into_inner().unwrap()));
    });
    (address.to_string(), rx)
}

fn sum_over(peer: &NetworkPeer, v: Vec<f32>) -> Result<Vec<f32>, String> {
    let n = v.len();
    let t = Tensor::<B, 1>::from_data(TensorData::new(v, [n]), &Default::default());
    AllReduce::<B>::all_reduce_sum(peer, t)
        .map(|t| t.into_data().to_vec::<f32>().unwrap())
        .map_err(|e| e.to_string())
}

#[test]
fn three_peers_sum_exactly_over_many_rounds_and_leave() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(3, &secret);
    let (tx, rx) = mpsc::channel();
    for rank in 0..3 {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, rank, 3, &secret, WAIT).unwrap();
            let mut sums = Vec::new();
            for round in 0..40usize {
                let n = 1 + (round * 7919) % 3000;
                let v = (0..n).map(|i| (rank * 1000 + i + round) as f32).collect();
                sums.push(sum_over(&peer, v).unwrap());
            }
            // Peer 0's key reaches every peer (share_key's two all-reduces over the network).
            let key =
                share_key::<B, _>(&peer, (rank == 0).then_some([7u8; 32]), &Default::default());
            peer.leave().unwrap();
            let _ = tx.send((rank, sums, key.unwrap()));
        });
    }
    for _ in 0..3 {
        let (rank, sums, key) = rx.recv_timeout(WAIT).expect("a peer hung");
        assert_eq!(key, [7u8; 32], "peer {rank}");
        for (round, sum) in sums.iter().enumerate() {
            let n = 1 + (round * 7919) % 3000;
            let expected: Vec<f32> = (0..n)
                .map(|i| (0..3).map(|r| (r * 1000 + i + round) as f32).sum())
                .collect();
            assert_eq!(sum, &expected, "peer {rank}, round {round}");
        }
    }
    let (result, log) = done.recv_timeout(WAIT).unwrap();
    assert_eq!(result, Ok(()), "{log:?}");
    assert!(
        log.iter().any(|l| l.contains("every peer left after 42")),
        "{log:?}"
    );
}

#[test]
fn only_peers_with_the_jobs_secret_are_admitted() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(2, &secret);
    // A wrong secret, another group size: refused, and the job waits on.
    let stranger = NetworkPeer::join(&address, 1, 2, &JobSecret::generate().unwrap(), WAIT);
    let stranger = stranger.unwrap_err().to_string();
    assert!(stranger.contains("secret"), "{stranger}");
    let other_size = NetworkPeer::join(&address, 1, 3, &secret, WAIT).unwrap_err();
    assert!(other_size.to_string().contains("3 peers"), "{other_size}");
    // The real peers then train; a second peer 1 arriving before peer 0 is refused.
    let (tx, rx) = mpsc::channel();
    {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, 1, 2, &secret, WAIT).unwrap();
            let sum = sum_over(&peer, vec![2.0; 4]);
            peer.leave().unwrap();
            let _ = tx.send(sum);
        });
    }
    thread::sleep(Duration::from_millis(300));
    let twice = NetworkPeer::join(&address, 1, 2, &secret, WAIT).unwrap_err();
    assert!(twice.to_string().contains("joined already"), "{twice}");
    let peer = NetworkPeer::join(&address, 0, 2, &secret, WAIT).unwrap();
    assert_eq!(sum_over(&peer, vec![1.0; 4]).unwrap(), vec![3.0; 4]);
    peer.leave().unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap().unwrap(), vec![3.0; 4]);
    let (result, log) = done.recv_timeout(WAIT).unwrap();
    assert_eq!(result, Ok(()));
    let refused = log.iter().filter(|l| l.starts_with("refused")).count();
    assert_eq!(refused, 3, "{log:?}");
}

#[test]
fn a_peer_refuses_an_orchestrator_without_the_secret() {
    // An impostor that speaks the protocol but cannot prove the secret: it admits anyone.
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"DPBURN1\n").unwrap();
        s.write_all(&[9u8; 32]).unwrap();
        let mut hello = [0u8; 72];
        s.read_exact(&mut hello).unwrap();
        s.write_all(&[0u8; 32]).unwrap(); // not the HMAC of the challenge
        s.write_all(&[0, 0xA5]).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "the peer sent {} bytes to an impostor",
            rest.len()
        );
    });
    let err = NetworkPeer::join(&address, 0, 1, &JobSecret::generate().unwrap(), WAIT).unwrap_err();
    assert!(
        err.to_string().contains("not this job's orchestrator"),
        "{err}"
    );
}

#[test]
fn a_peer_that_disappears_stops_the_others_with_an_error() {
    let secret = JobSecret::generate().unwrap();
    let (address, done) = orchestrator(3, &secret);
    let (tx, rx) = mpsc::channel();
    for rank in 0..3 {
        let (tx, address, secret) = (tx.clone(), address.clone(), secret.clone());
        thread::spawn(move || {
            let peer = NetworkPeer::join(&address, rank, 3, &secret, WAIT).unwrap();
            assert_eq!(sum_over(&peer, vec![1.0]).unwrap(), vec![3.0]);
            if rank == 1 {
                // Dies without leaving: its connection closes.
                drop(peer);
                let _ = tx.send((rank, Ok(vec![])));
                return;
            }
            let _ = tx.send((rank, sum_over(&peer, vec![1.0])));
        });
    }
    for _ in 0..3 {
        let (rank, second) = rx.recv_timeout(WAIT).expect("a peer hung");
        if rank != 1 {
            let err = second.unwrap_err();
            assert!(
                err.contains("peer 1") && err.contains("group stopped"),
                "{err}"
            );
        }
    }
    let (result, _) = done.recv_timeout(WAIT).unwrap();
    assert!(result.unwrap_err().contains("peer 1"));
}

#[test]
fn the_orchestrator_gives_up_on_peers_that_never_join() {
    let secret = JobSecret::generate().unwrap();
    let orchestrator =
        Orchestrator::bind("127.0.0.1:0", 2, secret.clone(), Duration::from_millis(800)).unwrap();
    let address = orchestrator.local_addr().unwrap().to_string();
    let server = thread::spawn(move || orchestrator.run(|_| {}));
    let peer = NetworkPeer::join(&address, 0, 2, &secret, WAIT).unwrap_err();
    assert!(peer.to_string().contains("gave up"), "{peer}");
    let err = server.join().unwrap().unwrap_err().to_string();
    assert!(err.contains("[1]") && err.contains("did not join"), "{err}");
    // An address it cannot bind is an error, not a panic.
    assert!(Orchestrator::bind("256.1.1.1:1", 2, secret, WAIT).is_err());
}
