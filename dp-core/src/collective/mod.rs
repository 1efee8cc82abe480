//! Data-parallel groups: a peer sums a flat tensor across the peers of its group
//! ([`AllReduce`]). [`crate::DpOptimizer::finish_step_all_reduced`] needs only that trait.
//! Two groups implement it:
//! - [`Peer`] (`local.rs`, the one file that knows burn-collective): the devices of this
//!   process, one thread each; an NCCL engine (burn's `distributed` feature) could replace it;
//! - [`NetworkPeer`] (`network.rs`): processes on several machines, through an
//!   [`Orchestrator`] that admits only peers holding the job's secret.
//!
//! # Privacy
//! Peers exchange their **un-noised** clipped sums (the noise is added once, by peer 0, to its
//! own share before the sum): everything that carries these messages, the peers and the links
//! between them, is inside the trust boundary.

use crate::error::{DpError, Result};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

mod local;
mod network;

pub use local::Peer;
pub use network::{JobSecret, NetworkPeer, Orchestrator};

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
///
/// # Privacy
/// The key decides every batch: it crosses the links between peers, inside the trust
/// boundary, and is never written anywhere.
pub fn share_key<B: Backend, P: AllReduce<B> + ?Sized>(
    peer: &P,
    key: Option<[u8; 32]>,
    device: &B::Device,
) -> Result<[u8; 32]> {
    let bytes = share_bytes(peer, key.as_ref().map(|k| &k[..]), device)?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        DpError::Collective(format!(
            "the shared key arrived with {} bytes, not 32",
            b.len()
        ))
    })
}

/// Bytes per f32 of [`share_bytes`]: every integer below 2²⁴ is exact in f32, so a sum of one
/// peer's value and the others' zeros is exact.
const BYTES_PER_VALUE: usize = 3;

fn to_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks(BYTES_PER_VALUE)
        .map(|c| c.iter().rev().fold(0u32, |v, &b| (v << 8) | b as u32) as f32)
        .collect()
}

fn sum_values<B: Backend, P: AllReduce<B> + ?Sized>(
    peer: &P,
    values: Vec<f32>,
    device: &B::Device,
) -> Result<Vec<f32>> {
    let n = values.len();
    let summed = peer.all_reduce_sum(Tensor::from_data(
        burn::tensor::TensorData::new(values, [n]),
        device,
    ))?;
    Ok(crate::readback::to_host(summed))
}

fn whole(v: f32, below: u32) -> Result<u32> {
    if v >= 0.0 && v.fract() == 0.0 && v < below as f32 {
        Ok(v as u32)
    } else {
        Err(DpError::Collective(format!(
            "shared bytes arrived damaged ({v} is not a whole number below {below}): did \
             another peer give bytes too?"
        )))
    }
}

/// Peer 0's `bytes` on every peer of the group (the others pass `None`): e.g. the run's
/// settings and its checkpoint, so that every peer starts from peer 0's replica. Two
/// all-reduces (the length, then the bytes, three to an f32).
///
/// # Privacy
/// The bytes cross the links between peers, inside the trust boundary.
pub fn share_bytes<B: Backend, P: AllReduce<B> + ?Sized>(
    peer: &P,
    bytes: Option<&[u8]>,
    device: &B::Device,
) -> Result<Vec<u8>> {
    if bytes.is_some() != (peer.rank() == 0) {
        return Err(DpError::Collective(format!(
            "peer {} {} bytes to share: only peer 0 gives them",
            peer.rank(),
            if bytes.is_some() {
                "gave"
            } else {
                "did not give"
            }
        )));
    }
    const DIGIT: u64 = 1 << 24;
    let len = bytes.map_or(0, |b| b.len() as u64);
    let digits = vec![
        (len % DIGIT) as f32,
        (len / DIGIT % DIGIT) as f32,
        (len / DIGIT / DIGIT) as f32,
    ];
    let digits = sum_values(peer, digits, device)?;
    let mut len = 0u64;
    for &d in digits.iter().rev() {
        len = len * DIGIT + u64::from(whole(d, DIGIT as u32)?);
    }
    let len = usize::try_from(len)
        .map_err(|_| DpError::Collective(format!("{len} shared bytes do not fit in memory")))?;
    let values = match bytes {
        Some(b) => to_values(b),
        None => vec![0.0; len.div_ceil(BYTES_PER_VALUE)],
    };
    if len == 0 {
        return Ok(Vec::new());
    }
    let summed = sum_values(peer, values, device)?;
    let mut out = Vec::with_capacity(len);
    for v in summed {
        let v = whole(v, DIGIT as u32)?;
        out.extend_from_slice(&v.to_le_bytes()[..BYTES_PER_VALUE]);
    }
    out.truncate(len);
    Ok(out)
}
