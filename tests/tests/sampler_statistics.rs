//! Poisson sampling, statistically: every index joins each batch with probability q, and
//! independently across steps, checked by two χ² tests, each with a broken sampler that it
//! must catch (power).
//!
//! False-failure rate: each test is run at α = 1e-6 on a fixed seed, so a correct sampler
//! fails one of the two with probability ≤ 2e-6 over seeds; with the seed fixed the outcome is
//! deterministic. The χ² tail probabilities are exact for the even degrees of freedom used
//! (the Poisson–χ² identity, `chi2_sf_even`); for 1 degree of freedom, P(χ²₁ > x) =
//! erfc(√(x/2)) with Numerical Recipes' `erfcc` (fractional error < 1.2e-7). The statistics
//! themselves are asymptotically χ² (normal approximation of Bin(T, q) with Tq = 200; the
//! transition-count test of Anderson & Goodman 1957).

use dp_core::sampler::{PoissonSampler, Sampler};

/// Dataset size N, sampling rate q, steps T.
const N: usize = 1000;
const Q: f64 = 0.1;
const STEPS: usize = 2000;
const ALPHA: f64 = 1e-6;

/// P(χ²_k > x) for even k: e^{−x/2} Σ_{j<k/2} (x/2)^j / j!, summed in log space.
fn chi2_sf_even(x: f64, k: usize) -> f64 {
    assert!(k >= 2 && k.is_multiple_of(2));
    let lambda = x / 2.0;
    let logs: Vec<f64> = (0..k / 2)
        .scan(-lambda, |log, j| {
            if j > 0 {
                *log += lambda.ln() - (j as f64).ln();
            }
            Some(*log)
        })
        .collect();
    let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    top.exp() * logs.iter().map(|l| (l - top).exp()).sum::<f64>()
}

/// Numerical Recipes' erfcc (Chebyshev fit, fractional error < 1.2e-7 everywhere).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let c = [
        -1.26551223,
        1.00002368,
        0.37409196,
        0.09678418,
        -0.18628806,
        0.27886807,
        -1.13520398,
        1.48851587,
        -0.82215223,
        0.17087277,
    ];
    let poly = c.iter().rev().fold(0.0, |acc, &ci| acc * t + ci);
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// P(χ²₁ > x).
fn chi2_sf_1(x: f64) -> f64 {
    erfc((x / 2.0).sqrt())
}

/// The x with `sf(x) = alpha`, by bisection (sf decreasing).
fn critical(sf: impl Fn(f64) -> f64, alpha: f64) -> f64 {
    let (mut lo, mut hi) = (0.0, 1.0);
    while sf(hi) > alpha {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if sf(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Inclusion of every index at every step, `[T][N]`.
fn inclusions(mut draw: impl FnMut() -> Vec<usize>) -> Vec<Vec<bool>> {
    (0..STEPS)
        .map(|_| {
            let mut row = vec![false; N];
            for i in draw() {
                row[i] = true;
            }
            row
        })
        .collect()
}

/// Σ_i (c_i − Tq)² / (Tq(1−q)) over the N inclusion counts: ≈ χ²_N if every index joins each
/// batch independently with probability q. Returns (statistic, critical value at α).
fn frequency_statistic(x: &[Vec<bool>]) -> (f64, f64) {
    let mean = STEPS as f64 * Q;
    let var = mean * (1.0 - Q);
    let stat = (0..N)
        .map(|i| {
            let count = x.iter().filter(|row| row[i]).count() as f64;
            (count - mean).powi(2) / var
        })
        .sum();
    (stat, critical(|s| chi2_sf_even(s, N), ALPHA))
}

/// Pearson χ² of the 2×2 table of (included at t, included at t + 1), pooled over indices and
/// steps: ≈ χ²₁ if steps are independent. Returns (statistic, critical value at α).
fn independence_statistic(x: &[Vec<bool>]) -> (f64, f64) {
    let mut table = [[0f64; 2]; 2];
    for pair in x.windows(2) {
        for i in 0..N {
            table[pair[0][i] as usize][pair[1][i] as usize] += 1.0;
        }
    }
    let n: f64 = table.iter().flatten().sum();
    let rows = [table[0][0] + table[0][1], table[1][0] + table[1][1]];
    let cols = [table[0][0] + table[1][0], table[0][1] + table[1][1]];
    let det = table[1][1] * table[0][0] - table[1][0] * table[0][1];
    let stat = n * det * det / (rows[0] * rows[1] * cols[0] * cols[1]);
    (stat, critical(chi2_sf_1, ALPHA))
}

fn poisson(seed: u64) -> PoissonSampler {
    PoissonSampler::seeded(N as u64, Q, seed).unwrap()
}

#[test]
fn chi_square_tails_match_closed_forms_and_tables() {
    // k = 2: exactly e^{−x/2}.
    for x in [0.5, 3.0, 40.0] {
        assert!((chi2_sf_even(x, 2) / (-x / 2.0f64).exp() - 1.0).abs() < 1e-12);
    }
    // Upper 1% points (as in Abramowitz & Stegun, Table 26.8) and the critical values used
    // here, from mpmath 1.3.0: findroot(gammainc(k/2, x/2, inf, regularized=True) − α).
    assert!((chi2_sf_1(6.634897) - 0.01).abs() < 1e-6);
    assert!((chi2_sf_even(23.209251, 10) - 0.01).abs() < 1e-8);
    assert!((critical(|x| chi2_sf_even(x, 10), 0.01) - 23.209251).abs() < 1e-4);
    assert!((critical(|x| chi2_sf_even(x, N), ALPHA) - 1227.152421).abs() < 1e-3);
    assert!((critical(chi2_sf_1, ALPHA) - 23.928127).abs() < 1e-3);
}

#[test]
fn poisson_sampler_includes_every_index_with_probability_q() {
    let mut sampler = poisson(1);
    let x = inclusions(|| sampler.next_batch().indices().to_vec());
    let (stat, critical) = frequency_statistic(&x);
    assert!(
        stat < critical,
        "χ²_{N} = {stat} ≥ {critical} (α = {ALPHA})"
    );
}

#[test]
fn poisson_sampler_draws_steps_independently() {
    let mut sampler = poisson(2);
    let x = inclusions(|| sampler.next_batch().indices().to_vec());
    let (stat, critical) = independence_statistic(&x);
    assert!(stat < critical, "χ²₁ = {stat} ≥ {critical} (α = {ALPHA})");
}

/// Power: a sampler that takes the first k indices, k ~ Bin(N, q) (the batch size of a
/// Poisson batch, so the same batch-size distribution), fails the frequency test.
#[test]
fn a_sampler_taking_the_first_indices_fails_the_frequency_test() {
    let mut sizes = poisson(3);
    let x = inclusions(|| (0..sizes.next_batch().indices().len()).collect());
    let (stat, critical) = frequency_statistic(&x);
    assert!(
        stat > critical,
        "not detected: χ²_{N} = {stat} < {critical}"
    );
}

/// Power: a sampler that repeats the previous step's batch every other step (each batch is
/// still a Poisson batch) fails the independence test.
#[test]
fn a_sampler_repeating_the_previous_batch_fails_the_independence_test() {
    let mut sampler = poisson(4);
    let mut previous = Vec::new();
    let mut step = 0;
    let x = inclusions(|| {
        if step % 2 == 0 {
            previous = sampler.next_batch().indices().to_vec();
        }
        step += 1;
        previous.clone()
    });
    let (stat, critical) = independence_statistic(&x);
    assert!(stat > critical, "not detected: χ²₁ = {stat} < {critical}");
}
