//! The one file that knows burn's collective engine (burn-collective, burn feature
//! `collective`): the devices of this process as peers of a group, one thread each.
//!
//! burn-collective keeps one group per backend type in the process (tracel-ai/burn#3449):
//! only one data-parallel group per backend may run at a time in a process.

use super::AllReduce;
use crate::error::{DpError, Result};
use burn::collective::{self, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use std::marker::PhantomData;

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
