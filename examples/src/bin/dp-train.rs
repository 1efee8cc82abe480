//! `dp-train`: private training from a preset, with progress, reports and resumable runs.
//!
//! ```text
//! cargo run --release -p examples --bin dp-train -- --preset fmnist-cnn-eps3 --out runs/fmnist
//! cargo run --release -p examples --bin dp-train -- --out runs/fmnist --resume
//! cargo run --release -p examples --bin dp-train -- --list-presets
//! ```
//!
//! Exit codes: 0 on success, 2 on bad input (one line on stderr: a flag, a missing or
//! malformed data, checkpoint or journal file, a run directory that cannot be used, a missing
//! device), 1 on other failures.

use clap::Parser;
use dp_accountant::audit::AuditMethod;
use dp_accountant::AccountantKind;
use dp_core::collective::{JobSecret, Orchestrator};
use examples::error::TrainError;
use examples::presets::{preset, presets, Dataset};
use examples::train::{
    follow_node, train, DeviceChoice, Devices, ModelChoice, NetworkOptions, NfNetVariant, Outcome,
    Overrides, RunConfig, TrainOptions,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dp-train",
    about = "Differentially private training (DP-SGD) from a preset",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Recipe (see --list-presets).
    #[arg(long)]
    preset: Option<String>,
    /// List the presets and the ε of each full run, then exit.
    #[arg(long)]
    list_presets: bool,
    /// Run directory (default runs/PRESET); must be new or empty unless --resume.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the interrupted run in --out with its saved settings.
    #[arg(long)]
    resume: bool,
    /// Directory of the dataset files (for image-folder: DIR/train/CLASS/*.png|jpg and
    /// DIR/test/CLASS/*).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Dataset (default: the preset's): fashion-mnist, cifar10, or image-folder (your own
    /// images, resized to the model's input; class names from the folder names).
    #[arg(long, value_enum)]
    dataset: Option<Dataset>,
    /// Architecture, for data no preset fits: cnn, wrn16-4, wrn40-4 (any wrnDEPTH-WIDTH) or
    /// nfnet-f0 … nfnet-f3 (pretrained, with --checkpoint). Without --preset the recipe is
    /// the model's preset (fmnist-cnn-eps3, cifar10-wrn16-4-eps8, nfnet-finetune).
    #[arg(long, value_parser = parse_model)]
    model: Option<ModelChoice>,
    /// Input normalization constants: mean,std for every channel, or C means then C stds
    /// (default: the preset's, or ImageNet's for a pretrained NFNet on an image folder).
    /// Never compute them from the private training images: they are not noised.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    normalize: Option<Vec<f32>>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu, conflicts_with = "devices")]
    device: DeviceChoice,
    /// Several devices of this machine, one data-parallel peer each: cpu:N (N peers on the
    /// CPU), cuda:I,J,… or wgpu:I,J,… (GPUs by index). Same result and ε as one device.
    #[arg(long, value_parser = parse_devices)]
    devices: Option<Devices>,
    /// Training length in epochs (steps = ⌈epochs·N/batch⌉).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    /// Training length in logical steps.
    #[arg(long)]
    steps: Option<u64>,
    /// Calibrate σ so the whole run spends at most this ε.
    #[arg(long, conflicts_with = "noise_multiplier")]
    target_epsilon: Option<f64>,
    /// Fix σ instead.
    #[arg(long)]
    noise_multiplier: Option<f64>,
    /// δ.
    #[arg(long)]
    delta: Option<f64>,
    /// Expected logical batch size (Poisson sampling rate = batch / N).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Examples per physical micro-batch (bounds memory).
    #[arg(long)]
    micro_batch: Option<usize>,
    /// Augmented views per example (K).
    #[arg(long)]
    augmult: Option<usize>,
    /// Learning rate.
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Decay μ of the parameters' moving average (De et al.'s warm-up; evaluated beside the
    /// trained weights, post-processing at no privacy cost); 0 turns it off.
    #[arg(long, value_name = "MU")]
    ema_decay: Option<f64>,
    /// Accountant charging the run: pld (the default: the tighter upper bound, so the same ε
    /// buys less noise) or rdp (as Opacus reports). The summary gives the other's ε beside it.
    #[arg(long, value_parser = parse_accountant)]
    accountant: Option<AccountantKind>,
    /// Seed for sampling, noise and augmentation (default: OS entropy; a seed makes the
    /// noise reproducible and is for experiments only).
    #[arg(long)]
    seed: Option<u64>,
    /// Steps between evaluations (default: one epoch).
    #[arg(long)]
    eval_every: Option<u64>,
    /// Hold out the last N training images and evaluate on them instead of the test set (to
    /// tune hyperparameters without looking at the test set; the run trains on the rest, and
    /// ε is charged for that smaller training set).
    #[arg(long, value_name = "N")]
    validation: Option<usize>,
    /// Pretrained NFNet weights (safetensors, timm layout) for nfnet-finetune.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Architecture of --checkpoint.
    #[arg(long, value_enum)]
    nfnet_variant: Option<NfNetVariant>,
    /// NFNet stages left trainable (0–4; the head always trains).
    #[arg(long)]
    trainable_stages: Option<usize>,
    /// Input resolution for fine-tuning (images are upsampled).
    #[arg(long)]
    resolution: Option<usize>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Stop after this many steps (checkpointed; continue later with --resume).
    #[arg(long)]
    pause_after: Option<u64>,
    /// Train M canaries alongside the data (each in with probability 1/2; default 1000) and
    /// report a lower bound on ε from them next to the claimed ε.
    #[arg(long, value_name = "M", num_args = 0..=1, default_missing_value = "1000")]
    audit: Option<usize>,
    /// Significance of the audit's bound (one minus its confidence).
    #[arg(long)]
    audit_significance: Option<f64>,
    /// How the audit's scores become a bound: fdp (Gaussian trade-off curve, tighter) or
    /// one-run ((ε, δ)-DP).
    #[arg(long, value_parser = parse_audit_method)]
    audit_method: Option<AuditMethod>,
    /// This process's rank in a group of processes on several machines (0 leads and takes
    /// the run's settings; the others take theirs from it).
    #[arg(long, requires_all = ["nodes", "orchestrator", "secret_file"])]
    node_rank: Option<usize>,
    /// The number of processes of the group.
    #[arg(long, requires = "node_rank")]
    nodes: Option<usize>,
    /// The group's orchestrator (HOST:PORT; see `dp-train orchestrator`).
    #[arg(long, requires = "node_rank")]
    orchestrator: Option<String>,
    /// The job's secret (made by `dp-train orchestrator`; copy it to every machine).
    #[arg(long, requires = "node_rank")]
    secret_file: Option<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Serve a group of dp-train processes on several machines: admits the peers that hold
    /// the job's secret, then sums their clipped gradients at every step. The peers exchange
    /// un-noised clipped sums, neither encrypted nor authenticated after admission: the
    /// machines and the network between them are the trust boundary (use a private network,
    /// a VPN or an SSH tunnel).
    Orchestrator {
        /// The address to listen on, HOST:PORT (only that address; 0.0.0.0 only if you name
        /// it).
        #[arg(long)]
        listen: String,
        /// The number of dp-train processes of the job.
        #[arg(long)]
        nodes: usize,
        /// The job's secret: made here (readable by its owner only) if the file does not exist.
        #[arg(long)]
        secret_file: PathBuf,
        /// Give up if not every process has joined within this many seconds.
        #[arg(long, default_value_t = 600)]
        admission_timeout: u64,
    },
}

fn orchestrate(
    listen: &str,
    nodes: usize,
    secret_file: &std::path::Path,
    admission_timeout: u64,
) -> Result<String, TrainError> {
    let secret = if secret_file.exists() {
        JobSecret::read(secret_file)?
    } else {
        let secret = JobSecret::create(secret_file)?;
        eprintln!(
            "wrote a new job secret to {}: copy it to every machine of the job (it admits them); keep it private",
            secret_file.display()
        );
        secret
    };
    let orchestrator = Orchestrator::bind(
        listen,
        nodes,
        secret,
        std::time::Duration::from_secs(admission_timeout),
    )?;
    eprintln!(
        "orchestrator listening on {} for {nodes} processes",
        orchestrator.local_addr()?
    );
    orchestrator.run(|line| eprintln!("{line}"))?;
    Ok("the job's processes all finished".into())
}

fn network_options(args: &Args) -> Option<NetworkOptions> {
    Some(NetworkOptions {
        orchestrator: args.orchestrator.clone()?,
        rank: args.node_rank?,
        nodes: args.nodes?,
        secret_file: args.secret_file.clone()?,
    })
}

fn parse_audit_method(s: &str) -> Result<AuditMethod, String> {
    s.parse()
        .map_err(|e: dp_accountant::AccountantError| e.to_string())
}

fn parse_model(s: &str) -> Result<ModelChoice, String> {
    s.parse()
}

fn parse_devices(s: &str) -> Result<Devices, String> {
    s.parse()
}

fn parse_accountant(s: &str) -> Result<AccountantKind, String> {
    s.parse()
        .map_err(|e: dp_accountant::AccountantError| e.to_string())
}

fn list() -> Result<String, TrainError> {
    let mut out = String::from(
        "preset                         model                 steps   σ        ε (full run, δ = 1e-5): PLD, RDP\n",
    );
    for p in presets() {
        let plan = p.full_run_plan()?;
        let rdp = examples::presets::epsilon_by(
            AccountantKind::Rdp,
            plan.sampling_rate,
            plan.noise_multiplier,
            plan.steps,
            plan.delta,
        );
        out += &format!(
            "{:<30} {:<21} {:>6}   {:<8.4} {:.4}, {}\n",
            p.name,
            match p.model {
                examples::presets::ModelKind::TanhCnn => "tanh-cnn".to_string(),
                examples::presets::ModelKind::WideResNet { depth, width } =>
                    format!("wrn-{depth}-{width}"),
                examples::presets::ModelKind::NfNet => "nfnet".to_string(),
                examples::presets::ModelKind::ScatterNet { head, channels } =>
                    format!("scatternet-{head:?}-{channels}ch").to_lowercase(),
            },
            plan.steps,
            plan.noise_multiplier,
            plan.epsilon,
            rdp.map_or("-".into(), |e| format!("{e:.4}")),
        );
    }
    Ok(out)
}

fn run(args: Args) -> Result<String, TrainError> {
    if let Some(Command::Orchestrator {
        listen,
        nodes,
        secret_file,
        admission_timeout,
    }) = &args.command
    {
        return orchestrate(listen, *nodes, secret_file, *admission_timeout);
    }
    if args.list_presets {
        return list();
    }
    let network = network_options(&args);
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        epochs: args.epochs,
        steps: args.steps,
        target_epsilon: args.target_epsilon,
        noise_multiplier: args.noise_multiplier,
        delta: args.delta,
        batch_size: args.batch_size,
        micro_batch: args.micro_batch,
        augmult: args.augmult,
        learning_rate: args.learning_rate,
        ema_decay: args.ema_decay,
        accountant: args.accountant,
        seed: args.seed,
        eval_every: args.eval_every,
        validation: args.validation,
        checkpoint: args.checkpoint.clone(),
        nfnet_variant: args.nfnet_variant,
        trainable_stages: args.trainable_stages,
        resolution: args.resolution,
        audit: args.audit,
        audit_significance: args.audit_significance,
        audit_method: args.audit_method,
        dataset: args.dataset,
        model: args.model,
        normalize: args.normalize.clone(),
    };
    if let Some(n) = network.as_ref().filter(|n| n.rank > 0) {
        if args.preset.is_some() || args.resume || args.out.is_some() || args.devices.is_some() {
            return Err(TrainError::Usage(format!(
                "peer {} takes its settings and replica from peer 0: give it only --data-dir, \
                 --device and the group's flags",
                n.rank
            )));
        }
        let overrides_but_data = Overrides {
            data_dir: None,
            ..overrides.clone()
        };
        if overrides_but_data != Overrides::default() {
            return Err(TrainError::Usage(format!(
                "peer {} takes its settings from peer 0: drop the run's settings",
                n.rank
            )));
        }
        let steps = follow_node(n, args.device, args.data_dir.clone())?;
        return Ok(format!(
            "peer {} of {}: trained to step {steps} with peer 0",
            n.rank, n.nodes
        ));
    }
    let (config, out) = if args.resume {
        let out = args.out.clone().ok_or_else(|| {
            TrainError::Usage("--resume needs --out DIR (the run to continue)".into())
        })?;
        if args.preset.is_some() || overrides != Overrides::default() {
            return Err(TrainError::Usage(
                "--resume continues the run in --out with its saved settings: give only --out, --device and output flags".into(),
            ));
        }
        (None, out)
    } else {
        let name = match (args.preset.as_deref(), args.model) {
            (Some(name), _) => name,
            (None, Some(model)) => model.recipe(),
            (None, None) => {
                return Err(TrainError::Usage(
                    "--preset NAME (see --list-presets) or --model ARCH is required".into(),
                ))
            }
        };
        let preset = preset(name)?;
        let out = args
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(name));
        (Some(RunConfig::new(&preset, overrides)?), out)
    };
    let options = TrainOptions {
        out: out.clone(),
        resume: args.resume,
        devices: args.devices.clone().unwrap_or(Devices::one(args.device)),
        progress: !args.no_progress && !args.json,
        // Evaluation lines go to stderr, so they never mix with --json's stdout.
        verbose: true,
        pause_after: args.pause_after,
        network,
    };
    let summary = match train(config, &options)? {
        Outcome::Finished(summary) => *summary,
        Outcome::Paused { steps, epsilon } => {
            if args.json {
                return Ok(
                    serde_json::json!({ "paused": true, "steps": steps, "epsilon": epsilon })
                        .to_string(),
                );
            }
            return Ok(format!(
                "paused after step {steps} (ε = {epsilon:.4} so far); continue with: dp-train --out {} --resume",
                out.display()
            ));
        }
    };
    if args.json {
        return serde_json::to_string(&summary).map_err(|e| TrainError::Usage(e.to_string()));
    }
    let mut text = format!(
        "{}: {} accuracy {:.2}%",
        summary.preset,
        summary.evaluated_on,
        100.0 * summary.test_accuracy
    );
    if (summary.test_accuracy_ema - summary.test_accuracy).abs() > 0.0 {
        text += &format!(" (EMA weights {:.2}%)", 100.0 * summary.test_accuracy_ema);
    }
    text += &format!(
        "\nprivacy spent: (ε, δ) = ({:.4}, {}) by the {} accountant",
        summary.epsilon, summary.delta, summary.accountant
    );
    let other = match summary.accountant.as_str() {
        "pld" => summary.epsilon_rdp.map(|e| ("RDP", e)),
        _ => summary.epsilon_pld.map(|e| ("PLD", e)),
    };
    if let Some((name, epsilon)) = other {
        text += &format!(" ({name}: ε = {epsilon:.4})");
    }
    if let Some(a) = &summary.audit {
        text += &format!(
            "\naudit: ε ≥ {:.4} with confidence {:.4} ({} method, all iterates; {} canaries, {} in): {}",
            a.epsilon_lower_bound,
            1.0 - a.significance,
            a.method,
            a.canaries,
            a.included,
            if a.exceeds_claim {
                "EXCEEDS the claimed ε: the privacy claim is refuted"
            } else {
                "consistent with the claimed ε"
            }
        );
        if let Some(c) = &a.consistency {
            text += &format!(
                "\naudit consistency: noise variance {:.4} (charged: 1; p = {:.2e}), participation {:.5} (charged: q = {:.5}; p = {:.2e}): {}",
                c.noise_variance,
                c.noise_p_value,
                c.participation,
                summary.sampling_rate,
                c.participation_p_value,
                if c.rejected() {
                    format!(
                        "REJECTS the charged mechanism (less noise or more participation than charged; wrong with probability at most {})",
                        c.significance
                    )
                } else {
                    "fits the charged mechanism".to_string()
                }
            );
        }
    }
    text += &format!(
        "\nσ = {:.4}, q = {:.6}, {} steps, C = {}, K = {}; {:.0} s ({:.1} s per epoch)\nreport: {}",
        summary.noise_multiplier,
        summary.sampling_rate,
        summary.steps,
        summary.clip_norm,
        summary.augmult,
        summary.wall_s,
        summary.epoch_s,
        out.display()
    );
    Ok(text)
}

fn main() -> ExitCode {
    let args: Args = match dp_accountant::cli::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    examples::error::finish(run(args))
}
