//! Which canaries are in the dataset, and the inputs and block that give each its gradient.

use crate::error::{DpError, Result};
use crate::layers::Linear;
use crate::rng::SecureRng;
use burn::module::Param;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::RngExt;

/// m canaries, each in the dataset with probability ½.
///
/// # Privacy
/// Membership must be drawn independently of training (its own generator): a canary's
/// membership is the secret the audit tries to guess. With [`Canaries::from_os`] it never
/// leaves the process except through [`Canaries::is_included`] and
/// [`Canaries::membership`] (which `dp-train` keeps in its checkpoint, so that an audited run
/// can resume; it tells nothing about the real examples or the noise).
#[derive(Clone, Debug)]
pub struct Canaries {
    included: Vec<bool>,
}

impl Canaries {
    /// `count` canaries with membership from the operating system's entropy.
    pub fn from_os(count: usize) -> Result<Self> {
        Self::draw(count, &mut SecureRng::from_os()?)
    }

    /// `count` canaries with membership from a fixed seed (tests, reproducible audits).
    pub fn seeded(count: usize, seed: u64) -> Result<Self> {
        Self::draw(count, &mut SecureRng::seeded(seed))
    }

    /// `count` canaries for a run: from `seed` (mixed with a constant of its own, so that
    /// membership never repeats the run's other seeded streams) when the run is seeded, from
    /// the operating system otherwise.
    pub fn for_run(count: usize, seed: Option<u64>) -> Result<Self> {
        match seed {
            Some(seed) => Self::seeded(count, seed ^ 0x6361_6e61_7279),
            None => Self::from_os(count),
        }
    }

    /// Canaries with a membership recorded earlier ([`Self::membership`]), e.g. in a
    /// checkpoint of an audited run.
    pub fn from_membership(included: Vec<bool>) -> Result<Self> {
        if included.len() < 2 {
            return Err(DpError::invalid("canaries", "m", included.len(), ">= 2"));
        }
        Ok(Self { included })
    }

    /// Whether each canary is in the dataset (the audit's secret until the run has ended).
    pub fn membership(&self) -> &[bool] {
        &self.included
    }

    fn draw(count: usize, rng: &mut SecureRng) -> Result<Self> {
        if count < 2 {
            return Err(DpError::invalid("canaries", "m", count, ">= 2"));
        }
        let rng = rng.inner();
        let included: Vec<bool> = (0..count).map(|_| rng.random::<bool>()).collect();
        Ok(Self { included })
    }

    /// m.
    pub fn count(&self) -> usize {
        self.included.len()
    }

    /// Whether canary `i` is in the dataset.
    pub fn is_included(&self, i: usize) -> bool {
        self.included.get(i).copied().unwrap_or(false)
    }

    /// The canaries in the dataset, in increasing order.
    pub fn included(&self) -> Vec<usize> {
        (0..self.count()).filter(|i| self.included[*i]).collect()
    }
}

/// M/C by default: a canary's gradient norm over the clipping norm, ≥ 1 so that clipping acts
/// and ≫ 1 so that clipping turned off would show.
pub const DEFAULT_CANARY_NORM: f64 = 10.0;

/// The audit block for `count` canaries: a linear layer `count → 1` without bias, zero at the
/// start (so a canary's coordinate starts at 0 and the final-model score is its value).
pub fn canary_block<B: Backend>(count: usize, device: &B::Device) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(Tensor::zeros([count, 1], device)),
        bias: None,
    }
}

/// Block inputs for a micro-batch: row r is `magnitude·e_j` for `rows[r] = Some(j)` (canary j),
/// zero for `None` (a real example).
pub fn canary_inputs<B: Backend>(
    count: usize,
    rows: &[Option<usize>],
    magnitude: f64,
    device: &B::Device,
) -> Result<Tensor<B, 2>> {
    if let Some(j) = rows.iter().flatten().find(|j| **j >= count) {
        return Err(DpError::invalid("canary", "j", j, "< m"));
    }
    Ok(one_hot_rows(count, rows, magnitude, device))
}

/// A micro-batch's rows as [`super::Audited::losses`] takes them: the block inputs
/// ([`canary_inputs`]) and a mask that is 1 on real rows and 0 on canary rows.
#[derive(Clone, Debug)]
pub struct CanaryRows<B: Backend> {
    /// `[rows, m]`: `magnitude·e_j` on a row of canary j, zero on real rows.
    pub inputs: Tensor<B, 2>,
    /// `[rows]`: 1 on real rows, 0 on canary rows.
    pub is_real: Tensor<B, 1>,
}

impl<B: Backend> CanaryRows<B> {
    /// Rows `rows` (`Some(j)`: a row of canary j, `None`: a real row) for `count` canaries.
    pub fn new(
        count: usize,
        rows: &[Option<usize>],
        magnitude: f64,
        device: &B::Device,
    ) -> Result<Self> {
        let mask: Vec<f32> = rows
            .iter()
            .map(|c| if c.is_some() { 0.0 } else { 1.0 })
            .collect();
        Ok(Self {
            inputs: canary_inputs(count, rows, magnitude, device)?,
            is_real: Tensor::from_data(TensorData::new(mask, [rows.len()]), device),
        })
    }

    /// `rows` real rows and no canary (nothing is read from the host).
    pub fn real(count: usize, rows: usize, device: &B::Device) -> Self {
        Self {
            inputs: Tensor::zeros([rows, count], device),
            is_real: Tensor::ones([rows], device),
        }
    }

    /// Rows `range` of these rows.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            inputs: self.inputs.clone().slice(range.clone()),
            is_real: self.is_real.clone().slice(range),
        }
    }
}

/// [`canary_inputs`] for rows known to be valid.
pub(crate) fn one_hot_rows<B: Backend>(
    count: usize,
    rows: &[Option<usize>],
    magnitude: f64,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut values = vec![0.0f32; rows.len() * count];
    for (r, canary) in rows.iter().enumerate() {
        if let Some(j) = canary.filter(|j| *j < count) {
            values[r * count + j] = magnitude as f32;
        }
    }
    Tensor::from_data(TensorData::new(values, [rows.len(), count]), device)
}
