//! Data-parallel training: a group of peers (devices of this machine as threads, or
//! processes on several machines) trains one model on one logical batch per step.
//!
//! - **Peer 0 leads.** It holds the run: its settings, the lock on the run directory, the
//!   journal, the checkpoints and the reports, exactly as a single-process run does; the
//!   accountant that counts is its own. At the start it hands its replica to the others:
//!   the job (run.json, the last step of this invocation, the augmentation seed), the state of
//!   its model and optimizer (checkpoint bytes, never written by the others), and, unless
//!   the run is seeded, a sampler key drawn from the operating system
//!   ([`dp_core::collective::share_key`]).
//! - **Every step** every peer draws the same Poisson batch, takes its shard, clips and sums
//!   it, and the peers agree that all of them did ([`agree`]: one all-reduce of a flag); then
//!   one all-reduce sums the shares, peer 0 having added the noise once
//!   ([`dp_core::DpOptimizer::finish_step_all_reduced`]). A peer that fails says so at the next
//!   agreement, and every peer stops with an error instead of waiting forever.
//! - **After the last step** of the invocation the peers check that their replicas are
//!   identical (SHA-256 of every parameter), then peer 0 alone evaluates and writes the
//!   summary.
//!
//! # Privacy
//! The peers exchange un-noised clipped sums, the sampler key and peer 0's state: the peers
//! and the links between them are inside the trust boundary. Nothing any follower holds is
//! written to a file.

use super::audit::CanaryAudit;
use super::classifier::Classifier;
use super::config::RunConfig;
use super::fit::{fit, stop_at, Context};
use super::record::{parse_run_record, RunRecord};
use super::session::{sgd, Session};
use super::step::{take_step, StepData, StepLoss};
use super::Outcome;
use crate::data::Split;
use crate::error::{Result, TrainError};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::Optimizer;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use dp_core::collective::{share_bytes, share_key, AllReduce, Peer};
use dp_core::rng::SecureRng;
use dp_core::sampler::{PoissonSampler, Sampler};
use dp_core::{DpError, DpOptimizer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// Whether `e` came from the group itself (a failed all-reduce, or another peer's failure),
/// after which no more messages can be exchanged.
fn from_group(e: &TrainError) -> bool {
    matches!(e, TrainError::Dp(DpError::Collective(_)))
}

/// One all-reduce of a flag: whether this peer `failed`. Returns an error if another peer
/// failed (a peer that failed itself gets `Ok` and returns its own error).
pub fn agree<B: Backend>(peer: &dyn AllReduce<B>, failed: bool, device: &B::Device) -> Result<()> {
    agree_and_sum(peer, failed, StepLoss::default(), device).map(|_| ())
}

/// [`agree`], summing the peers' training losses on the way (the same all-reduce).
pub fn agree_and_sum<B: Backend>(
    peer: &dyn AllReduce<B>,
    failed: bool,
    loss: StepLoss,
    device: &B::Device,
) -> Result<StepLoss> {
    let values = [
        if failed { 1.0 } else { 0.0 },
        loss.sum as f32,
        loss.rows as f32,
    ];
    let summed = peer
        .all_reduce_sum(Tensor::<B, 1>::from_floats(values, device))?
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| DpError::Collective(format!("the agreement's flag: {e:?}")))?;
    let failures = summed[0];
    if failures > 0.0 && !failed {
        return Err(DpError::Collective(format!(
            "{failures} other peer(s) of the group stopped with an error (each peer reports \
             its own)"
        ))
        .into());
    }
    Ok(StepLoss {
        sum: f64::from(summed[1]),
        rows: summed[2].round() as usize,
    })
}

/// SHA-256 of every float parameter of a module, in declaration order.
struct Fingerprint(Sha256);

impl<B: Backend> ModuleVisitor<B> for Fingerprint {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param.val().into_data();
        self.0.update(data.as_bytes());
    }
}

fn fingerprint<B: Backend, M: Module<B>>(model: &M) -> Vec<u8> {
    let mut visitor = Fingerprint(Sha256::new());
    model.visit(&mut visitor);
    visitor.0.finalize().to_vec()
}

/// The end of an invocation's steps on a peer: on an error of its own, the peer tells the
/// others (at the agreement they are waiting in); otherwise the peers agree that all of them
/// finished and that their replicas (`model`) are identical.
pub fn end_of_steps<B: Backend, T, MB: Backend, M: Module<MB>>(
    peer: &dyn AllReduce<B>,
    ended: Result<T>,
    model: impl Fn(&T) -> &M,
    device: &B::Device,
) -> Result<T> {
    let ended = match ended {
        Err(e) => {
            if !from_group(&e) {
                // The others learn of it and stop; this peer's own error is the one to report.
                let _ = agree(peer, true, device);
            }
            return Err(e);
        }
        Ok(ended) => ended,
    };
    agree(peer, false, device)?;
    let mine = fingerprint(model(&ended));
    let leader = share_bytes(peer, (peer.rank() == 0).then_some(&mine[..]), device)?;
    let differs = leader != mine;
    agree(peer, differs, device)?;
    if differs {
        return Err(DpError::Collective(format!(
            "peer {}'s replica differs from peer 0's after the last step",
            peer.rank()
        ))
        .into());
    }
    Ok(ended)
}

/// What peer 0 tells the others at the start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// run.json's bytes, as text.
    pub run_record: String,
    /// The step after which this invocation stops.
    pub stop_at: u64,
    /// Seed of the augmentation randomness.
    pub augment_seed: u64,
    /// Input resolution of fine-tuning.
    pub resolution: Option<usize>,
}

/// What a follower receives from peer 0 before the first step.
pub struct Received {
    /// The job.
    pub job: Job,
    /// The settings of the run, parsed from `job`.
    pub record: RunRecord,
    checkpoint: Vec<u8>,
    key: Option<[u8; 32]>,
}

/// Peer 0's half of the start: sends the job, its replica and (unless seeded) a fresh sampler
/// key, and switches its own sampler to that key; then waits until every follower has
/// rebuilt the replica.
pub fn hand_over<AB, M, O>(
    session: &mut Session<AB, M, O>,
    ctx: &Context,
    peer: &dyn AllReduce<AB::InnerBackend>,
    device: &AB::Device,
) -> Result<()>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB>,
    O: Optimizer<M, AB>,
{
    let prepared = (|| -> Result<_> {
        let sampler = session.sampler.state();
        // A seeded sampler's state travels in the checkpoint; any other gets a shared key.
        let key = match sampler.rng {
            Some(_) => None,
            None => Some(SecureRng::os_key()?),
        };
        let job = Job {
            run_record: String::from_utf8(ctx.record.to_bytes()?)
                .map_err(|e| TrainError::Usage(format!("internal: run.json is not text: {e}")))?,
            stop_at: stop_at(ctx, session.optimizer.steps()),
            augment_seed: ctx.augment_seed,
            resolution: ctx.resolution,
        };
        let mut header = vec![u8::from(key.is_some())];
        header.extend(serde_json::to_vec(&job).map_err(|e| TrainError::Usage(e.to_string()))?);
        let replica = session.optimizer.checkpoint_bytes(
            Path::new("peer 0's replica"),
            &session.model,
            Some(sampler),
            serde_json::Value::Null,
        )?;
        Ok((header, replica, key))
    })();
    let (header, replica, key) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => {
            // An empty job tells the followers to stop.
            let _ = share_bytes(peer, Some(&[]), device);
            return Err(e);
        }
    };
    share_bytes(peer, Some(&header), device)?;
    share_bytes(peer, Some(&replica), device)?;
    let switched = match key {
        Some(key) => {
            let key = share_key(peer, Some(key), device)?;
            PoissonSampler::keyed(session.sampler.sampling(), key)
                .map(|s| session.sampler = s)
                .map_err(TrainError::from)
        }
        None => Ok(()),
    };
    agree(peer, switched.is_err(), device)?;
    switched
}

/// A follower's half of the start: receives the job, peer 0's replica and the sampler key.
pub fn receive<B: Backend>(peer: &dyn AllReduce<B>, device: &B::Device) -> Result<Received> {
    let header = share_bytes(peer, None, device)?;
    let Some((&with_key, job)) = header.split_first() else {
        return Err(DpError::Collective("peer 0 stopped before the first step".into()).into());
    };
    let checkpoint = share_bytes(peer, None, device)?;
    let key = match with_key {
        0 => None,
        _ => Some(share_key(peer, None, device)?),
    };
    // From here on, a failure is told to the others at the next agreement.
    let parsed = (|| -> Result<_> {
        let job: Job = serde_json::from_slice(job)
            .map_err(|e| TrainError::Usage(format!("peer 0's job is malformed: {e}")))?;
        let record = parse_run_record(Path::new("peer 0's run.json"), job.run_record.as_bytes())?;
        Ok((job, record))
    })();
    match parsed {
        Ok((job, record)) => Ok(Received {
            job,
            record,
            checkpoint,
            key,
        }),
        Err(e) => {
            let _ = agree(peer, true, device);
            Err(e)
        }
    }
}

/// A follower's run: rebuilds peer 0's replica from `received` on `template` (a model of
/// the run's architecture on this peer's device), then takes every step of the invocation
/// on its shards. `split` is the run's data (checked against run.json's fingerprint by the
/// caller).
pub fn follow<AB, M>(
    template: M,
    received: Received,
    split: &Split,
    peer: &dyn AllReduce<AB::InnerBackend>,
    device: &AB::Device,
) -> Result<()>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
{
    let Received {
        job,
        record,
        checkpoint,
        key,
    } = received;
    let config: &RunConfig = &record.config;
    let rebuilt = (|| -> Result<_> {
        let resumed = DpOptimizer::resume_from_bytes(
            Path::new("peer 0's replica"),
            &checkpoint,
            None,
            template,
            sgd::<AB, M>(config.momentum),
        )?;
        let state = resumed
            .sampler
            .as_ref()
            .ok_or_else(|| TrainError::Usage("internal: peer 0's replica has no sampler".into()))?;
        let sampler = match key {
            Some(key) => PoissonSampler::keyed(state.sampling, key)?,
            None if state.rng.is_some() => PoissonSampler::from_state(state)?,
            None => {
                return Err(TrainError::Usage(
                    "internal: peer 0 sent neither a sampler key nor a seeded sampler".into(),
                ))
            }
        };
        Ok((resumed.model, resumed.optimizer, sampler))
    })();
    agree(peer, rebuilt.is_err(), device)?;
    let (mut model, mut optimizer, mut sampler) = rebuilt?;
    let data = StepData {
        config,
        split,
        augment: config.augmentation(split.train.shape[0]),
        augment_seed: job.augment_seed,
        resolution: job.resolution,
    };
    let audit: Option<&CanaryAudit> = None;
    let ended = (|| -> Result<M> {
        while optimizer.steps() < job.stop_at {
            let shard = sampler.next_batch().shard(peer.rank(), peer.peers());
            (model, _) = take_step(
                model,
                &mut optimizer,
                &shard,
                audit,
                &data,
                Some(peer),
                device,
            )?;
        }
        Ok(model)
    })();
    end_of_steps(peer, ended, |m| m, device).map(|_| ())
}

/// Trains `session` as peer 0 of a network group (the caller leaves the group after).
pub fn train_over_network<AB, M, O>(
    mut session: Session<AB, M, O>,
    ctx: &Context,
    peer: &dyn AllReduce<AB::InnerBackend>,
    device: &AB::Device,
) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    hand_over(&mut session, ctx, peer, device)?;
    fit(session, ctx, Some(peer), device)
}

/// Trains `session` on a group of `devices` of this machine, one thread each; peer 0 (this
/// thread) on `devices[0]`.
pub fn train_on_devices<AB, M, O>(
    mut session: Session<AB, M, O>,
    ctx: &Context,
    devices: &[AB::Device],
) -> Result<Outcome>
where
    AB: AutodiffBackend,
    M: AutodiffModule<AB> + Classifier<AB>,
    M::InnerModule: Classifier<AB::InnerBackend>,
    O: Optimizer<M, AB>,
{
    let peers = devices.len();
    Peer::<AB::InnerBackend>::reset();
    let outcome = std::thread::scope(|scope| {
        let followers: Vec<_> = (1..peers)
            .map(|rank| {
                let template = session.model.clone().fork(&devices[rank]);
                let device = devices[rank].clone();
                let split = ctx.split;
                scope.spawn(move || -> Result<()> {
                    let peer = Peer::<AB::InnerBackend>::join_local(rank, peers, device.clone())?;
                    let received = receive(&peer, &device)?;
                    follow::<AB, M>(template, received, split, &peer, &device)?;
                    peer.leave()?;
                    Ok(())
                })
            })
            .collect();
        let device = &devices[0];
        let led = (|| {
            let peer = Peer::<AB::InnerBackend>::join_local(0, peers, device.clone())?;
            hand_over(&mut session, ctx, &peer, device)?;
            let outcome = fit(session, ctx, Some(&peer), device)?;
            peer.leave()?;
            Ok(outcome)
        })();
        let mut failures = Vec::new();
        for (i, follower) in followers.into_iter().enumerate() {
            match follower.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) if !from_group(&e) => failures.push(format!("peer {}: {e}", i + 1)),
                Ok(Err(_)) => {}
                Err(_) => failures.push(format!("peer {} panicked", i + 1)),
            }
        }
        match (led, failures.is_empty()) {
            (Ok(outcome), true) => Ok(outcome),
            (Err(e), true) => Err(e),
            (led, false) => {
                let lead = led
                    .err()
                    .map(|e| format!("; peer 0: {e}"))
                    .unwrap_or_default();
                Err(TrainError::Dp(DpError::Collective(format!(
                    "{}{lead}",
                    failures.join("; ")
                ))))
            }
        }
    });
    if outcome.is_err() {
        Peer::<AB::InnerBackend>::reset();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::module::Module;
    use std::time::Duration;

    #[derive(Module, Debug)]
    struct Weights<B: Backend> {
        w: Param<Tensor<B, 1>>,
    }

    /// Runs `work(rank, peer)` on a group of 2 flex peers (threads) and returns each result,
    /// failing the test if a peer hangs.
    fn group<T: Send + 'static>(
        work: impl Fn(usize, &Peer<Flex>) -> T + Send + Sync + Copy + 'static,
    ) -> Vec<T> {
        Peer::<Flex>::reset();
        let (tx, rx) = std::sync::mpsc::channel();
        for rank in 0..2 {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let peer = Peer::<Flex>::join_local(rank, 2, Default::default()).unwrap();
                let out = work(rank, &peer);
                let _ = tx.send((rank, out));
            });
        }
        let mut out: Vec<(usize, T)> = (0..2)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(60))
                    .expect("a peer hung")
            })
            .collect();
        out.sort_by_key(|(r, _)| *r);
        Peer::<Flex>::reset();
        out.into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn a_failed_peer_stops_the_group_and_replicas_are_compared() {
        // One lock-free sequence (one group per backend in a process): a failure flag reaches
        // the other peer; losses are summed; identical replicas pass; different ones fail on
        // both peers.
        let out = group(|rank, peer| {
            let device = Default::default();
            let failure = agree(peer, rank == 1, &device).is_err();
            let loss = StepLoss {
                sum: 1.5 * (rank + 1) as f64,
                rows: rank + 2,
            };
            let summed = agree_and_sum(peer, false, loss, &device).unwrap();
            let same = Weights::<Flex> {
                w: Param::from_tensor(Tensor::from_floats([1.0, 2.0], &device)),
            };
            let equal = end_of_steps(peer, Ok(same), |m| m, &device).is_ok();
            let drifted = Weights::<Flex> {
                w: Param::from_tensor(Tensor::from_floats(
                    [1.0, 2.0 + rank as f32 * 1e-6],
                    &device,
                )),
            };
            let unequal = end_of_steps(peer, Ok(drifted), |m| m, &device).is_err();
            (failure, summed.sum, summed.rows, equal, unequal)
        });
        assert!(out[0].0, "peer 0 did not learn of peer 1's failure");
        assert!(
            !out[1].0,
            "the failed peer reports its own error, not the group's"
        );
        for (_, sum, rows, equal, unequal) in &out {
            assert_eq!((*sum, *rows), (4.5, 5));
            assert!(*equal && *unequal);
        }
    }
}
