//! Data augmentation and batching: reflect-padded random crops, horizontal flips, K views per
//! example (augmentation multiplicity), per-channel normalization.
//!
//! Augmentation randomness is not privacy noise: each example's views come from a ChaCha8
//! generator seeded by (run seed, step, example index), so a run (and a resumed run) is
//! reproducible and micro-batching does not change the views.

use crate::data::ImageSet;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How training images become float inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    /// Zero for no cropping; else reflect-pad by this much and crop back at random.
    pub crop_padding: usize,
    /// Random horizontal flips.
    pub flip: bool,
    /// K views per example.
    pub views: usize,
    /// Per-channel (mean, std) of pixels in [0, 1]; (0, 1) leaves them in [0, 1].
    pub normalize: Vec<(f32, f32)>,
}

impl Augment {
    /// No augmentation, one view, pixels scaled to [0, 1].
    pub fn none(channels: usize) -> Self {
        Self {
            crop_padding: 0,
            flip: false,
            views: 1,
            normalize: vec![(0.0, 1.0); channels],
        }
    }

    /// Per-channel normalization only (evaluation).
    pub fn eval_only(&self) -> Self {
        Self {
            crop_padding: 0,
            flip: false,
            views: 1,
            normalize: self.normalize.clone(),
        }
    }

    /// The float pixels `[n·K, C, H, W]` and labels `[n·K]` of `indices`; views of an example
    /// are consecutive. The randomness of example `i` depends on `(seed, step, i)` only.
    pub fn batch(
        &self,
        set: &ImageSet,
        indices: &[usize],
        seed: u64,
        step: u64,
    ) -> (Vec<f32>, Vec<i64>) {
        let [c, h, w] = set.shape;
        let mut pixels = Vec::with_capacity(indices.len() * self.views * c * h * w);
        let mut labels = Vec::with_capacity(indices.len() * self.views);
        let p = self.crop_padding as i64;
        for &i in indices {
            let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(seed, step), i as u64));
            let image = set.image(i);
            for _ in 0..self.views {
                let (dy, dx) = if p > 0 {
                    (
                        (rng.random_range(0..=2 * p) - p) as isize,
                        (rng.random_range(0..=2 * p) - p) as isize,
                    )
                } else {
                    (0, 0)
                };
                let flip = self.flip && rng.random_bool(0.5);
                for ch in 0..c {
                    let (mean, std) = self.normalize[ch];
                    let plane = &image[ch * h * w..(ch + 1) * h * w];
                    for y in 0..h {
                        let sy = reflect(y as isize + dy, h);
                        for x in 0..w {
                            let xx = if flip { w - 1 - x } else { x };
                            let sx = reflect(xx as isize + dx, w);
                            pixels.push((plane[sy * w + sx] as f32 / 255.0 - mean) / std);
                        }
                    }
                }
                labels.push(set.labels[i] as i64);
            }
        }
        (pixels, labels)
    }
}

/// SplitMix64 of `a` combined with `b`: distinct seeds for distinct (seed, step, index).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9e37_79b9_7f4a_7c15)
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Index of a reflect-padded coordinate (edge not repeated, as numpy's "reflect").
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    let mut i = i;
    if i < 0 {
        i = -i;
    }
    if i >= n {
        i = 2 * (n - 1) - i;
    }
    i.clamp(0, n - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        let pixels: Vec<u8> = (0..2 * 3 * 4 * 4).map(|v| v as u8).collect();
        ImageSet::new(
            pixels,
            vec![3, 7],
            [3, 4, 4],
            10,
            std::path::Path::new("mem"),
        )
        .unwrap()
    }

    #[test]
    fn no_augmentation_is_scaling_only() {
        let (x, y) = Augment::none(3).batch(&set(), &[1], 0, 0);
        assert_eq!(y, vec![7]);
        assert_eq!(x.len(), 48);
        assert!((x[0] - 48.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn views_are_consecutive_and_deterministic_under_a_seed() {
        let aug = Augment {
            crop_padding: 2,
            flip: true,
            views: 4,
            normalize: vec![(0.5, 0.25); 3],
        };
        let (a, ya) = aug.batch(&set(), &[0, 1], 9, 3);
        let (b, _) = aug.batch(&set(), &[0, 1], 9, 3);
        let (c, _) = aug.batch(&set(), &[0, 1], 9, 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Micro-batching does not change an example's views.
        let (second, _) = aug.batch(&set(), &[1], 9, 3);
        assert_eq!(&a[a.len() / 2..], second.as_slice());
        assert_eq!(ya, vec![3, 3, 3, 3, 7, 7, 7, 7]);
        // Each crop is a permutation of reflected pixels of the same image: values stay in range.
        assert!(a.iter().all(|v| (-2.0..=2.0).contains(v)));
    }

    #[test]
    fn reflection_does_not_repeat_the_edge() {
        assert_eq!(reflect(-1, 4), 1);
        assert_eq!(reflect(-2, 4), 2);
        assert_eq!(reflect(4, 4), 2);
        assert_eq!(reflect(5, 4), 1);
        assert_eq!(reflect(2, 4), 2);
    }
}
