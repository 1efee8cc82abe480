//! Training on several machines: one process per device, each a peer of a network group
//! served by `dp-train orchestrator` ([`dp_core::collective::Orchestrator`]). Peer 0 runs the
//! ordinary [`super::train`] with [`NetworkOptions`]; every other peer runs [`follow_node`]
//! and takes its settings, and peer 0's replica, from peer 0.
//!
//! A peer that fails or is killed closes its connection; the orchestrator then stops every
//! other peer with an error, so no peer waits forever.
//!
//! # Privacy
//! The peers exchange un-noised clipped sums: see [`dp_core::collective`] for the trust
//! boundary this draws around the machines and the network between them.

use super::classifier::Classifier;
use super::parallel::{follow, receive};
use super::record::check_same_data;
use super::run::{load_data, with_model, DeviceChoice, ModelTask};
use crate::data::Split;
use crate::error::{Result, TrainError};
use burn::module::{AutodiffModule, ModuleDisplay};
use burn::tensor::backend::AutodiffBackend;
use dp_core::collective::{JobSecret, NetworkPeer};
use std::path::PathBuf;
use std::time::Duration;

/// How long a peer keeps trying to reach the orchestrator.
pub const CONNECT_FOR: Duration = Duration::from_secs(600);

/// A process's place in a network group.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkOptions {
    /// The orchestrator's `HOST:PORT`.
    pub orchestrator: String,
    /// This process's rank, 0 to `nodes − 1` (0 leads).
    pub rank: usize,
    /// The number of processes.
    pub nodes: usize,
    /// The file holding the job's secret (made by `dp-train orchestrator`).
    pub secret_file: PathBuf,
}

/// Joins the group of `options` (waits until every peer has joined).
pub fn join(options: &NetworkOptions) -> Result<NetworkPeer> {
    let secret = JobSecret::read(&options.secret_file)?;
    Ok(NetworkPeer::join(
        &options.orchestrator,
        options.rank,
        options.nodes,
        &secret,
        CONNECT_FOR,
    )?)
}

struct Follow<'a, AB: AutodiffBackend> {
    received: super::parallel::Received,
    split: &'a Split,
    peer: &'a NetworkPeer,
    device: &'a AB::Device,
}

impl<AB: AutodiffBackend> ModelTask<AB> for Follow<'_, AB> {
    type Output = ();

    fn run<M>(self, template: M) -> Result<()>
    where
        M: AutodiffModule<AB> + Classifier<AB> + ModuleDisplay,
        M::InnerModule: Classifier<AB::InnerBackend> + ModuleDisplay,
    {
        follow::<AB, M>(template, self.received, self.split, self.peer, self.device)
    }
}

fn follow_on<AB: AutodiffBackend>(
    peer: NetworkPeer,
    data_dir: Option<PathBuf>,
    device: &AB::Device,
) -> Result<u64> {
    let received = receive::<AB::InnerBackend>(&peer, device)?;
    let mut config = received.record.config.clone();
    if let Some(dir) = data_dir {
        config.data_dir = dir;
    }
    let split = load_data(&config)?;
    check_same_data(&received.record, &split)?;
    let (stop_at, classes) = (received.job.stop_at, split.train.classes);
    let task = Follow {
        received,
        split: &split,
        peer: &peer,
        device,
    };
    with_model::<AB, _>(&config, classes, device, task)?;
    peer.leave()?;
    Ok(stop_at)
}

/// Runs peer `options.rank` (≥ 1) of a network group on `device`, reading the data from
/// `data_dir` (default: the directory peer 0 names); returns the step it stopped after.
/// It writes no file.
pub fn follow_node(
    options: &NetworkOptions,
    device: DeviceChoice,
    data_dir: Option<PathBuf>,
) -> Result<u64> {
    if options.rank == 0 {
        return Err(TrainError::Usage(
            "peer 0 leads: run it with --preset (or --resume)".into(),
        ));
    }
    let peer = join(options)?;
    match device {
        DeviceChoice::Cpu => follow_on::<burn::backend::Autodiff<burn::backend::Flex>>(
            peer,
            data_dir,
            &Default::default(),
        ),
        DeviceChoice::Cuda => cuda(peer, data_dir),
        DeviceChoice::Wgpu => wgpu(peer, data_dir),
    }
}

#[cfg(feature = "cuda")]
fn cuda(peer: NetworkPeer, data_dir: Option<PathBuf>) -> Result<u64> {
    dp_core::device::check_cuda(0)?;
    let device = burn::backend::cuda::CudaDevice::new(0);
    follow_on::<burn::backend::Autodiff<burn::backend::Cuda>>(peer, data_dir, &device)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: NetworkPeer, _: Option<PathBuf>) -> Result<u64> {
    Err(TrainError::Usage(
        "--device cuda needs a build with CUDA support (--features cuda)".into(),
    ))
}

#[cfg(feature = "wgpu")]
fn wgpu(peer: NetworkPeer, data_dir: Option<PathBuf>) -> Result<u64> {
    dp_core::device::init_wgpu()?;
    follow_on::<burn::backend::Autodiff<dp_core::device::Wgpu>>(peer, data_dir, &Default::default())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: NetworkPeer, _: Option<PathBuf>) -> Result<u64> {
    Err(TrainError::Usage(
        "--device wgpu needs a build with wgpu support (--features wgpu)".into(),
    ))
}
