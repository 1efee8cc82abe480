//! The one file that knows burn's collective engine (burn-collective, burn feature
//! `collective`): a data-parallel peer that sums a flat tensor across the peers of its group.
//! [`crate::DpOptimizer::finish_step_all_reduced`] needs only the [`AllReduce`] trait, so another engine (NCCL
//! through burn's `distributed` feature) can replace this file.
//!
//! burn-collective keeps one group per backend type in the process (tracel-ai/burn#3449):
//! only one data-parallel group per backend may run at a time in a process.
//!
//! # Privacy
//! Peers exchange their **un-noised** clipped sums (the noise is added once, by peer 0, to its
//! own share before the sum): everything that carries these messages, the peers and the links
//! between them, is inside the trust boundary.

use crate::error::{DpError, Result};
use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use std::marker::PhantomData;

/// A sum across the peers of a data-parallel group.
pub trait AllReduce<B: Backend> {
    /// This peer's rank, 0 to `peers() − 1`; rank 0 adds the noise.
    fn rank(&self) -> usize;
    /// The number of peers.
    fn peers(&self) -> usize;
    /// The sum over all peers of their `values` (same shape on every peer); every peer gets
    /// the same result.
    fn all_reduce_sum(&self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>>;
}

/// Peer 0's `key` on every peer of the group (the others pass `None`), e.g. the key of the
/// sampler that draws the logical batches ([`crate::sampler::PoissonSampler::from_shared_key`]).
/// It travels as one all-reduce of 32 small integers (exact in f32).
///
/// # Privacy
/// The key decides every batch: it crosses the links between peers, inside the trust
/// boundary, and is never written anywhere.
pub fn share_key<B: Backend, P: AllReduce<B>>(
    peer: &P,
    key: Option<[u8; 32]>,
    device: &B::Device,
) -> Result<[u8; 32]> {
    if key.is_some() != (peer.rank() == 0) {
        return Err(DpError::Collective(format!(
            "peer {} {} a key: only peer 0 gives one",
            peer.rank(),
            if key.is_some() {
                "gave"
            } else {
                "did not give"
            }
        )));
    }
    let values: Vec<f32> = key.unwrap_or([0; 32]).iter().map(|&b| b as f32).collect();
    let summed = peer.all_reduce_sum(Tensor::from_data(
        burn::tensor::TensorData::new(values, [32]),
        device,
    ))?;
    let summed = crate::readback::to_host(summed);
    let mut out = [0u8; 32];
    for (o, v) in out.iter_mut().zip(&summed) {
        if !(0.0..=255.0).contains(v) || v.fract() != 0.0 {
            return Err(DpError::Collective(format!(
                "the shared key arrived damaged ({v} is not a byte)"
            )));
        }
        *o = *v as u8;
    }
    Ok(out)
}

/// A peer of a group of devices in this process (one thread each), on burn-collective.
#[derive(Debug)]
pub struct Peer<B: Backend> {
    rank: usize,
    peers: usize,
    _backend: PhantomData<B>,
}

fn failed(what: &str, e: collective::CollectiveError) -> DpError {
    DpError::Collective(format!("{what}: {e:?}"))
}

impl<B: Backend> Peer<B> {
    /// Joins the group of `peers` devices of this process as peer `rank`, on `device` (the
    /// inner, non-autodiff backend's). Every peer must join before the first sum completes.
    pub fn join_local(rank: usize, peers: usize, device: B::Device) -> Result<Self> {
        if peers == 0 || rank >= peers {
            return Err(DpError::invalid(
                "rank",
                "r",
                rank,
                "< peers (and peers >= 1)",
            ));
        }
        let config = CollectiveConfig::default().with_num_devices(peers);
        collective::register::<B>(PeerId::from(rank), device, config)
            .map_err(|e| failed("register", e))?;
        Ok(Self {
            rank,
            peers,
            _backend: PhantomData,
        })
    }

    /// Leaves the group (after the last step).
    pub fn leave(self) -> Result<()> {
        collective::finish_collective::<B>(PeerId::from(self.rank)).map_err(|e| failed("finish", e))
    }

    /// Forgets every group of this backend in the process (after a failed run, before the
    /// next group starts).
    pub fn reset() {
        collective::reset_collective::<B>();
    }
}

impl<B: Backend> AllReduce<B> for Peer<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn peers(&self) -> usize {
        self.peers
    }

    fn all_reduce_sum(&self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
        let primitive = values.into_primitive().tensor();
        let summed =
            collective::all_reduce::<B>(PeerId::from(self.rank), primitive, ReduceOperation::Sum)
                .map_err(|e| failed("all-reduce", e))?;
        Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
    }
}
