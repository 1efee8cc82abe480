//! `dp-bench --mode parallel`: a data-parallel private step against a one-device one, side by
//! side in one process, and the all-reduce's share of it.
//!
//! One device takes private steps of the whole batch; then a group of peers (threads, each on
//! its own copy of the model) takes steps of their shards of the same batch size, each ending
//! in [`dp_core::DpOptimizer::finish_step_all_reduced`]; then the peers time the all-reduce of
//! a model's worth of values alone, after a barrier (so no peer waits for a slower one).

use crate::bench::{self, Batch, BenchModel};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;
use dp_core::collective::{AllReduce, JobSecret, NetworkPeer, Orchestrator, Peer};
use dp_core::params::param_infos;
use dp_core::sampler::Sampler;
use dp_core::{DpError, PerExampleEngine, Result};
use std::time::Duration;

/// Which group carries the all-reduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// burn-collective: devices of this process.
    Local,
    /// dp-core's TCP group through an orchestrator on 127.0.0.1.
    Network,
}

/// What [`time_group`] measured (median milliseconds).
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupTiming {
    /// Peers of the group.
    pub peers: usize,
    /// The transport.
    pub transport: String,
    /// Trainable parameters (values per all-reduce).
    pub parameters: usize,
    /// A private step of the whole batch on one device.
    pub one_device_ms: f64,
    /// Peer 0's private step of its shard, all-reduce included.
    pub group_step_ms: f64,
    /// The all-reduce of `parameters` values alone.
    pub all_reduce_ms: f64,
    /// `all_reduce_ms / group_step_ms`.
    pub all_reduce_share: f64,
    /// Examples per second, one device.
    pub one_device_examples_per_s: f64,
    /// Examples per second, the group.
    pub group_examples_per_s: f64,
    /// `group_examples_per_s / one_device_examples_per_s`.
    pub scaling: f64,
}

enum Member<B: burn::tensor::backend::Backend> {
    Local(Peer<B>),
    Network(NetworkPeer),
}

impl<B: burn::tensor::backend::Backend> Member<B> {
    fn peer(&self) -> &dyn AllReduce<B> {
        match self {
            Member::Local(p) => p,
            Member::Network(p) => p,
        }
    }

    fn leave(self) -> Result<()> {
        match self {
            Member::Local(p) => p.leave(),
            Member::Network(p) => p.leave(),
        }
    }
}

/// One peer's medians: its step and the isolated all-reduce.
fn peer_timing<B, M>(
    member: &Member<B::InnerBackend>,
    model: M,
    shard: usize,
    shape: [usize; 3],
    warmup: usize,
    iters: usize,
    device: &B::Device,
) -> Result<(f64, f64, usize)>
where
    B: AutodiffBackend,
    M: BenchModel<B>,
{
    let peer = member.peer();
    let parameters: usize = param_infos(&model)
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.numel())
        .sum();
    let batch = Batch::<B>::random(shard.max(1), shape, 10, device);
    let mut optim = bench::private_optimizer(&model, PerExampleEngine::Fast, 1)?;
    let mut sampler = bench::sampler(shard.max(1))?;
    let mut model = model;
    let mut steps = Vec::new();
    for i in 0..warmup + iters {
        let (m, ms) = bench::time_ms::<B, _>(device, || -> Result<M> {
            let sampled = sampler.next_batch();
            let mut step = optim.begin_step(&sampled)?;
            optim.accumulate(&mut step, &model, sampled.indices().len(), |m, r| {
                dp_core::loss::cross_entropy_per_row(
                    m.logits(batch.inputs.clone().slice(r.clone())),
                    batch.targets.clone().slice(r),
                )
            })?;
            optim.finish_step_all_reduced(step, model, 0.01, peer)
        });
        model = m?;
        if i >= warmup {
            steps.push(ms);
        }
    }
    let mut reduces = Vec::new();
    for _ in 0..warmup + iters {
        // A barrier, so that the timed sum waits for no slower peer.
        peer.all_reduce_sum(Tensor::zeros([1], device))?;
        let values = Tensor::<B::InnerBackend, 1>::zeros([parameters], device);
        let (summed, ms) = bench::time_ms::<B, _>(device, || peer.all_reduce_sum(values));
        summed?;
        reduces.push(ms);
    }
    let reduces = &mut reduces[warmup..];
    Ok((
        bench::median(&mut steps),
        bench::median(reduces),
        parameters,
    ))
}

/// Times a private step of `batch` examples on one device, then on a group of `peers`
/// (threads on `device`, each with its shard of the batch) over `transport`. `make` builds a
/// model on a device.
#[allow(clippy::too_many_arguments)]
pub fn time_group<B, M>(
    make: impl Fn(&B::Device) -> std::result::Result<M, dp_models::ModelError> + Sync,
    batch: usize,
    shape: [usize; 3],
    peers: usize,
    transport: Transport,
    warmup: usize,
    iters: usize,
    device: &B::Device,
) -> Result<GroupTiming>
where
    B: AutodiffBackend,
    M: BenchModel<B>,
{
    if peers < 2 || batch < peers {
        return Err(DpError::invalid("peers", "W", peers, ">= 2 and <= batch"));
    }
    let model_error = |e: dp_models::ModelError| DpError::Collective(e.to_string());
    // One device.
    let model = make(device).map_err(model_error)?;
    let data = Batch::<B>::random(batch, shape, 10, device);
    let mut optim = bench::private_optimizer(&model, PerExampleEngine::Fast, 1)?;
    let mut sampler = bench::sampler(batch)?;
    let mut model = model;
    let mut one = Vec::new();
    for i in 0..warmup + iters {
        let (m, ms) = bench::time_ms::<B, _>(device, || {
            bench::private_step(model, &mut optim, &mut sampler, &data)
        });
        model = m?;
        if i >= warmup {
            one.push(ms);
        }
    }
    let one_device_ms = bench::median(&mut one);
    drop(model);

    // The group.
    let secret = JobSecret::generate()?;
    let orchestrator = match transport {
        Transport::Local => {
            Peer::<B::InnerBackend>::reset();
            None
        }
        Transport::Network => {
            let o = Orchestrator::bind(
                "127.0.0.1:0",
                peers,
                secret.clone(),
                Duration::from_secs(60),
            )?;
            let address = o.local_addr()?.to_string();
            Some((address, std::thread::spawn(move || o.run(|_| {}))))
        }
    };
    let address = orchestrator.as_ref().map(|(a, _)| a.clone());
    let results: Vec<Result<(f64, f64, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..peers)
            .map(|rank| {
                let (make, secret, address) = (&make, secret.clone(), address.clone());
                let device = device.clone();
                let shard = batch * (rank + 1) / peers - batch * rank / peers;
                scope.spawn(move || -> Result<(f64, f64, usize)> {
                    let member = match address {
                        None => Member::Local(Peer::join_local(rank, peers, device.clone())?),
                        Some(a) => Member::Network(NetworkPeer::join(
                            &a,
                            rank,
                            peers,
                            &secret,
                            Duration::from_secs(60),
                        )?),
                    };
                    let model = make(&device).map_err(model_error)?;
                    let timing =
                        peer_timing::<B, M>(&member, model, shard, shape, warmup, iters, &device)?;
                    member.leave()?;
                    Ok(timing)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(DpError::Collective("a peer panicked".into())))
            })
            .collect()
    });
    if let Some((_, server)) = orchestrator {
        server
            .join()
            .map_err(|_| DpError::Collective("the orchestrator panicked".into()))??;
    }
    let mut timings = Vec::new();
    for r in results {
        timings.push(r?);
    }
    let (group_step_ms, all_reduce_ms, parameters) = timings[0];
    let one_rate = batch as f64 / (one_device_ms / 1e3);
    let group_rate = batch as f64 / (group_step_ms / 1e3);
    Ok(GroupTiming {
        peers,
        transport: format!("{transport:?}").to_lowercase(),
        parameters,
        one_device_ms,
        group_step_ms,
        all_reduce_ms,
        all_reduce_share: all_reduce_ms / group_step_ms,
        one_device_examples_per_s: one_rate,
        group_examples_per_s: group_rate,
        scaling: group_rate / one_rate,
    })
}
