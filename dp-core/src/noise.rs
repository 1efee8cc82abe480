//! Gaussian noise for the clipped sum.
//!
//! # The fast sampler: counter-based streams
//! One noise vector is large (71.5 M values per step for NFNet-F0), so the fast sampler fills it
//! in parallel. Each call to [`GaussianNoise::sample`]
//! 1. draws a fresh 256-bit key from the source's own generator (a ChaCha20 [`SecureRng`],
//!    seeded by the operating system or explicitly);
//! 2. splits the output into chunks of a fixed [`CHUNK`] samples; chunk `i` is the ziggurat
//!    sampler (rand_distr's `StandardNormal`) run on ChaCha20 with that key and stream
//!    (nonce) `i`, from block 0;
//! 3. fills the chunks in parallel with rayon, directly into the output vector (advised onto
//!    transparent huge pages on Linux, so that its first touch costs few page faults).
//!
//! The output is a function of the key alone: chunk sizes do not depend on the number of
//! threads, and each chunk has its own stream, so no chunk ever waits for the state of
//! another. Any thread count, and any scheduling, gives the same values. Seeded runs stay
//! reproducible, and a checkpoint of a seeded source still records one generator state (the
//! source's generator, after the keys it handed out).
//!
//! ## Security
//! Nothing new has to be trusted beyond ChaCha20 as a pseudorandom function:
//! * each call's key is 32 bytes of the source's ChaCha20 output, so for an OS-seeded source
//!   it is as unpredictable as the rest of that stream, never leaves the process and is not
//!   exportable (it is not kept after the call, and [`GaussianNoise::record`] still records no
//!   state of an OS-seeded source);
//! * within a call, the ChaCha20 inputs `(key, stream i, block counter)` are distinct for every
//!   block drawn: streams differ by chunk, and one chunk uses about 8 192 blocks
//!   (8 bytes per sample, a few more for the ziggurat's rare rejections) of a 64-bit counter,
//!   so no stream ever runs into another and no keystream block is used twice;
//! * across calls the keys differ (they are successive outputs of the source's generator), so
//!   no call repeats another's keystream.
//!
//! The keystream blocks are therefore indistinguishable from independent uniform bits, as in
//! the sequential sampler this replaces, which drew every sample from one ChaCha20 stream.
//! ChaCha20 keeps its full 20 rounds.

use crate::error::{DpError, Result};
use crate::rng::{RngState, SecureRng};
use chacha20::ChaCha20Rng;
use rand::{Rng, SeedableRng, TryRng};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

/// Samples per ChaCha20 stream in the fast sampler: the unit of parallel work (2^16). Fixed,
/// so that the noise does not depend on the number of threads; changing it changes the noise
/// of every seeded run.
pub const CHUNK: usize = 1 << 16;

/// Where Gaussian noise comes from.
///
/// # Privacy
/// [`GaussianNoise::from_os`] (the default) draws from a ChaCha20 generator seeded by the
/// operating system, with the standard floating-point ziggurat sampler: fast, and the usual
/// choice of DP-SGD libraries. It fills large vectors in parallel from counter-based ChaCha20
/// streams keyed afresh on each call (see the [module docs](self)); the values do not depend
/// on the number of threads. [`GaussianNoise::exact`] uses opendp's sampler, which draws a
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
                let mut key = [0u8; 32];
                rng.inner().fill_bytes(&mut key);
                let mut out = vec![0.0f32; count];
                advise_huge_pages(&mut out);
                fill_gaussian(&mut out, key, std);
                Ok(out)
            }
            Source::Exact => exact_gaussian(count, std),
        }
    }
}

/// Fills `out` with N(0, std²) draws, chunk `i` (of [`CHUNK`] samples) from ChaCha20 with `key`
/// and stream `i`, in parallel; the result depends only on `key` and `std`.
fn fill_gaussian(out: &mut [f32], key: [u8; 32], std: f64) {
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(stream, chunk)| {
            let mut rng = ChaCha20Rng::from_seed(key);
            rng.set_stream(stream as u64);
            let mut rng = Buffered::new(rng);
            for v in chunk {
                let z: f64 = StandardNormal.sample(&mut rng);
                *v = (z * std) as f32;
            }
        });
}

/// Asks the kernel to back `out` with transparent huge pages (2 MiB) before it is first
/// touched: a fresh 286 MB vector costs ~70 000 page faults of 4 KiB otherwise. Only advice:
/// nothing changes where the kernel declines.
#[cfg(target_os = "linux")]
fn advise_huge_pages(out: &mut [f32]) {
    const HUGE: usize = 2 << 20;
    let start = out.as_mut_ptr() as usize;
    let end = start + std::mem::size_of_val(out);
    let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
    if last > first {
        // SAFETY: [first, last) lies inside `out`'s allocation, which we borrow mutably;
        // MADV_HUGEPAGE changes neither the contents nor the validity of the mapping.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_out: &mut [f32]) {}

/// Keystream bytes generated at a time for the ziggurat (4 KiB: stays in L1 cache).
const BLOCK_BYTES: usize = 4096;

/// A ChaCha20 generator read through a block buffer. `next_u64` (all the ziggurat asks for)
/// returns the same values, in the same order, as `ChaCha20Rng::next_u64`: bytes `8k..8k+8` of
/// the keystream, little-endian. It is only cheaper per call (measured 5-8% off the whole
/// sampler). `next_u32` takes the low half of a `u64`; `fill_bytes` whole `u64`s.
struct Buffered {
    rng: ChaCha20Rng,
    buf: [u8; BLOCK_BYTES],
    pos: usize,
}

impl Buffered {
    fn new(rng: ChaCha20Rng) -> Self {
        Self {
            rng,
            buf: [0; BLOCK_BYTES],
            pos: BLOCK_BYTES,
        }
    }
}

impl TryRng for Buffered {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }

    #[inline(always)]
    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        if self.pos == BLOCK_BYTES {
            self.rng.fill_bytes(&mut self.buf);
            self.pos = 0;
        }
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.buf[self.pos..self.pos + 8]);
        self.pos += 8;
        Ok(u64::from_le_bytes(word))
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), Infallible> {
        for part in dest.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            part.copy_from_slice(&word[..part.len()]);
        }
        Ok(())
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

    // The fast sampler's statistics. Every test below draws from a fixed seed, so it passes or
    // fails deterministically; the false-failure rates stated are the fraction of seeds for
    // which a correct sampler would fail (about one seed in a million for each test). The
    // mutations they were checked against are listed in the commit that introduced them.

    /// One million draws: 15.3 chunks, the last one partial.
    const N: usize = 1_000_000;

    fn draws(seed: u64, count: usize, std: f64) -> Vec<f32> {
        GaussianNoise::seeded(seed).sample(count, std).unwrap()
    }

    /// The standard normal distribution function.
    fn phi(x: f64) -> f64 {
        0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
    }

    fn mean_var(x: &[f32]) -> (f64, f64) {
        let n = x.len() as f64;
        let mean = x.iter().map(|v| *v as f64).sum::<f64>() / n;
        let var = x.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    /// Pearson correlation of two equally long samples.
    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
        let cov = a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - ma) * (*y as f64 - mb))
            .sum::<f64>()
            / (a.len() as f64 - 1.0);
        cov / (va * vb).sqrt()
    }

    /// Whether some run of three consecutive values occurs twice in `x`. Overlapping streams
    /// (two chunks reading the same keystream, at any offset: the ziggurat resynchronises
    /// within a few draws) or a reused buffer repeat whole runs. By chance: two independent
    /// f32 draws of N(0, 1) coincide with probability about 1.4e-8 (measured: ~6 800 equal
    /// pairs among 10^6 draws), so some triple repeats among 10^6 positions with probability
    /// about (10^6)²/2 · (1.4e-8)³ ≈ 1e-12.
    fn repeats_a_triple(x: &[f32]) -> bool {
        let mut triples: Vec<u128> = x
            .windows(3)
            .map(|w| {
                w.iter()
                    .fold(0u128, |acc, v| acc << 32 | v.to_bits() as u128)
            })
            .collect();
        triples.sort_unstable();
        triples.windows(2).any(|w| w[0] == w[1])
    }

    #[test]
    fn values_do_not_depend_on_the_number_of_threads() {
        let count = 5 * CHUNK + 321;
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut noise = GaussianNoise::seeded(11);
                let first = noise.sample(count, 1.5).unwrap();
                // The source's generator advanced alike: the next call agrees too.
                let second = noise.sample(CHUNK + 1, 1.5).unwrap();
                (first, second)
            })
        };
        let one = run(1);
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

    #[test]
    fn chunk_i_is_chacha20_stream_i_under_a_key_from_the_source() {
        // The specification, against a second ChaCha20 implementation (rand_chacha's): the
        // call's key is the next 32 bytes of the source's generator; chunk i is the ziggurat
        // on stream i of that key, from its start; the last chunk is partial.
        let std = 0.75;
        let mut source = SecureRng::seeded(4);
        let mut noise = GaussianNoise::seeded(4);
        for count in [2 * CHUNK + 10, 7] {
            let mut key = [0u8; 32];
            source.inner().fill_bytes(&mut key);
            let x = noise.sample(count, std).unwrap();
            assert_eq!(x.len(), count);
            for (i, chunk) in x.chunks(CHUNK).enumerate() {
                let mut rng = rand_chacha::ChaCha20Rng::from_seed(key);
                rng.set_stream(i as u64);
                let want: Vec<f32> = (0..chunk.len())
                    .map(|_| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        (z * std) as f32
                    })
                    .collect();
                assert_eq!(chunk, &want[..], "chunk {i} of {count}");
            }
        }
        assert!(draws(4, 0, 1.0).is_empty());
    }

    #[test]
    fn the_block_buffer_returns_the_generators_u64s() {
        let stream = || {
            let mut rng = ChaCha20Rng::from_seed([9; 32]);
            rng.set_stream(3);
            rng
        };
        let (mut plain, mut buffered) = (stream(), Buffered::new(stream()));
        // Three refills and a bit.
        for k in 0..3 * BLOCK_BYTES / 8 + 5 {
            assert_eq!(buffered.next_u64(), plain.next_u64(), "word {k}");
        }
    }

    #[test]
    fn mean_and_variance_match_the_requested_std() {
        // N(0, 4), so that applying std twice (or not at all) shows. Mean: standard error
        // 2/√n = 0.002, bound 0.01 = 5 standard errors. Variance: standard error 4·√(2/n) =
        // 0.0057, bound 0.0283 = 5 standard errors. A correct sampler fails each with
        // probability 5.7e-7 (normal tail beyond 5σ; n = 10^6 makes the normal limit exact
        // enough).
        let (mean, var) = mean_var(&draws(1, N, 2.0));
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 4.0).abs() < 0.0283, "variance {var}");
    }

    #[test]
    fn kolmogorov_smirnov_against_the_standard_normal() {
        // D = sup |F_n - Φ| over 10^6 draws of N(0, 4) divided by 2. By Kolmogorov's limit law
        // P(√n·D > 2.7) = 2·Σ (-1)^(k-1) exp(-2k²·2.7²) ≈ 9.3e-7: the false-failure rate. The
        // test detects any error in the distribution function larger than about 0.003.
        let mut x: Vec<f64> = draws(2, N, 2.0).iter().map(|v| *v as f64 / 2.0).collect();
        x.sort_by(f64::total_cmp);
        let n = x.len() as f64;
        let d = x
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let f = phi(*v);
                (f - i as f64 / n).max((i + 1) as f64 / n - f)
            })
            .fold(0.0, f64::max);
        assert!(d * n.sqrt() < 2.7, "√n·D = {}", d * n.sqrt());
    }

    #[test]
    fn chi_square_over_bins_reaching_into_the_tails() {
        // The ziggurat's rare paths (rejections, the tail beyond 3.44) barely move the
        // Kolmogorov–Smirnov statistic, so count the tails too: 18 bins with edges -4, -3.5,
        // ..., 4 (expected counts at least 31.7, beyond ±4). Chi-square with 17 degrees of
        // freedom exceeds 61 with probability 7.2e-7: the false-failure rate.
        let x = draws(3, N, 1.0);
        let edges: Vec<f64> = (0..=16).map(|k| -4.0 + 0.5 * k as f64).collect();
        let mut counts = [0u64; 18];
        for v in &x {
            counts[edges.partition_point(|e| *e <= *v as f64)] += 1;
        }
        // P(X < lower edge of bin k); bin 0 is (-∞, -4), bin 17 is [4, ∞).
        let cdf = |k: usize| match k {
            0 => 0.0,
            18 => 1.0,
            _ => phi(edges[k - 1]),
        };
        let chi2: f64 = (0..18)
            .map(|k| {
                let expected = N as f64 * (cdf(k + 1) - cdf(k));
                (counts[k] as f64 - expected).powi(2) / expected
            })
            .sum();
        assert!(chi2 < 61.0, "chi² = {chi2}, counts {counts:?}");
    }

    #[test]
    fn chunks_are_uncorrelated_and_never_repeat() {
        // The correlation of two independent runs of m = 65 536 draws is about N(0, 1/m):
        // |r| < 5/√m fails with probability 5.7e-7 for each of the 14 neighbouring pairs of
        // full chunks (8e-6 for all). Chunk boundaries: see `repeats_a_triple`.
        let x = draws(5, N, 1.0);
        let chunks: Vec<&[f32]> = x.chunks_exact(CHUNK).collect();
        let bound = 5.0 / (CHUNK as f64).sqrt();
        for (i, pair) in chunks.windows(2).enumerate() {
            let r = correlation(pair[0], pair[1]);
            assert!(r.abs() < bound, "chunks {i} and {}: r = {r}", i + 1);
        }
        assert!(!repeats_a_triple(&x));
    }

    #[test]
    fn every_call_draws_a_fresh_key() {
        // Two calls of one source must not share a keystream (a key drawn once and kept would
        // repeat the noise of every step). Rates as in `chunks_are_uncorrelated_and_never_repeat`.
        let mut noise = GaussianNoise::seeded(6);
        let mut x = noise.sample(CHUNK, 1.0).unwrap();
        let y = noise.sample(CHUNK, 1.0).unwrap();
        assert!(correlation(&x, &y).abs() < 5.0 / (CHUNK as f64).sqrt());
        x.extend(y);
        assert!(!repeats_a_triple(&x));
    }
}
