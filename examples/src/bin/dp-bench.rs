//! `dp-bench`: the cost of a private step against a non-private one, side by side.
//!
//! `cargo run --release -p examples --bin dp-bench -- --model fmnist-cnn --batch 256 --json`
//! times, interleaved in one process after warm-up, the median non-private step, private step
//! (fast path) and naive step (batch-of-one), and prints one JSON object per line, with the
//! device-to-host reads dp-core made in a private step (one micro-batch: 1, the norms).
//! `--mode nonprivate|private` runs one kind alone and adds the process's peak memory;
//! `--views K` times augmentation multiplicity K (K views per example, K·batch rows);
//! `--mode check` compares the fast per-example path with the batch-of-one oracle on the
//! device, case by case (see `examples::check`), and exits 1 if any case fails.

use burn::optim::SgdConfig;
use burn::tensor::backend::AutodiffBackend;
use clap::{Parser, ValueEnum};
use dp_core::PerExampleEngine;
use dp_models::TanhCnn;
use dp_models::{NfNetConfig, WideResNetConfig};
use examples::bench::{self, Batch, BenchModel};
use examples::bench_parallel::{time_group, Transport};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "dp-bench",
    about = "Private vs non-private step time and memory"
)]
struct Args {
    /// Model to time.
    #[arg(long, value_enum, default_value_t = ModelArg::FmnistCnn)]
    model: ModelArg,
    /// Batch size (examples per step).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Augmentation multiplicity K: views per example (the non-private step sees all K·batch
    /// rows).
    #[arg(long, default_value_t = 1)]
    views: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    device: DeviceArg,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// Timed iterations (after warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Warm-up iterations.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed iterations of the naive batch-of-one step (0 to skip it).
    #[arg(long, default_value_t = 3)]
    naive_iters: usize,
    /// Also time a private step with this many canaries trained alongside (the privacy
    /// audit's cost; 1% of the examples are canaries), side by side with the plain one.
    #[arg(long, default_value_t = 0)]
    audit: usize,
    /// Peers of `--mode parallel` (threads of this process, on the device).
    #[arg(long, default_value_t = 2)]
    peers: usize,
    /// The group of `--mode parallel`.
    #[arg(long, value_enum, default_value_t = Transport::Local)]
    transport: Transport,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum ModelArg {
    /// Tramèr & Boneh's CNN, 1×28×28.
    FmnistCnn,
    /// WRN-16-4, 3×32×32.
    #[value(name = "wrn16-4")]
    Wrn16_4,
    /// NFNet-F0 structure at tiny widths, 3×32×32.
    NfnetF0Tiny,
    /// NFNet-F0 (71.5 M parameters), 3×224×224.
    NfnetF0,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum DeviceArg {
    Cpu,
    Cuda,
    /// burn's wgpu backend (Vulkan, Metal, DX12).
    Wgpu,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Mode {
    Both,
    Nonprivate,
    Private,
    /// The fast per-example path against the batch-of-one oracle on the device.
    Check,
    /// A data-parallel private step (--peers, --transport) against a one-device one, and the
    /// all-reduce's share of it.
    Parallel,
}

fn model_name(m: ModelArg) -> &'static str {
    match m {
        ModelArg::FmnistCnn => "fmnist-cnn",
        ModelArg::Wrn16_4 => "wrn16-4",
        ModelArg::NfnetF0Tiny => "nfnet-f0-tiny",
        ModelArg::NfnetF0 => "nfnet-f0",
    }
}

fn run<B: AutodiffBackend>(
    args: &Args,
    device: B::Device,
    device_name: &str,
) -> Result<String, String> {
    let e = |err: dp_models::ModelError| err.to_string();
    if args.mode == Mode::Check {
        return check::<B>(args, &device, device_name);
    }
    if args.mode == Mode::Parallel {
        return parallel::<B>(args, &device, device_name);
    }
    let result = match args.model {
        ModelArg::FmnistCnn => {
            let model = TanhCnn::<B>::new(10, &device).map_err(e)?;
            time(args, model, [1, 28, 28], device, device_name)
        }
        ModelArg::Wrn16_4 => {
            let model = WideResNetConfig::new(16, 4, 10)
                .init::<B>(&device)
                .map_err(e)?;
            time(args, model, [3, 32, 32], device, device_name)
        }
        ModelArg::NfnetF0Tiny => {
            let model = NfNetConfig::tiny().init::<B>(&device).map_err(e)?;
            time(args, model, [3, 32, 32], device, device_name)
        }
        ModelArg::NfnetF0 => {
            let model = NfNetConfig::f0().init::<B>(&device).map_err(e)?;
            time(args, model, [3, 224, 224], device, device_name)
        }
    };
    result.map_err(|err| err.to_string())
}

/// [`time_group`] with the batch, input shape, peers and transport of `group`.
fn time_group_of<B, M>(
    make: impl Fn(&B::Device) -> Result<M, dp_models::ModelError> + Sync,
    group: (usize, [usize; 3], usize, Transport),
    args: &Args,
    device: &B::Device,
) -> dp_core::Result<examples::bench_parallel::GroupTiming>
where
    B: AutodiffBackend,
    M: BenchModel<B>,
{
    let (batch, shape, peers, transport) = group;
    time_group::<B, M>(
        make,
        batch,
        shape,
        peers,
        transport,
        args.warmup,
        args.iters,
        device,
    )
}

/// `--mode parallel`: one JSON object.
fn parallel<B: AutodiffBackend>(
    args: &Args,
    device: &B::Device,
    device_name: &str,
) -> Result<String, String> {
    let group = |shape: [usize; 3]| (args.batch, shape, args.peers, args.transport);
    let timing = match args.model {
        ModelArg::FmnistCnn => time_group_of::<B, _>(
            |d| TanhCnn::<B>::new(10, d),
            group([1, 28, 28]),
            args,
            device,
        ),
        ModelArg::Wrn16_4 => time_group_of::<B, _>(
            |d| WideResNetConfig::new(16, 4, 10).init::<B>(d),
            group([3, 32, 32]),
            args,
            device,
        ),
        ModelArg::NfnetF0Tiny => time_group_of::<B, _>(
            |d| NfNetConfig::tiny().init::<B>(d),
            group([3, 32, 32]),
            args,
            device,
        ),
        ModelArg::NfnetF0 => time_group_of::<B, _>(
            |d| NfNetConfig::f0().init::<B>(d),
            group([3, 224, 224]),
            args,
            device,
        ),
    }
    .map_err(|e| e.to_string())?;
    let mut out = json!(timing);
    out["model"] = json!(model_name(args.model));
    out["batch"] = json!(args.batch);
    out["device"] = json!(device_name);
    out["mode"] = json!("parallel");
    Ok(if args.json {
        out.to_string()
    } else {
        serde_json::to_string_pretty(&out).unwrap_or_default()
    })
}

/// `--mode check`: the table, or JSON lines; an error if any case failed.
fn check<B: AutodiffBackend>(
    args: &Args,
    device: &B::Device,
    device_name: &str,
) -> Result<String, String> {
    eprintln!("fast path vs batch-of-one oracle on {device_name}:");
    let rows = examples::check::run::<B>(device).map_err(|e| e.to_string())?;
    let failed = rows.iter().filter(|r| !r.pass).count();
    let text = if args.json {
        rows.iter()
            .map(|r| {
                let mut v = json!(r);
                v["device"] = json!(device_name);
                v["tolerance"] = json!(examples::check::TOLERANCE);
                v.to_string()
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        let mut t = format!(
            "| case ({device_name}) | examples | norm error | sum error | pass |\n|---|---|---|---|---|\n"
        );
        for r in &rows {
            t += &format!(
                "| {} | {} | {:.1e} | {:.1e} | {} |\n",
                r.case,
                r.examples,
                r.norm_error,
                r.sum_error,
                if r.pass { "yes" } else { "**no**" }
            );
        }
        t.trim_end().to_string()
    };
    if failed > 0 {
        dp_accountant::cli::print_stdout(&text);
        return Err(format!(
            "{failed} of {} cases beyond the tolerance {:e}",
            rows.len(),
            examples::check::TOLERANCE
        ));
    }
    Ok(text)
}

fn time<B, M>(
    args: &Args,
    model: M,
    shape: [usize; 3],
    device: B::Device,
    device_name: &str,
) -> dp_core::Result<String>
where
    B: AutodiffBackend,
    M: BenchModel<B> + burn::module::ModuleDisplay,
    M::InnerModule: burn::module::ModuleDisplay,
{
    let batch = Batch::<B>::random(args.batch * args.views, shape, 10, &device);
    let mut nonprivate_optim = SgdConfig::new().init::<B, M>();
    let mut private_optim = bench::private_optimizer(&model, PerExampleEngine::Fast, args.views)?;
    let mut naive_optim =
        bench::private_optimizer(&model, PerExampleEngine::BatchOfOne, args.views)?;
    let mut sampler = bench::sampler(args.batch)?;
    let (mut np_times, mut p_times, mut naive_times) = (Vec::new(), Vec::new(), Vec::new());
    // The audited model: a copy of the model with the canary block beside it.
    let (mut audit_model, mut audit_optim, mut audit_rows) = (None, None, None);
    if args.audit > 0 && args.mode != Mode::Nonprivate {
        let audited = dp_core::audit::Audited {
            model: model.clone(),
            block: dp_core::audit::canary_block::<B>(args.audit, &device),
        };
        // The white-box audit reads the block's released gradient every step: watch it.
        let mut optim = bench::private_optimizer(&audited, PerExampleEngine::Fast, args.views)?;
        optim.watch(audited.block.weight.id);
        audit_optim = Some(optim);
        audit_rows = Some(bench::canary_rows::<B>(
            args.batch, args.views, args.audit, &device,
        )?);
        audit_model = Some(audited);
    }
    let mut audit_times = Vec::new();
    // Device-to-host reads dp-core makes in one private step (the most over the timed steps).
    let mut reads_per_step = 0;
    let mut model = model;
    for i in 0..args.warmup + args.iters {
        let timed = i >= args.warmup;
        if args.mode != Mode::Private {
            let (m, ms) = bench::time_ms::<B, _>(&device, || {
                bench::nonprivate_step(model, &mut nonprivate_optim, &batch)
            });
            model = m;
            if timed {
                np_times.push(ms);
            }
        }
        if args.mode != Mode::Nonprivate {
            let reads = dp_core::readback::host_reads();
            let (m, ms) = bench::time_ms::<B, _>(&device, || {
                bench::private_step(model, &mut private_optim, &mut sampler, &batch)
            });
            model = m?;
            if timed {
                p_times.push(ms);
                reads_per_step = reads_per_step.max(dp_core::readback::host_reads() - reads);
            }
        }
        if let (Some(optim), Some(rows), Some(audited)) = (
            audit_optim.as_mut(),
            audit_rows.as_ref(),
            audit_model.take(),
        ) {
            let (m, ms) = bench::time_ms::<B, _>(&device, || {
                bench::audited_private_step(audited, optim, &mut sampler, &batch, rows)
            });
            audit_model = Some(m?);
            if timed {
                audit_times.push(ms);
            }
        }
        if args.mode == Mode::Both
            && (i < args.warmup.min(1) || (timed && naive_times.len() < args.naive_iters))
        {
            let (m, ms) = bench::time_ms::<B, _>(&device, || {
                bench::private_step(model, &mut naive_optim, &mut sampler, &batch)
            });
            model = m?;
            if timed {
                naive_times.push(ms);
            }
        }
    }
    let mut out = json!({"model": model_name(args.model), "batch": args.batch, "views": args.views, "device": device_name, "mode": format!("{:?}", args.mode).to_lowercase()});
    let np = (!np_times.is_empty()).then(|| bench::median(&mut np_times));
    let p = (!p_times.is_empty()).then(|| bench::median(&mut p_times));
    let naive = (!naive_times.is_empty()).then(|| bench::median(&mut naive_times));
    if let Some(np) = np {
        out["nonprivate_ms"] = json!(np);
    }
    if let Some(p) = p {
        out["private_ms"] = json!(p);
        out["host_reads_per_private_step"] = json!(reads_per_step);
    }
    if let (Some(np), Some(p)) = (np, p) {
        out["ratio"] = json!(p / np);
    }
    if !audit_times.is_empty() {
        let audited = bench::median(&mut audit_times);
        out["audit_canaries"] = json!(args.audit);
        out["audited_private_ms"] = json!(audited);
        if let Some(p) = p {
            out["audit_overhead"] = json!(audited / p);
        }
    }
    if let (Some(np), Some(naive)) = (np, naive) {
        out["naive_ms"] = json!(naive);
        out["naive_ratio"] = json!(naive / np);
    }
    if args.mode != Mode::Both {
        out["peak_rss_mib"] = json!(examples::rss::peak_rss_mib());
    }
    Ok(if args.json {
        out.to_string()
    } else {
        serde_json::to_string_pretty(&out).unwrap_or_default()
    })
}

fn main() -> std::process::ExitCode {
    let args: Args = match dp_accountant::cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let result = match args.device {
        DeviceArg::Cpu => {
            run::<burn::backend::Autodiff<dp_core::device::Cpu>>(&args, Default::default(), "cpu")
        }
        DeviceArg::Cuda => cuda(&args),
        DeviceArg::Wgpu => wgpu(&args),
    };
    match result {
        Ok(text) => dp_accountant::cli::print_stdout(&text),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda(args: &Args) -> Result<String, String> {
    dp_core::device::check_cuda(0).map_err(|e| e.to_string())?;
    run::<burn::backend::Autodiff<burn::backend::Cuda>>(
        args,
        burn::backend::cuda::CudaDevice::new(0),
        "cuda",
    )
}

#[cfg(feature = "wgpu")]
fn wgpu(args: &Args) -> Result<String, String> {
    let adapter = dp_core::device::init_wgpu().map_err(|e| e.to_string())?;
    eprintln!("wgpu adapter: {adapter}");
    run::<burn::backend::Autodiff<dp_core::device::Wgpu>>(args, Default::default(), "wgpu")
}

#[cfg(not(feature = "wgpu"))]
fn wgpu(_: &Args) -> Result<String, String> {
    dp_core::device::init_wgpu().map_err(|e| e.to_string())?;
    Err("--device wgpu needs a build with --features wgpu".into())
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: &Args) -> Result<String, String> {
    dp_core::device::check_cuda(0).map_err(|e| e.to_string())?;
    Err("--device cuda needs a build with --features cuda".into())
}
