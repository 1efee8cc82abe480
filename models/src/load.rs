//! Loading pretrained weights from safetensors files.
//!
//! Two key layouts: [`KeyLayout::Timm`], the state dict of timm's `dm_nfnet_f*` models
//! (PyTorch layouts: linear weights `[out, in]`, weight-standardization gains
//! `[C, 1, 1, 1]`, SkipInit gains as scalars), and [`KeyLayout::Native`], this crate's
//! parameter paths and shapes as they are (documented on each model, e.g. [`crate::wrn`]).

use crate::error::{ModelError, Result};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dp_core::params::param_infos;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How file keys and shapes relate to this crate's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLayout {
    /// timm's NFNet state dict.
    Timm,
    /// This crate's parameter paths and shapes.
    Native,
}

/// How a file tensor becomes a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transform {
    /// Same element order; only the shape may differ in size-1 axes.
    Reshape,
    /// A 2-D transpose (PyTorch linear `[out, in]` → `[in, out]`).
    Transpose,
}

/// The file key and transform of the parameter at `path` with shape `dims`.
fn file_key(path: &str, dims: &[usize], layout: KeyLayout) -> (String, Transform) {
    match layout {
        KeyLayout::Native => (path.to_string(), Transform::Reshape),
        KeyLayout::Timm => {
            let key = path
                .strip_suffix(".skipinit_gain.gain")
                .map(|p| format!("{p}.skipinit_gain"))
                .unwrap_or_else(|| path.to_string());
            let transform = if dims.len() == 2 && path.ends_with(".weight") {
                Transform::Transpose
            } else {
                Transform::Reshape
            };
            (key, transform)
        }
    }
}

/// The shape a parameter of `dims` has in the file.
fn file_shape(dims: &[usize], transform: Transform) -> Vec<usize> {
    match transform {
        Transform::Transpose => vec![dims[1], dims[0]],
        Transform::Reshape => dims.to_vec(),
    }
}

fn numel(dims: &[usize]) -> usize {
    dims.iter().product()
}

fn to_f32(view: &safetensors::tensor::TensorView<'_>) -> std::result::Result<Vec<f32>, String> {
    let bytes = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect()),
        other => Err(format!("dtype {other:?} (F32 or F64 expected)")),
    }
}

struct Replace<B: Backend> {
    path: Vec<String>,
    values: HashMap<String, (Vec<f32>, Transform)>,
    device: B::Device,
}

impl<B: Backend> ModuleMapper<B> for Replace<B> {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join(".");
        let Some((values, transform)) = self.values.remove(&path) else {
            return param;
        };
        let (id, old, mapper) = param.consume();
        let dims = old.dims();
        let data = match transform {
            Transform::Reshape => TensorData::new(values, dims),
            Transform::Transpose => {
                let (rows, cols) = (dims[1], dims[0]); // file [out, in] = [dims[1], dims[0]]
                let mut t = vec![0.0f32; values.len()];
                for r in 0..rows {
                    for c in 0..cols {
                        t[c * rows + r] = values[r * cols + c];
                    }
                }
                TensorData::new(t, dims)
            }
        };
        let new =
            Tensor::<B, D>::from_data(data, &self.device).set_require_grad(old.is_require_grad());
        Param::from_mapped_value(id, new, mapper)
    }
}

/// Loads the weights of `model` from the safetensors file at `path`.
///
/// Every parameter must be in the file with a matching shape, and every file tensor must
/// belong to a parameter; otherwise one [`ModelError::Mismatch`] lists all missing,
/// unexpected and mis-shaped keys, and nothing is loaded.
pub fn load_safetensors<B: Backend, M: Module<B>>(
    model: M,
    path: impl AsRef<Path>,
    layout: KeyLayout,
    device: &B::Device,
) -> Result<M> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| ModelError::Checkpoint {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    load_safetensors_bytes(model, &bytes, path, layout, device)
}

/// Loads the weights of `model` from the bytes of a safetensors file; errors name `source`.
///
/// The same checks as [`load_safetensors`].
///
/// ```
/// use burn::backend::Flex;
/// use dp_models::load::{load_safetensors_bytes, KeyLayout};
/// let model = dp_models::TanhCnn::<Flex>::new(10, &Default::default())?;
/// let err = load_safetensors_bytes(model, b"not safetensors", "mem".as_ref(), KeyLayout::Native,
///     &Default::default()).unwrap_err();
/// assert!(err.to_string().starts_with("mem: not a safetensors file"));
/// # Ok::<(), dp_models::ModelError>(())
/// ```
pub fn load_safetensors_bytes<B: Backend, M: Module<B>>(
    model: M,
    bytes: &[u8],
    source: &Path,
    layout: KeyLayout,
    device: &B::Device,
) -> Result<M> {
    let path = source;
    let fail = |reason: String| ModelError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    let mut file_keys: BTreeMap<String, Vec<usize>> = file
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.shape().to_vec()))
        .collect();
    let (mut missing, mut mis_shaped) = (Vec::new(), Vec::new());
    let mut values = HashMap::new();
    for info in param_infos(&model) {
        let (key, transform) = file_key(&info.path, &info.dims, layout);
        let Some(shape) = file_keys.remove(&key) else {
            missing.push(key);
            continue;
        };
        let expected = file_shape(&info.dims, transform);
        let same = match transform {
            Transform::Transpose => shape == expected,
            Transform::Reshape => {
                numel(&shape) == numel(&expected)
                    && shape
                        .iter()
                        .filter(|&&d| d != 1)
                        .eq(expected.iter().filter(|&&d| d != 1))
            }
        };
        if !same {
            mis_shaped.push(format!("{key}: file {shape:?} vs model {expected:?}"));
            continue;
        }
        let view = file.tensor(&key).map_err(|e| fail(format!("{key}: {e}")))?;
        let data = to_f32(&view).map_err(|e| fail(format!("{key}: {e}")))?;
        values.insert(info.path, (data, transform));
    }
    let unexpected: Vec<String> = file_keys.into_keys().collect();
    if !(missing.is_empty() && unexpected.is_empty() && mis_shaped.is_empty()) {
        return Err(ModelError::Mismatch {
            path: path.display().to_string(),
            missing,
            unexpected,
            mis_shaped,
        });
    }
    Ok(model.map(&mut Replace::<B> {
        path: Vec::new(),
        values,
        device: device.clone(),
    }))
}

/// Saves `model`'s parameters in the [`KeyLayout::Native`] layout (f32).
pub fn save_safetensors<B: Backend, M: Module<B>>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    save_safetensors_with_metadata(model, path, None)
}

/// The text metadata (`__metadata__`) of the safetensors file at `path` (empty if it has none).
pub fn read_safetensors_metadata(
    path: impl AsRef<Path>,
) -> Result<std::collections::HashMap<String, String>> {
    let path = path.as_ref();
    let fail = |reason: String| ModelError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    Ok(metadata.metadata().clone().unwrap_or_default())
}

/// [`save_safetensors`] with text `metadata` in the file's `__metadata__` (read back with
/// [`read_safetensors_metadata`]).
///
/// ```
/// use burn::backend::Flex;
/// use dp_models::load::{read_safetensors_metadata, save_safetensors_with_metadata};
/// let model = dp_models::TanhCnn::<Flex>::new(10, &Default::default())?;
/// let path = std::env::temp_dir().join(format!("card-{}.safetensors", std::process::id()));
/// let card = [("card".to_string(), "{}".to_string())].into_iter().collect();
/// save_safetensors_with_metadata(&model, &path, Some(card))?;
/// assert_eq!(read_safetensors_metadata(&path)?["card"], "{}");
/// std::fs::remove_file(&path).unwrap();
/// # Ok::<(), dp_models::ModelError>(())
/// ```
pub fn save_safetensors_with_metadata<B: Backend, M: Module<B>>(
    model: &M,
    path: impl AsRef<Path>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let fail = |reason: String| ModelError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    struct Collect<B: Backend> {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>, Vec<u8>)>,
        _b: std::marker::PhantomData<B>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect<B> {
        fn enter_module(&mut self, name: &str, _c: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _n: &str, _c: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let value = param.val();
            let dims = value.dims().to_vec();
            let data: Vec<f32> = value
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap_or_default();
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.out.push((self.path.join("."), dims, bytes));
        }
    }
    let mut collect = Collect::<B> {
        path: Vec::new(),
        out: Vec::new(),
        _b: std::marker::PhantomData,
    };
    model.visit(&mut collect);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = collect
        .out
        .iter()
        .map(|(name, dims, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, dims.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| fail(e.to_string()))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, bytes).map_err(|e| fail(e.to_string()))
}
