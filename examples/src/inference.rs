//! Using a released model: rebuild it from its card, score a labelled test set (overall and
//! per class), and predict the classes of images. What `dp-eval` and `dp-predict` run.

use crate::augment::Augment;
use crate::data::{
    load_image, read_cifar10, read_fashion_mnist, read_image_folder_split, ImageSet, InputShape,
    Split, FASHION_MNIST_DIR,
};
use crate::error::{Result, TrainError};
use crate::model_card::ModelCard;
use crate::presets::{Dataset, ModelKind, SCATTER_GROUPS};
use crate::train::{Classifier, NfNetVariant};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor};
use dp_core::loss::cross_entropy_per_row;
use dp_models::{
    load_safetensors, KeyLayout, NfNetConfig, ScatterNetConfig, TanhCnn, WideResNetConfig,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// What to do with a released model once it is rebuilt, whatever its architecture.
pub trait ModelUse<B: Backend> {
    /// The result.
    type Output;
    /// Does it with `model`.
    fn run<M: Classifier<B>>(self, model: M) -> Result<Self::Output>;
}

/// Rebuilds the model of `card` from the weights at `path` on `device` and gives it to `task`.
pub fn with_released_model<B: Backend, T: ModelUse<B>>(
    path: &Path,
    card: &ModelCard,
    device: &B::Device,
    task: T,
) -> Result<T::Output> {
    let classes = card.classes();
    let native = KeyLayout::Native;
    match card.model {
        ModelKind::TanhCnn => task.run(load_safetensors(
            TanhCnn::<B>::new(classes, device)?,
            path,
            native,
            device,
        )?),
        ModelKind::WideResNet { depth, width } => task.run(load_safetensors(
            WideResNetConfig::new(depth, width, classes).init::<B>(device)?,
            path,
            native,
            device,
        )?),
        ModelKind::NfNet => {
            let variant = card.nfnet_variant.unwrap_or(NfNetVariant::F0);
            let config: NfNetConfig = variant
                .config()
                .with_input_size(card.input[1])
                .with_num_classes(classes);
            task.run(load_safetensors(
                config.init::<B>(device)?,
                path,
                native,
                device,
            )?)
        }
        ModelKind::ScatterNet { head, .. } => {
            let features = crate::features::model_input_shape(card.model, card.input)?;
            task.run(load_safetensors(
                ScatterNetConfig::new(features, SCATTER_GROUPS, head, classes).init::<B>(device)?,
                path,
                native,
                device,
            )?)
        }
    }
}

/// Accuracy on one class.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassAccuracy {
    /// The class name.
    pub class: String,
    /// Test images of the class.
    pub images: usize,
    /// Of them, classified correctly.
    pub correct: usize,
    /// `correct / images` (`None` without images).
    pub accuracy: Option<f64>,
}

/// A model's score on a labelled set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Evaluation {
    /// Images scored.
    pub images: usize,
    /// Fraction classified correctly.
    pub test_accuracy: f64,
    /// Mean cross-entropy.
    pub test_loss: f64,
    /// By class, in the model's order.
    pub per_class: Vec<ClassAccuracy>,
}

fn input_augment(card: &ModelCard) -> Augment {
    Augment {
        crop_padding: 0,
        flip: false,
        views: 1,
        normalize: card.normalization.clone(),
    }
}

/// The model inputs of an image set: the float images, upsampled to the model's input if
/// smaller, or their scattering features for a ScatterNet (its filter bank built once).
struct Inputs<'a> {
    card: &'a ModelCard,
    set: &'a ImageSet,
    scattering: Option<dp_models::Scattering2D>,
}

impl<'a> Inputs<'a> {
    fn new(card: &'a ModelCard, set: &'a ImageSet) -> Result<Self> {
        let scattering = crate::features::scattering_of(card.model, set.shape)?;
        Ok(Self {
            card,
            set,
            scattering,
        })
    }

    /// The inputs of `indices` of the set.
    fn of<B: Backend>(&self, indices: &[usize], device: &B::Device) -> Result<Tensor<B, 4>> {
        let (pixels, labels) = input_augment(self.card).batch(self.set, indices, 0, 0);
        if let Some(scattering) = &self.scattering {
            let features = scattering.transform_batch(&pixels)?;
            let shape = scattering.output_shape();
            return Ok(crate::train::eval_tensors::<B>(features, labels, shape, None, device).0);
        }
        let shape = self.set.shape;
        let resolution = (shape[1] != self.card.input[1]).then_some(self.card.input[1]);
        Ok(crate::train::eval_tensors::<B>(pixels, labels, shape, resolution, device).0)
    }
}

/// Scores `set` (labels in the model's class order).
pub struct Score<'a, B: Backend> {
    /// The model's card.
    pub card: &'a ModelCard,
    /// The labelled images.
    pub set: &'a ImageSet,
    /// Where to run.
    pub device: &'a B::Device,
}

impl<B: Backend> ModelUse<B> for Score<'_, B> {
    type Output = Evaluation;

    fn run<M: Classifier<B>>(self, model: M) -> Result<Evaluation> {
        let Score { card, set, device } = self;
        let mut per_class: Vec<ClassAccuracy> = card
            .class_names
            .iter()
            .map(|c| ClassAccuracy {
                class: c.clone(),
                images: 0,
                correct: 0,
                accuracy: None,
            })
            .collect();
        let mut loss = 0f64;
        let inputs = Inputs::new(card, set)?;
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(250) {
            let x = inputs.of::<B>(chunk, device)?;
            let logits = model.logits(x);
            let labels: Vec<i64> = chunk.iter().map(|&i| set.labels[i] as i64).collect();
            let y = Tensor::from_data(
                burn::tensor::TensorData::new(labels.clone(), [chunk.len()]),
                device,
            );
            loss += cross_entropy_per_row(logits.clone(), y)
                .sum()
                .into_scalar()
                .elem::<f64>();
            let predicted = to_i64(logits.argmax(1).reshape([chunk.len()]))?;
            for (&label, &guess) in labels.iter().zip(&predicted) {
                let class = &mut per_class[label as usize];
                class.images += 1;
                class.correct += usize::from(label == guess);
            }
        }
        for class in &mut per_class {
            class.accuracy = (class.images > 0).then(|| class.correct as f64 / class.images as f64);
        }
        let correct: usize = per_class.iter().map(|c| c.correct).sum();
        let n = set.len().max(1) as f64;
        Ok(Evaluation {
            images: set.len(),
            test_accuracy: correct as f64 / n,
            test_loss: loss / n,
            per_class,
        })
    }
}

fn to_i64<B: Backend>(t: Tensor<B, 1, burn::tensor::Int>) -> Result<Vec<i64>> {
    t.into_data()
        .convert::<i64>()
        .to_vec::<i64>()
        .map_err(|e| TrainError::Usage(format!("reading predictions: {e:?}")))
}

/// A class and its probability.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Guess {
    /// The class name.
    pub class: String,
    /// The model's probability (softmax of the logits).
    pub probability: f64,
}

/// The top classes of each image of `set`, most probable first.
pub struct Predict<'a, B: Backend> {
    /// The model's card.
    pub card: &'a ModelCard,
    /// The images (labels unused).
    pub set: &'a ImageSet,
    /// How many classes per image.
    pub top: usize,
    /// Where to run.
    pub device: &'a B::Device,
}

impl<B: Backend> ModelUse<B> for Predict<'_, B> {
    type Output = Vec<Vec<Guess>>;

    fn run<M: Classifier<B>>(self, model: M) -> Result<Vec<Vec<Guess>>> {
        let Predict {
            card,
            set,
            top,
            device,
        } = self;
        let classes = card.classes();
        let mut out = Vec::with_capacity(set.len());
        let inputs = Inputs::new(card, set)?;
        let indices: Vec<usize> = (0..set.len()).collect();
        for chunk in indices.chunks(250) {
            let probabilities = softmax(model.logits(inputs.of::<B>(chunk, device)?), 1)
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .map_err(|e| TrainError::Usage(format!("reading probabilities: {e:?}")))?;
            for row in probabilities.chunks(classes) {
                let mut ranked: Vec<(usize, f64)> = row.iter().copied().enumerate().collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
                out.push(
                    ranked
                        .into_iter()
                        .take(top)
                        .map(|(c, p)| Guess {
                            class: card.class_names[c].clone(),
                            probability: p,
                        })
                        .collect(),
                );
            }
        }
        Ok(out)
    }
}

/// The model's input as an image folder's [`InputShape`].
pub fn input_shape(card: &ModelCard) -> InputShape {
    InputShape {
        channels: card.input[0],
        size: card.input[1],
    }
}

/// The labelled test set of `dataset` in `data_dir` (its default place if `None`) for the
/// model of `card`: Fashion-MNIST's or CIFAR-10's test files, or an image folder's `test/`
/// (or `data_dir` itself if it has no `test/`), labelled by the card's class names.
pub fn test_set(card: &ModelCard, dataset: Dataset, data_dir: Option<&Path>) -> Result<ImageSet> {
    let set = match dataset {
        Dataset::FashionMnist => in_card_order(
            card,
            read_fashion_mnist(data_dir.unwrap_or(Path::new(FASHION_MNIST_DIR)))?,
        )?,
        Dataset::Cifar10 => in_card_order(
            card,
            read_cifar10(data_dir.unwrap_or(Path::new("data/cifar-10-batches-bin")))?,
        )?,
        Dataset::ImageFolder => {
            let dir = data_dir.ok_or_else(|| {
                TrainError::Usage("--dataset image-folder needs --data-dir DIR".into())
            })?;
            let test: PathBuf = dir.join("test");
            let split = if test.is_dir() {
                test
            } else {
                dir.to_path_buf()
            };
            read_image_folder_split(&split, &card.class_names, input_shape(card))?
        }
    };
    if set.classes != card.classes() {
        return Err(TrainError::Usage(format!(
            "the model has {} classes, the {dataset:?} test set {}",
            card.classes(),
            set.classes
        )));
    }
    if set.shape[0] != card.input[0] || set.shape[1] > card.input[1] {
        return Err(TrainError::Usage(format!(
            "the model takes {:?} images, the test set has {:?}",
            card.input, set.shape
        )));
    }
    if set.is_empty() {
        return Err(TrainError::Usage("the test set has no images".into()));
    }
    Ok(set)
}

/// The test set of `split` labelled in the model's class order: a model trained on an image
/// folder of the same classes orders them by folder name. Classes the model does not have are
/// an error, never a silently wrong score.
fn in_card_order(card: &ModelCard, split: Split) -> Result<ImageSet> {
    let mut test = split.test;
    if split.class_names == card.class_names {
        return Ok(test);
    }
    let to_card: Vec<Option<usize>> = split
        .class_names
        .iter()
        .map(|name| card.class_names.iter().position(|c| c == name))
        .collect();
    if to_card.iter().any(Option::is_none) || card.classes() != split.class_names.len() {
        return Err(TrainError::Usage(format!(
            "the model's classes ({}) are not the dataset's ({})",
            card.class_names.join(", "),
            split.class_names.join(", ")
        )));
    }
    for label in &mut test.labels {
        *label = to_card[*label as usize].map_or(*label, |c| c as u8);
    }
    Ok(test)
}

/// `paths` as a set of images for the model of `card` (resized to its input; any size).
pub fn images(card: &ModelCard, paths: &[PathBuf]) -> Result<ImageSet> {
    let input = input_shape(card);
    let mut pixels = Vec::new();
    for path in paths {
        pixels.extend(load_image(path, input)?);
    }
    ImageSet::new(
        pixels,
        vec![0; paths.len()],
        card.input,
        card.classes(),
        Path::new("images"),
    )
}

/// Work that runs on whichever backend the user picked.
pub trait OnBackend {
    /// The result.
    type Output;
    /// Does it on `device` of backend `B`.
    fn run<B: Backend>(self, device: B::Device) -> Result<Self::Output>;
}

/// Runs `task` on `choice`'s backend (wgpu and CUDA need a build with their feature).
pub fn on_device<T: OnBackend>(choice: crate::train::DeviceChoice, task: T) -> Result<T::Output> {
    use crate::train::DeviceChoice;
    match choice {
        DeviceChoice::Cpu => task.run::<burn::backend::Flex>(Default::default()),
        #[cfg(feature = "wgpu")]
        DeviceChoice::Wgpu => {
            eprintln!("wgpu adapter: {}", dp_core::device::init_wgpu()?);
            task.run::<dp_core::device::Wgpu>(Default::default())
        }
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda => {
            dp_core::device::check_cuda(0)?;
            task.run::<burn::backend::Cuda>(burn::backend::cuda::CudaDevice::new(0))
        }
        #[allow(unreachable_patterns)]
        other => Err(TrainError::Usage(format!(
            "--device {other:?} needs a build with its feature: cargo run --release --features \
             {} -p examples --bin …",
            format!("{other:?}").to_lowercase()
        ))),
    }
}

/// One line on what a released model is and cost, for the programs' output.
pub fn describe(card: &ModelCard) -> String {
    let model = match card.model {
        ModelKind::TanhCnn => "tanh CNN".to_string(),
        ModelKind::WideResNet { depth, width } => format!("WRN-{depth}-{width}"),
        ModelKind::NfNet => format!("NFNet-{:?}", card.nfnet_variant.unwrap_or(NfNetVariant::F0)),
        ModelKind::ScatterNet { head, .. } => format!("ScatterNet + {head:?} head"),
    };
    format!(
        "{model} ({} weights, input {}×{}×{}, {} classes), trained privately with (ε, δ) = ({:.4}, {}) by the {} accountant (preset {})",
        card.weights,
        card.input[0],
        card.input[1],
        card.input[2],
        card.classes(),
        card.epsilon,
        card.delta,
        card.accountant,
        card.preset
    )
}

/// The warning for a model of a seeded run.
pub const SEEDED_MODEL_WARNING: &str = "warning: this model comes from a run with --seed: its \
noise is reproducible by anyone who knows the seed, so it is not a private release";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model_card::CARD_VERSION;

    fn card(names: &[&str]) -> ModelCard {
        ModelCard {
            format_version: CARD_VERSION,
            model: ModelKind::TanhCnn,
            nfnet_variant: None,
            input: [1, 2, 2],
            normalization: vec![(0.0, 1.0)],
            class_names: names.iter().map(|n| n.to_string()).collect(),
            dataset: Dataset::ImageFolder,
            preset: "p".into(),
            epsilon: 1.0,
            delta: 1e-5,
            accountant: "pld".into(),
            seeded: false,
            weights: "current".into(),
        }
    }

    fn split(names: &[&str], labels: Vec<u8>) -> Split {
        let n = labels.len();
        let set = ImageSet::new(
            vec![0; 4 * n],
            labels,
            [1, 2, 2],
            names.len(),
            Path::new("t"),
        )
        .unwrap();
        Split {
            train: set.clone(),
            test: set,
            class_names: names.iter().map(|n| n.to_string()).collect(),
            features: None,
        }
    }

    #[test]
    fn a_dataset_is_scored_in_the_models_class_order_or_refused() {
        let data = split(&["shirt", "bag", "coat"], vec![0, 1, 2, 2]);
        // A model trained on a folder of the same classes has them in name order.
        let test = in_card_order(&card(&["bag", "coat", "shirt"]), data.clone()).unwrap();
        assert_eq!(test.labels, [2, 0, 1, 1]);
        let same = in_card_order(&card(&["shirt", "bag", "coat"]), data.clone()).unwrap();
        assert_eq!(same.labels, [0, 1, 2, 2]);
        let err = in_card_order(&card(&["bag", "coat", "T-shirt"]), data.clone()).unwrap_err();
        assert!(err.to_string().contains("not the dataset's"), "{err}");
        assert!(in_card_order(&card(&["bag", "coat"]), data).is_err());
    }
}
