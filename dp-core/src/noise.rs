//! Gaussian noise for the clipped sum.

use crate::error::{DpError, Result};
use crate::rng::{RngState, SecureRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Where Gaussian noise comes from.
///
/// # Privacy
/// [`GaussianNoise::from_os`] (the default) draws from a ChaCha20 generator seeded by the
/// operating system, with the standard floating-point ziggurat sampler: fast, and the usual
/// choice of DP-SGD libraries. [`GaussianNoise::exact`] uses opendp's sampler, which draws a
/// discrete Gaussian on a fine grid exactly (Canonne, Kamath, Steinke 2020) and so avoids
/// floating-point artifacts; it is thousands of times slower — for audits and small models.
/// [`GaussianNoise::seeded`] is for reproducible runs and tests only.
#[derive(Clone, Debug)]
pub struct GaussianNoise {
    source: Source,
}

/// A noise source as a checkpoint records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseRecord {
    /// The fast sampler seeded from the operating system; its state is not recorded.
    Os,
    /// opendp's exact sampler (stateless).
    Exact,
    /// The fast sampler with an explicit seed, and where its stream stands.
    Seeded(RngState),
}

#[derive(Clone, Debug)]
enum Source {
    Fast(Box<SecureRng>),
    Exact,
}

impl GaussianNoise {
    /// Fast sampler seeded from the operating system.
    pub fn from_os() -> Result<Self> {
        Ok(Self {
            source: Source::Fast(Box::new(SecureRng::from_os()?)),
        })
    }

    /// Fast sampler with a fixed seed: reproducible, not secure.
    pub fn seeded(seed: u64) -> Self {
        Self {
            source: Source::Fast(Box::new(SecureRng::seeded(seed))),
        }
    }

    /// opendp's exact sampler (slow; see the type's docs).
    pub fn exact() -> Self {
        Self {
            source: Source::Exact,
        }
    }

    /// Whether this is opendp's exact sampler.
    pub fn is_exact(&self) -> bool {
        matches!(self.source, Source::Exact)
    }

    /// Whether the noise is reproducible (an explicit seed).
    pub fn is_seeded(&self) -> bool {
        matches!(&self.source, Source::Fast(rng) if rng.is_seeded())
    }

    /// What a checkpoint may record of this source: its kind, and the generator state only
    /// for a seeded source (see [`SecureRng`]'s privacy notes).
    pub fn record(&self) -> NoiseRecord {
        match &self.source {
            Source::Exact => NoiseRecord::Exact,
            Source::Fast(rng) => match rng.state() {
                Some(state) => NoiseRecord::Seeded(state),
                None => NoiseRecord::Os,
            },
        }
    }

    /// The source a resumed run continues with: the same kind; fresh operating-system entropy
    /// unless the record is of a seeded source.
    pub fn from_record(record: &NoiseRecord) -> Result<Self> {
        Ok(match record {
            NoiseRecord::Os => Self::from_os()?,
            NoiseRecord::Exact => Self::exact(),
            NoiseRecord::Seeded(state) => Self {
                source: Source::Fast(Box::new(SecureRng::from_state(state))),
            },
        })
    }

    /// `count` independent draws from N(0, std²).
    pub fn sample(&mut self, count: usize, std: f64) -> Result<Vec<f32>> {
        if !(std.is_finite() && std >= 0.0) {
            return Err(DpError::invalid("noise_std", "σC", std, ">= 0 and finite"));
        }
        match &mut self.source {
            Source::Fast(rng) => {
                let rng = rng.inner();
                Ok((0..count)
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(rng);
                        (z * std) as f32
                    })
                    .collect())
            }
            Source::Exact => exact_gaussian(count, std),
        }
    }
}

fn exact_gaussian(count: usize, std: f64) -> Result<Vec<f32>> {
    use opendp::domains::{AtomDomain, VectorDomain};
    use opendp::measurements::make_gaussian;
    use opendp::measures::ZeroConcentratedDivergence;
    use opendp::metrics::L2Distance;
    if std == 0.0 {
        return Ok(vec![0.0; count]);
    }
    let fail = |e: opendp::error::Error| {
        DpError::invalid(
            "noise_std",
            "σC",
            format!("{std} ({e})"),
            "usable by opendp",
        )
    };
    let measurement = make_gaussian::<_, _, ZeroConcentratedDivergence>(
        VectorDomain::new(AtomDomain::<f64>::new_non_nan()),
        L2Distance::<f64>::default(),
        std,
        None,
    )
    .map_err(fail)?;
    let noise = measurement.invoke(&vec![0.0; count]).map_err(fail)?;
    Ok(noise.into_iter().map(|x| x as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_reproducible_and_os_noise_is_not() {
        let a = GaussianNoise::seeded(5).sample(4, 1.0).unwrap();
        let b = GaussianNoise::seeded(5).sample(4, 1.0).unwrap();
        assert_eq!(a, b);
        let c = GaussianNoise::from_os().unwrap().sample(4, 1.0).unwrap();
        let d = GaussianNoise::from_os().unwrap().sample(4, 1.0).unwrap();
        assert_ne!(c, d);
    }

    #[test]
    fn exact_sampler_has_the_right_scale() {
        // 2000 draws of N(0, 4): the sample variance is within 20% of 4 except with
        // probability about 1e-9 (chi-square with 2000 degrees of freedom).
        let x = GaussianNoise::exact().sample(2000, 2.0).unwrap();
        let var = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / 2000.0;
        assert!((var - 4.0).abs() < 0.8, "{var}");
    }

    #[test]
    fn records_keep_the_kind_and_only_a_seeded_state() {
        let os = GaussianNoise::from_os().unwrap();
        assert_eq!(os.record(), NoiseRecord::Os);
        assert!(!os.is_seeded());
        let exact = GaussianNoise::from_record(&GaussianNoise::exact().record()).unwrap();
        assert!(exact.is_exact());
        let mut seeded = GaussianNoise::seeded(3);
        let _ = seeded.sample(5, 1.0).unwrap();
        let mut restored = GaussianNoise::from_record(&seeded.record()).unwrap();
        assert!(restored.is_seeded());
        assert_eq!(
            seeded.sample(4, 1.0).unwrap(),
            restored.sample(4, 1.0).unwrap()
        );
        // An OS-seeded source resumes with fresh entropy.
        let mut a = GaussianNoise::from_record(&NoiseRecord::Os).unwrap();
        let mut b = GaussianNoise::from_record(&NoiseRecord::Os).unwrap();
        assert_ne!(a.sample(4, 1.0).unwrap(), b.sample(4, 1.0).unwrap());
    }

    #[test]
    fn negative_or_nan_std_is_an_error() {
        assert!(GaussianNoise::seeded(0).sample(3, -1.0).is_err());
        assert!(GaussianNoise::seeded(0).sample(3, f64::NAN).is_err());
    }
}
