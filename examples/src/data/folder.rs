//! A folder of the user's own images: `DIR/train/<class>/*.{png,jpg,jpeg}` and
//! `DIR/test/<class>/*`, class names from the folder names (sorted), every image resized to
//! the model's input and converted to its channels (grey for one, RGB for three).
//!
//! Everything is read and checked before training starts: a folder that cannot be read, a
//! file that is not a PNG or JPEG image, a class folder without images, images of different
//! sizes within the dataset, or a test class the training set lacks is one error naming the
//! file or folder.

use super::{ImageSet, Split};
use crate::error::{Result, TrainError};
use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The input a model takes: channels (1: grey, 3: RGB) and a square side in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    /// 1 or 3.
    pub channels: usize,
    /// Height = width.
    pub size: usize,
}

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// The most classes a folder may have (labels are bytes).
pub const MAX_CLASSES: usize = 256;

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let read = std::fs::read_dir(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut paths = Vec::new();
    for entry in read {
        paths.push(entry.map_err(|e| TrainError::io(dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// The class folders of `split_dir`, sorted by name.
fn class_dirs(split_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut classes = Vec::new();
    for path in entries(split_dir)? {
        if !path.is_dir() {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| TrainError::malformed(&path, "a class folder's name must be UTF-8"))?
            .to_string();
        if !name.starts_with('.') {
            classes.push((name, path));
        }
    }
    if classes.is_empty() {
        return Err(TrainError::malformed(
            split_dir,
            "no class folders: an image folder holds one folder of images per class",
        ));
    }
    Ok(classes)
}

/// The image files of one class folder; anything else in it is an error.
fn image_files(class_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in entries(class_dir)? {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match extension {
            Some(e) if EXTENSIONS.contains(&e.as_str()) && path.is_file() => files.push(path),
            _ => {
                return Err(TrainError::malformed(
                    &path,
                    "not a .png, .jpg or .jpeg file: a class folder holds only images",
                ))
            }
        }
    }
    if files.is_empty() {
        return Err(TrainError::malformed(
            class_dir,
            "an empty class folder: every class needs at least one image",
        ));
    }
    Ok(files)
}

fn decode(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    image::load_from_memory(&bytes)
        .map_err(|e| TrainError::malformed(path, format!("not a readable PNG or JPEG image: {e}")))
}

/// `image` as `[C, size, size]` bytes, channel-planar.
fn to_planar(image: &DynamicImage, input: InputShape) -> Vec<u8> {
    let side = input.size as u32;
    let resized = if image.width() == side && image.height() == side {
        image.clone()
    } else {
        image.resize_exact(side, side, FilterType::Triangle)
    };
    let plane = input.size * input.size;
    if input.channels == 1 {
        return resized.to_luma8().into_raw();
    }
    let rgb = resized.to_rgb8().into_raw();
    let mut out = vec![0u8; 3 * plane];
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c];
        }
    }
    out
}

/// One split (`train` or `test`): its images with labels from `classes`' order.
fn read_split(
    split_dir: &Path,
    classes: &[String],
    input: InputShape,
    first_size: &mut Option<(u32, u32, PathBuf)>,
) -> Result<ImageSet> {
    let mut files: Vec<(PathBuf, u8)> = Vec::new();
    for (name, dir) in class_dirs(split_dir)? {
        let label = classes.iter().position(|c| *c == name).ok_or_else(|| {
            TrainError::malformed(
                &dir,
                format!(
                    "class {name:?} is not among the training set's classes ({})",
                    classes.join(", ")
                ),
            )
        })?;
        for file in image_files(&dir)? {
            files.push((file, label as u8));
        }
    }
    let decoded: Vec<Result<(u32, u32, Vec<u8>)>> = files
        .par_iter()
        .map(|(path, _)| {
            let image = decode(path)?;
            Ok((image.width(), image.height(), to_planar(&image, input)))
        })
        .collect();
    let per = input.channels * input.size * input.size;
    let mut pixels = Vec::with_capacity(files.len() * per);
    let mut labels = Vec::with_capacity(files.len());
    for ((path, label), result) in files.iter().zip(decoded) {
        let (width, height, planar) = result?;
        match first_size {
            None => *first_size = Some((width, height, path.clone())),
            Some((w, h, first)) if (*w, *h) != (width, height) => {
                return Err(TrainError::malformed(
                    path,
                    format!(
                        "{width}×{height} pixels, but {} is {w}×{h}: the images of a folder \
                         must share one size (they are all resized to the model's input, \
                         {side}×{side})",
                        first.display(),
                        side = input.size
                    ),
                ));
            }
            Some(_) => {}
        }
        pixels.extend_from_slice(&planar);
        labels.push(*label);
    }
    ImageSet::new(
        pixels,
        labels,
        [input.channels, input.size, input.size],
        classes.len(),
        split_dir,
    )
}

/// Reads `dir/train` and `dir/test` for a model taking `input`; the class names are the
/// training set's folder names, sorted, and label `i` is the `i`-th name.
///
/// ```
/// use examples::data::{read_image_folder, write_synthetic_image_folder, InputShape};
/// let dir = tempfile::tempdir()?;
/// write_synthetic_image_folder(dir.path(), &["cat", "dog"], 3, 2, 20)?;
/// let split = read_image_folder(dir.path(), InputShape { channels: 3, size: 32 })?;
/// assert_eq!(split.class_names, ["cat", "dog"]);
/// assert_eq!((split.train.len(), split.test.len(), split.train.shape), (6, 4, [3, 32, 32]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_image_folder(dir: &Path, input: InputShape) -> Result<Split> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    for split in [&train_dir, &test_dir] {
        if !split.is_dir() {
            return Err(TrainError::MissingData {
                dataset: "image-folder",
                dir: dir.to_path_buf(),
                hint: format!(
                    "{} is missing: an image folder holds train/<class>/*.png|jpg and \
                     test/<class>/*.png|jpg",
                    split.display()
                ),
            });
        }
    }
    let classes: Vec<String> = class_dirs(&train_dir)?
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if classes.len() > MAX_CLASSES {
        return Err(TrainError::malformed(
            &train_dir,
            format!("{} classes: at most {MAX_CLASSES}", classes.len()),
        ));
    }
    let mut first_size = None;
    let train = read_split(&train_dir, &classes, input, &mut first_size)?;
    let test = read_split(&test_dir, &classes, input, &mut first_size)?;
    Ok(Split {
        train,
        test,
        class_names: classes,
        features: None,
    })
}

/// One split folder (`split_dir/<class>/*`) labelled by `classes` (e.g. a released model's
/// class names, so label `i` is the model's output `i`); a class folder not in `classes` is
/// an error naming it.
pub fn read_image_folder_split(
    split_dir: &Path,
    classes: &[String],
    input: InputShape,
) -> Result<ImageSet> {
    read_split(split_dir, classes, input, &mut None)
}

/// The image at `path` (PNG or JPEG, any size) as `[C, size, size]` bytes for a model taking
/// `input`.
pub fn load_image(path: &Path, input: InputShape) -> Result<Vec<u8>> {
    Ok(to_planar(&decode(path)?, input))
}

/// Writes `set`'s images under `dir/<split>/<class name>/<index>.png` (grey or RGB).
pub fn write_image_folder_split(
    set: &ImageSet,
    class_names: &[String],
    dir: &Path,
    split: &str,
) -> Result<()> {
    let [channels, height, width] = set.shape;
    for (i, &label) in set.labels.iter().enumerate() {
        let name = class_names
            .get(label as usize)
            .ok_or_else(|| TrainError::Usage(format!("label {label} has no class name")))?;
        let class_dir = dir.join(split).join(name);
        std::fs::create_dir_all(&class_dir).map_err(|e| TrainError::io(&class_dir, e))?;
        let pixels = set.image(i);
        let path = class_dir.join(format!("{i:05}.png"));
        let plane = height * width;
        let saved = match channels {
            1 => image::GrayImage::from_raw(width as u32, height as u32, pixels.to_vec())
                .map(DynamicImage::ImageLuma8),
            3 => {
                let interleaved: Vec<u8> = (0..plane)
                    .flat_map(|p| (0..3).map(move |c| pixels[c * plane + p]))
                    .collect();
                image::RgbImage::from_raw(width as u32, height as u32, interleaved)
                    .map(DynamicImage::ImageRgb8)
            }
            _ => None,
        }
        .ok_or_else(|| TrainError::Usage(format!("cannot write {channels}-channel images")))?;
        saved
            .save(&path)
            .map_err(|e| TrainError::malformed(&path, e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::write_synthetic_image_folder;

    const GREY: InputShape = InputShape {
        channels: 1,
        size: 28,
    };
    const RGB: InputShape = InputShape {
        channels: 3,
        size: 32,
    };

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_synthetic_image_folder(dir.path(), &["dog", "cat", "fox"], 4, 3, 20).unwrap();
        dir
    }

    /// The error of reading `dir` as RGB, which must name `needle` (a file or folder).
    fn refused(dir: &Path, needle: &str) -> String {
        let err = read_image_folder(dir, RGB).unwrap_err().to_string();
        eprintln!("{err}");
        assert!(err.contains(needle), "{err} does not name {needle}");
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    }

    #[test]
    fn classes_are_sorted_folder_names_and_images_are_resized_and_converted() {
        let dir = folder();
        let split = read_image_folder(dir.path(), RGB).unwrap();
        assert_eq!(split.class_names, ["cat", "dog", "fox"]);
        assert_eq!((split.train.len(), split.test.len()), (12, 9));
        assert_eq!(split.train.shape, [3, 32, 32]);
        assert_eq!(split.train.classes, 3);
        // Files are read class by class, in name order: labels 0,0,0,0,1,…
        assert_eq!(split.train.labels, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
        let grey = read_image_folder(dir.path(), GREY).unwrap();
        assert_eq!(grey.train.shape, [1, 28, 28]);
        // Grey is the luma of the RGB image: red-heavy pixels are not blue-heavy ones.
        let rgb = image::open(dir.path().join("train/cat/0000.png")).unwrap();
        let expected = rgb
            .resize_exact(28, 28, FilterType::Triangle)
            .to_luma8()
            .into_raw();
        assert_eq!(grey.train.image(0), &expected[..]);
        // Planar RGB: the first plane is the red channel.
        let resized = rgb.resize_exact(32, 32, FilterType::Triangle).to_rgb8();
        let red: Vec<u8> = resized.pixels().map(|p| p[0]).collect();
        assert_eq!(&split.train.image(0)[..32 * 32], &red[..]);
        // JPEGs are read too (every third file).
        assert!(dir.path().join("train/cat/0002.jpg").exists());
    }

    #[test]
    fn a_bad_folder_is_one_error_naming_the_file_or_folder() {
        let dir = folder();
        let root = dir.path();
        std::fs::write(root.join("train/dog/notes.txt"), "hi").unwrap();
        refused(root, "notes.txt");
        std::fs::remove_file(root.join("train/dog/notes.txt")).unwrap();

        std::fs::write(root.join("train/dog/broken.png"), b"\x89PNG not really").unwrap();
        refused(root, "broken.png");
        std::fs::remove_file(root.join("train/dog/broken.png")).unwrap();

        image::RgbImage::new(21, 20)
            .save(root.join("test/fox/wide.png"))
            .unwrap();
        let err = refused(root, "wide.png");
        assert!(err.contains("21×20") && err.contains("20×20"), "{err}");
        std::fs::remove_file(root.join("test/fox/wide.png")).unwrap();

        std::fs::create_dir(root.join("train/empty")).unwrap();
        refused(root, "train/empty");
        std::fs::remove_dir(root.join("train/empty")).unwrap();

        std::fs::create_dir(root.join("test/owl")).unwrap();
        image::RgbImage::new(20, 20)
            .save(root.join("test/owl/a.png"))
            .unwrap();
        refused(root, "test/owl");
        std::fs::remove_dir_all(root.join("test/owl")).unwrap();

        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(empty.path().join("train")).unwrap();
        std::fs::create_dir_all(empty.path().join("test")).unwrap();
        refused(empty.path(), "train");
        std::fs::remove_dir(empty.path().join("test")).unwrap();
        let err = read_image_folder(empty.path(), RGB).unwrap_err();
        assert!(matches!(err, TrainError::MissingData { .. }), "{err}");

        // Intact again, it reads.
        assert_eq!(read_image_folder(root, RGB).unwrap().train.len(), 12);
    }

    #[test]
    fn a_split_is_labelled_by_the_given_classes() {
        let dir = folder();
        let names: Vec<String> = ["fox", "dog", "cat", "owl"].map(String::from).to_vec();
        let set = read_image_folder_split(&dir.path().join("test"), &names, GREY).unwrap();
        assert_eq!(set.classes, 4);
        // cat, dog, fox in folder order, labelled by their places in `names`.
        assert_eq!(set.labels, [2, 2, 2, 1, 1, 1, 0, 0, 0]);
        let short: Vec<String> = vec!["cat".into()];
        let err = read_image_folder_split(&dir.path().join("test"), &short, GREY).unwrap_err();
        assert!(err.to_string().contains("test/dog"), "{err}");
    }

    #[test]
    fn written_folders_read_back_exactly() {
        let dir = folder();
        let split = read_image_folder(dir.path(), GREY).unwrap();
        let out = tempfile::tempdir().unwrap();
        write_image_folder_split(&split.train, &split.class_names, out.path(), "train").unwrap();
        write_image_folder_split(&split.test, &split.class_names, out.path(), "test").unwrap();
        let again = read_image_folder(out.path(), GREY).unwrap();
        assert_eq!(again.class_names, split.class_names);
        let sorted = |s: &ImageSet| {
            let mut v: Vec<(u8, Vec<u8>)> = (0..s.len())
                .map(|i| (s.labels[i], s.image(i).to_vec()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&again.train), sorted(&split.train));
        assert_eq!(sorted(&again.test), sorted(&split.test));
    }
}
