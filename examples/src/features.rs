//! Fixed features of a model that reads them instead of pixels (the ScatterNet models: the
//! scattering transform), computed once per image when the data is loaded and kept in memory,
//! and the rows of a batch, whichever a model reads.
//!
//! # Privacy
//! The transform has no parameters and sees one image at a time: computing it on the private
//! training images costs nothing, and the features are never written to disk.

use crate::augment::Augment;
use crate::data::{ImageSet, Split};
use crate::error::{Result, TrainError};
use crate::presets::ModelKind;
use dp_models::Scattering2D;
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

/// Scales J and orientations L of Tramèr & Boneh's ScatterNet.
pub const SCATTERING_SCALES: usize = 2;
/// L.
pub const SCATTERING_ORIENTATIONS: usize = 8;

/// Features of every image of a split.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// `[K, H, W]` of one image's features.
    pub shape: [usize; 3],
    /// Of the training images, in order.
    pub train: Vec<f32>,
    /// Of the test images, in order.
    pub test: Vec<f32>,
}

/// Which set of a split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The training set.
    Train,
    /// The test set.
    Test,
}

/// The scattering transform `model` reads its images through, if any.
pub fn scattering_of(model: ModelKind, image: [usize; 3]) -> Result<Option<Scattering2D>> {
    match model {
        ModelKind::ScatterNet { .. } => Ok(Some(Scattering2D::new(
            SCATTERING_SCALES,
            SCATTERING_ORIENTATIONS,
            image,
        )?)),
        _ => Ok(None),
    }
}

/// `[K, H, W]` of what `model` reads from images of `image`: the images themselves, or their
/// features.
pub fn model_input_shape(model: ModelKind, image: [usize; 3]) -> Result<[usize; 3]> {
    Ok(match model {
        ModelKind::ScatterNet { .. } => {
            Scattering2D::output_shape_for(SCATTERING_SCALES, SCATTERING_ORIENTATIONS, image)
        }
        _ => image,
    })
}

/// Computes the features of `split` for `model` (nothing for a model that reads pixels), from
/// the pixels as `augment` scales them without random augmentation; says on stderr what it is
/// doing and how long it took.
pub fn attach_features(split: &mut Split, model: ModelKind, augment: &Augment) -> Result<()> {
    let Some(scattering) = scattering_of(model, split.train.shape)? else {
        return Ok(());
    };
    let started = Instant::now();
    let images = split.train.len() + split.test.len();
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "computing the scattering features of {images} images (J = {SCATTERING_SCALES}, L = \
         {SCATTERING_ORIENTATIONS}: {:?} per image), once, in memory",
        scattering.output_shape()
    );
    let plain = augment.eval_only();
    let of = |set: &ImageSet| -> Result<Vec<f32>> {
        let mut out = Vec::new();
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(4096) {
            let (pixels, _) = plain.batch(set, chunk, 0, 0);
            out.extend(scattering.transform_batch(&pixels)?);
        }
        Ok(out)
    };
    let features = Features {
        shape: scattering.output_shape(),
        train: of(&split.train)?,
        test: of(&split.test)?,
    };
    let _ = writeln!(
        err,
        "scattering features computed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    split.features = Some(Arc::new(features));
    Ok(())
}

/// The float rows `[n·K, …]` and labels of `indices` of `part`, with the shape of one row:
/// features if the split has them (one view, no augmentation), else the pixels as `augment`
/// makes them.
pub fn batch_rows(
    split: &Split,
    part: Part,
    indices: &[usize],
    augment: &Augment,
    seed: u64,
    step: u64,
) -> Result<(Vec<f32>, Vec<i64>, [usize; 3])> {
    let set = match part {
        Part::Train => &split.train,
        Part::Test => &split.test,
    };
    let Some(features) = &split.features else {
        let (pixels, labels) = augment.batch(set, indices, seed, step);
        return Ok((pixels, labels, set.shape));
    };
    if augment.views != 1 || augment.crop_padding != 0 || augment.flip {
        return Err(TrainError::Usage(
            "a model on fixed features takes one view of each image, without crops or flips \
             (--augmult 1)"
                .into(),
        ));
    }
    let table = match part {
        Part::Train => &features.train,
        Part::Test => &features.test,
    };
    let per = features.shape.iter().product::<usize>();
    let mut rows = Vec::with_capacity(indices.len() * per);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        rows.extend_from_slice(&table[i * per..(i + 1) * per]);
        labels.push(i64::from(set.labels[i]));
    }
    Ok((rows, labels, features.shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dp_models::ScatterHead;

    fn split() -> Split {
        let set = |n: usize| {
            ImageSet::new(
                (0..n * 28 * 28).map(|v| (v * 7 % 251) as u8).collect(),
                (0..n).map(|i| (i % 3) as u8).collect(),
                [1, 28, 28],
                3,
                std::path::Path::new("test"),
            )
            .unwrap()
        };
        Split {
            train: set(5),
            test: set(2),
            class_names: vec!["a".into(), "b".into(), "c".into()],
            features: None,
        }
    }

    #[test]
    fn features_are_the_transform_of_each_image_and_batches_gather_them() {
        let mut split = split();
        let model = ModelKind::ScatterNet {
            head: ScatterHead::Linear,
            channels: 1,
        };
        let augment = Augment::none(1);
        attach_features(&mut split, model, &augment).unwrap();
        let features = split.features.clone().unwrap();
        assert_eq!(features.shape, [81, 7, 7]);
        assert_eq!(features.train.len(), 5 * 81 * 49);
        let (rows, labels, shape) =
            batch_rows(&split, Part::Train, &[3, 1], &augment, 0, 0).unwrap();
        assert_eq!((labels, shape), (vec![0, 1], [81, 7, 7]));
        let (pixels, _) = augment.batch(&split.train, &[3], 0, 0);
        let direct = Scattering2D::new(2, 8, [1, 28, 28])
            .unwrap()
            .transform_batch(&pixels)
            .unwrap();
        assert_eq!(&rows[..81 * 49], &direct[..]);
        let (test_rows, _, _) = batch_rows(&split, Part::Test, &[1], &augment, 0, 0).unwrap();
        assert_eq!(test_rows, features.test[81 * 49..].to_vec());
        let mut two_views = augment.clone();
        two_views.views = 2;
        assert!(batch_rows(&split, Part::Train, &[0], &two_views, 0, 0).is_err());
        // A pixel model's batches are the pixels.
        let plain = self::split();
        let (rows, _, shape) = batch_rows(&plain, Part::Test, &[0], &augment, 0, 0).unwrap();
        assert_eq!((rows.len(), shape), (784, [1, 28, 28]));
    }
}
