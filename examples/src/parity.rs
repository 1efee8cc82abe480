//! One seeded private step of the Tramèr–Boneh CNN on the CPU and on CUDA from identical
//! weights, data and noise; the largest difference of the updated parameters must be within
//! 1e-4 of the largest parameter. Needs `--features cuda` and a GPU (`scripts/gpu-check.sh`).

use burn::module::Module;
use burn::optim::SgdConfig;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};
use dp_accountant::{AccountantConfig, AccountantKind, NeighboringRelation};
use dp_core::loss::cross_entropy_per_row;
use dp_core::noise::GaussianNoise;
use dp_core::params::param_infos;
use dp_core::sampler::{FixedSizeSampler, Sampler};
use dp_core::{DpOptimizer, DpSgdConfig};
use dp_models::TanhCnn;

const BATCH: usize = 16;

fn weights<B: AutodiffBackend>(model: &TanhCnn<B>) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl<B: burn::tensor::backend::Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .unwrap_or_default(),
            );
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

fn one_step<B: AutodiffBackend>(device: &B::Device, record: Vec<u8>) -> dp_core::Result<Vec<f32>> {
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let loaded = Recorder::<B>::load(&recorder, record, device)
        .map_err(|e| dp_core::DpError::Shape(format!("record: {e}")))?;
    let model = TanhCnn::<B>::new(10, device)
        .map_err(|e| dp_core::DpError::Shape(e.to_string()))?
        .load_record(loaded);
    let pixels: Vec<f32> = (0..BATCH * 784)
        .map(|i| ((i * 7919 % 1000) as f32) / 500.0 - 1.0)
        .collect();
    let labels: Vec<i64> = (0..BATCH).map(|i| (i % 10) as i64).collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [BATCH, 1, 28, 28]), device);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [BATCH]), device);
    let accountant = AccountantConfig::default_for(AccountantKind::Rdp)
        .build(NeighboringRelation::ReplaceOne)?;
    let mut opt = DpOptimizer::new(
        &model,
        SgdConfig::new().init::<B, TanhCnn<B>>(),
        DpSgdConfig::new(1.0, 0.5),
        accountant,
    )?
    .with_noise(GaussianNoise::seeded(7));
    let batch = FixedSizeSampler::seeded(BATCH as u64, BATCH as u64, 0)?.next_batch();
    let mut step = opt.begin_step(&batch)?;
    opt.accumulate(&mut step, &model, BATCH, |m, r| {
        cross_entropy_per_row(m.forward(x.clone().slice(r.clone())), y.clone().slice(r))
    })?;
    let model = opt.finish_step(step, model, 0.5)?;
    let _ = param_infos(&model);
    Ok(weights(&model))
}

/// Runs the check, prints one JSON line, returns whether it passed.
pub fn run() -> dp_core::Result<bool> {
    type Cpu = burn::backend::Autodiff<dp_core::device::Cpu>;
    let cpu_device = Default::default();
    <Cpu as burn::tensor::backend::Backend>::seed(&cpu_device, 1);
    let initial =
        TanhCnn::<Cpu>::new(10, &cpu_device).map_err(|e| dp_core::DpError::Shape(e.to_string()))?;
    let recorder = NamedMpkBytesRecorder::<FullPrecisionSettings>::default();
    let record = Recorder::<Cpu>::record(&recorder, initial.into_record(), ())
        .map_err(|e| dp_core::DpError::Shape(format!("record: {e}")))?;
    let on_cpu = one_step::<Cpu>(&cpu_device, record.clone())?;
    let on_gpu = gpu_step(record)?;
    let scale = on_cpu.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let max_abs = on_cpu
        .iter()
        .zip(&on_gpu)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let pass = on_cpu.len() == on_gpu.len() && max_abs / scale <= 1e-4;
    println!(
        "{}",
        serde_json::json!({"check": "cpu-vs-cuda private step", "params": on_cpu.len(),
            "max_abs_diff": max_abs, "max_rel_diff": max_abs / scale, "tolerance": 1e-4, "pass": pass})
    );
    Ok(pass)
}

#[cfg(feature = "cuda")]
fn gpu_step(record: Vec<u8>) -> dp_core::Result<Vec<f32>> {
    dp_core::device::check_cuda(0)?;
    let device = burn::backend::cuda::CudaDevice::new(0);
    one_step::<burn::backend::Autodiff<burn::backend::Cuda>>(&device, record)
}

#[cfg(not(feature = "cuda"))]
fn gpu_step(_: Vec<u8>) -> dp_core::Result<Vec<f32>> {
    dp_core::device::check_cuda(0).map(|_| Vec::new())
}
