//! Data-parallel DP-SGD on burn-collective, with flex peers as threads of this process
//! (`dp_core::collective::Peer`, `DpOptimizer::finish_step_all_reduced`):
//! - with σ = 0, groups of 2 and 3 peers give the parameters of one process on the same
//!   logical batches;
//! - the noise of a step is N(0, σ²C²) once, not once per peer (KS test with power against a
//!   planted bug that lets every peer add it);
//! - the shards of a batch partition it;
//! - a step in which a peer's shard is empty completes, and the peers' models stay identical.
//!
//! burn-collective keeps one group per backend in a process, so the tests that start groups
//! take a lock and run one at a time.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::optim::SgdConfig;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::collective::{share_bytes, share_key, Peer};
use dp_core::layers::{Linear, LinearConfig};
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::rng::SecureRng;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::test_hooks::{plant, PlantedBug};
use dp_core::{DpOptimizer, DpSgdConfig};
use std::sync::Mutex;
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
