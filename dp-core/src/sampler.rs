//! Samplers: which examples form each logical batch, and the privacy event that realizes.
//!
//! A sampler returns a [`SampledBatch`] that carries both the indices and the [`Sampling`]
//! that drew them. The DP optimizer charges the accountant with `sampling.event(σ)` and
//! nothing else, and a `SampledBatch` can only be made by a sampler, so the batch that was
//! drawn and the event that is charged cannot disagree.

use crate::error::{DpError, Result};
use crate::rng::{RngState, SecureRng};
use dp_accountant::{DpEvent, NeighboringRelation};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// How a batch was drawn.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Each of `dataset_size` examples independently with probability `sampling_rate`.
    Poisson {
        /// q.
        sampling_rate: f64,
        /// N.
        dataset_size: u64,
    },
    /// A uniformly random subset of exactly `batch_size` of `dataset_size` examples, drawn
    /// afresh at every step.
    FixedSize {
        /// m.
        batch_size: u64,
        /// N.
        dataset_size: u64,
    },
}

impl Sampling {
    /// The privacy event of one step that adds Gaussian noise with `noise_multiplier` to the
    /// clipped sum of this batch.
    pub fn event(&self, noise_multiplier: f64) -> DpEvent {
        match *self {
            Self::Poisson { sampling_rate, .. } => {
                DpEvent::poisson_gaussian(sampling_rate, noise_multiplier)
            }
            Self::FixedSize {
                batch_size,
                dataset_size,
            } => DpEvent::without_replacement_gaussian(batch_size, dataset_size, noise_multiplier),
        }
    }

    /// The expected number of examples in a batch (q·N, or m): the noisy sum is divided by
    /// this, never by the realized size, which would leak it.
    pub fn expected_batch_size(&self) -> f64 {
        match *self {
            Self::Poisson {
                sampling_rate,
                dataset_size,
            } => sampling_rate * dataset_size as f64,
            Self::FixedSize { batch_size, .. } => batch_size as f64,
        }
    }

    /// The neighbouring relation this sampling is naturally analysed under.
    pub fn natural_relation(&self) -> NeighboringRelation {
        match self {
            Self::Poisson { .. } => NeighboringRelation::AddOrRemoveOne,
            Self::FixedSize { .. } => NeighboringRelation::ReplaceOne,
        }
    }
}

/// The examples of one logical batch, with how they were drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct SampledBatch {
    indices: Vec<usize>,
    sampling: Sampling,
}

impl SampledBatch {
    /// Indices into the dataset, in increasing order; may be empty under Poisson sampling.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// How the batch was drawn.
    pub fn sampling(&self) -> Sampling {
        self.sampling
    }

    /// Peer `rank`'s share of the batch among `peers`: a contiguous run of the indices, the
    /// shares' sizes differing by at most one (empty past the end). The sampling is the whole
    /// batch's, so a peer's step is charged and divided by the expected batch size exactly as
    /// the whole step is.
    pub fn shard(&self, rank: usize, peers: usize) -> SampledBatch {
        let (n, peers) = (self.indices.len(), peers.max(1));
        let (start, end) = (
            n * rank.min(peers) / peers,
            n * (rank + 1).min(peers) / peers,
        );
        SampledBatch {
            indices: self.indices[start..end].to_vec(),
            sampling: self.sampling,
        }
    }

    /// The indices in physical micro-batches of at most `size` (none if the batch is empty).
    pub fn micro_batches(&self, size: usize) -> impl Iterator<Item = &[usize]> {
        self.indices.chunks(size.max(1))
    }
}

/// The checkpointable state of a sampler.
///
/// # Privacy
/// The generator's state is recorded only for a seeded sampler: for one seeded from the
/// operating system it is `None`, and [`PoissonSampler::from_state`] then draws fresh entropy,
/// so no file reveals which examples formed which batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SamplerState {
    /// The sampling it performs.
    pub sampling: Sampling,
    /// Its generator, if it was seeded explicitly.
    pub rng: Option<RngState>,
}

fn restored_rng(state: &SamplerState) -> Result<SecureRng> {
    match &state.rng {
        Some(rng) => Ok(SecureRng::from_state(rng)),
        None => SecureRng::from_os(),
    }
}

/// The dataset size and rate of a Poisson `sampling`.
fn poisson(sampling: Sampling) -> Result<(u64, f64)> {
    match sampling {
        Sampling::Poisson {
            sampling_rate,
            dataset_size,
        } => Ok((dataset_size, sampling_rate)),
        other => Err(DpError::invalid(
            "sampler_state",
            "sampling",
            format!("{other:?}"),
            "Poisson",
        )),
    }
}

/// Draws logical batches.
pub trait Sampler {
    /// The next batch.
    fn next_batch(&mut self) -> SampledBatch;
    /// How batches are drawn.
    fn sampling(&self) -> Sampling;
    /// The state to checkpoint.
    fn state(&self) -> SamplerState;
}

/// Poisson sampling: every example joins each batch independently with probability q.
///
/// # Privacy
/// Realizes `PoissonSampled { q, Gaussian { σ } }` per step, the event analysed by the
/// accountants under add-or-remove-one neighbours (Mironov et al. 2019). Batch sizes vary and
/// may be 0; an empty batch still gets noise and still costs budget.
#[derive(Clone, Debug)]
pub struct PoissonSampler {
    sampling_rate: f64,
    dataset_size: u64,
    rng: SecureRng,
}

impl PoissonSampler {
    /// A sampler seeded from the operating system.
    pub fn new(dataset_size: u64, sampling_rate: f64) -> Result<Self> {
        Self::with_rng(dataset_size, sampling_rate, SecureRng::from_os()?)
    }

    /// A sampler with a fixed seed, for reproducible runs (not secure).
    pub fn seeded(dataset_size: u64, sampling_rate: f64, seed: u64) -> Result<Self> {
        Self::with_rng(dataset_size, sampling_rate, SecureRng::seeded(seed))
    }

    /// A sampler keyed with a secret the peers of a data-parallel group share, so that each
    /// draws the same logical batch (see [`crate::collective::share_key`]).
    pub fn from_shared_key(dataset_size: u64, sampling_rate: f64, key: [u8; 32]) -> Result<Self> {
        Self::with_rng(dataset_size, sampling_rate, SecureRng::from_shared_key(key))
    }

    /// [`Self::from_shared_key`] for the dataset size and rate of `sampling`, which must be
    /// Poisson: e.g. a group's sampler, keyed anew at every start of the group.
    pub fn keyed(sampling: Sampling, key: [u8; 32]) -> Result<Self> {
        let (dataset_size, sampling_rate) = poisson(sampling)?;
        Self::from_shared_key(dataset_size, sampling_rate, key)
    }

    /// Restores a sampler from a checkpoint: the same stream if it was seeded, fresh
    /// operating-system entropy otherwise.
    pub fn from_state(state: &SamplerState) -> Result<Self> {
        let (dataset_size, sampling_rate) = poisson(state.sampling)?;
        Self::with_rng(dataset_size, sampling_rate, restored_rng(state)?)
    }

    fn with_rng(dataset_size: u64, sampling_rate: f64, rng: SecureRng) -> Result<Self> {
        if dataset_size == 0 {
            return Err(DpError::invalid("dataset_size", "N", 0, ">= 1"));
        }
        if !(sampling_rate > 0.0 && sampling_rate <= 1.0) {
            return Err(DpError::invalid(
                "sampling_rate",
                "q",
                sampling_rate,
                "in (0, 1]",
            ));
        }
        Ok(Self {
            sampling_rate,
            dataset_size,
            rng,
        })
    }
}

impl Sampler for PoissonSampler {
    fn next_batch(&mut self) -> SampledBatch {
        let q = self.sampling_rate;
        #[cfg(feature = "test-hooks")]
        let q = match crate::test_hooks::planted() {
            Some(crate::test_hooks::PlantedBug::DoubleSamplingRate) => (2.0 * q).min(1.0),
            _ => q,
        };
        let rng = self.rng.inner();
        let indices = (0..self.dataset_size as usize)
            .filter(|_| rng.random::<f64>() < q)
            .collect();
        SampledBatch {
            indices,
            sampling: self.sampling(),
        }
    }

    fn sampling(&self) -> Sampling {
        Sampling::Poisson {
            sampling_rate: self.sampling_rate,
            dataset_size: self.dataset_size,
        }
    }

    fn state(&self) -> SamplerState {
        SamplerState {
            sampling: self.sampling(),
            rng: self.rng.state(),
        }
    }
}

/// Fixed-size batches: at each step a uniformly random subset of exactly m of the N
/// examples, drawn independently of earlier steps.
///
/// # Privacy
/// Realizes `SampledWithoutReplacement { m, N, Gaussian { σ } }` per step, analysed under
/// replace-one neighbours (Wang, Balle, Kasiviswanathan 2019), where the sensitivity of the
/// clipped sum is 2C. It does *not* implement epoch-wise shuffling (disjoint batches within an
/// epoch), whose privacy is not what these accountants compute.
#[derive(Clone, Debug)]
pub struct FixedSizeSampler {
    batch_size: u64,
    dataset_size: u64,
    rng: SecureRng,
}

impl FixedSizeSampler {
    /// A sampler seeded from the operating system.
    pub fn new(dataset_size: u64, batch_size: u64) -> Result<Self> {
        Self::with_rng(dataset_size, batch_size, SecureRng::from_os()?)
    }

    /// A sampler with a fixed seed, for reproducible runs (not secure).
    pub fn seeded(dataset_size: u64, batch_size: u64, seed: u64) -> Result<Self> {
        Self::with_rng(dataset_size, batch_size, SecureRng::seeded(seed))
    }

    /// Restores a sampler from a checkpoint: the same stream if it was seeded, fresh
    /// operating-system entropy otherwise.
    pub fn from_state(state: &SamplerState) -> Result<Self> {
        match state.sampling {
            Sampling::FixedSize {
                batch_size,
                dataset_size,
            } => Self::with_rng(dataset_size, batch_size, restored_rng(state)?),
            other => Err(DpError::invalid(
                "sampler_state",
                "sampling",
                format!("{other:?}"),
                "FixedSize",
            )),
        }
    }

    fn with_rng(dataset_size: u64, batch_size: u64, rng: SecureRng) -> Result<Self> {
        if dataset_size == 0 {
            return Err(DpError::invalid("dataset_size", "N", 0, ">= 1"));
        }
        if batch_size == 0 || batch_size > dataset_size {
            return Err(DpError::invalid(
                "batch_size",
                "m",
                batch_size,
                "in [1, dataset_size]",
            ));
        }
        Ok(Self {
            batch_size,
            dataset_size,
            rng,
        })
    }
}

impl Sampler for FixedSizeSampler {
    fn next_batch(&mut self) -> SampledBatch {
        let mut indices = rand::seq::index::sample(
            self.rng.inner(),
            self.dataset_size as usize,
            self.batch_size as usize,
        )
        .into_vec();
        indices.sort_unstable();
        SampledBatch {
            indices,
            sampling: self.sampling(),
        }
    }

    fn sampling(&self) -> Sampling {
        Sampling::FixedSize {
            batch_size: self.batch_size,
            dataset_size: self.dataset_size,
        }
    }

    fn state(&self) -> SamplerState {
        SamplerState {
            sampling: self.sampling(),
            rng: self.rng.state(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_batches_have_binomial_sizes() {
        // N = 10000, q = 0.1: mean 1000, sd 30. Over 50 batches the mean size is within
        // 6 standard errors (30/√50 ≈ 4.2) of 1000 except with probability < 1e-8.
        let mut s = PoissonSampler::seeded(10_000, 0.1, 1).unwrap();
        let sizes: Vec<usize> = (0..50).map(|_| s.next_batch().indices().len()).collect();
        let mean = sizes.iter().sum::<usize>() as f64 / 50.0;
        assert!((mean - 1000.0).abs() < 6.0 * 4.25, "{mean}");
        assert!(sizes.iter().any(|&n| n != sizes[0]), "sizes vary");
    }

    #[test]
    fn poisson_can_draw_an_empty_batch_and_it_still_carries_its_event() {
        let mut s = PoissonSampler::seeded(3, 0.01, 2).unwrap();
        let empty = (0..100)
            .map(|_| s.next_batch())
            .find(|b| b.indices().is_empty())
            .unwrap();
        assert_eq!(empty.micro_batches(8).count(), 0);
        assert_eq!(
            empty.sampling().event(1.0),
            DpEvent::poisson_gaussian(0.01, 1.0)
        );
        assert_eq!(empty.sampling().expected_batch_size(), 0.03);
    }

    #[test]
    fn fixed_size_batches_are_exact_and_distinct() {
        let mut s = FixedSizeSampler::seeded(100, 7, 3).unwrap();
        for _ in 0..20 {
            let b = s.next_batch();
            assert_eq!(b.indices().len(), 7);
            assert!(b.indices().windows(2).all(|w| w[0] < w[1]));
        }
        assert_eq!(
            s.next_batch().sampling().event(2.0),
            DpEvent::without_replacement_gaussian(7, 100, 2.0)
        );
    }

    #[test]
    fn restored_samplers_draw_the_same_batches() {
        let mut a = PoissonSampler::seeded(1000, 0.05, 9).unwrap();
        let _ = a.next_batch();
        let mut b = PoissonSampler::from_state(&a.state()).unwrap();
        assert_eq!(a.next_batch(), b.next_batch());
    }

    #[test]
    fn os_seeded_samplers_record_no_state_and_resume_afresh() {
        let a = PoissonSampler::new(1000, 0.5).unwrap();
        let state = a.state();
        assert_eq!(state.rng, None);
        let mut b = PoissonSampler::from_state(&state).unwrap();
        let mut c = PoissonSampler::from_state(&state).unwrap();
        // Two batches of 1000 fair coins agree by chance with probability 2^-1000.
        assert_ne!(b.next_batch(), c.next_batch());
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(PoissonSampler::seeded(0, 0.1, 0).is_err());
        assert!(PoissonSampler::seeded(10, 1.5, 0).is_err());
        assert!(PoissonSampler::seeded(10, f64::NAN, 0).is_err());
        assert!(FixedSizeSampler::seeded(10, 11, 0).is_err());
        assert!(FixedSizeSampler::seeded(10, 0, 0).is_err());
    }

    #[test]
    fn micro_batches_cover_the_batch_in_order() {
        let mut s = FixedSizeSampler::seeded(50, 10, 4).unwrap();
        let b = s.next_batch();
        let joined: Vec<usize> = b.micro_batches(3).flatten().copied().collect();
        assert_eq!(joined, b.indices());
        assert_eq!(
            b.micro_batches(3).map(|m| m.len()).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
    }
}
