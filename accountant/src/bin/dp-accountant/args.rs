//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Privacy accounting for DP-SGD: ε spent, δ, calibrated noise, steps a budget allows.
#[derive(Parser, Debug)]
#[command(name = "dp-accountant", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The ε spent by T steps of the Poisson-subsampled Gaussian at a given δ.
    Epsilon {
        #[command(flatten)]
        common: Common,
        /// Noise multiplier σ (noise std over the clipping norm).
        #[arg(long, allow_negative_numbers = true)]
        noise_multiplier: f64,
        /// Number of steps T.
        #[arg(long)]
        steps: u64,
        /// δ, in (0, 1).
        #[arg(long, allow_negative_numbers = true)]
        delta: f64,
    },
    /// The δ at which T steps spend a given ε.
    Delta {
        #[command(flatten)]
        common: Common,
        /// Noise multiplier σ.
        #[arg(long, allow_negative_numbers = true)]
        noise_multiplier: f64,
        /// Number of steps T.
        #[arg(long)]
        steps: u64,
        /// ε, ≥ 0.
        #[arg(long, allow_negative_numbers = true)]
        epsilon: f64,
    },
    /// The smallest noise multiplier σ for which T steps spend at most ε at δ.
    Noise {
        #[command(flatten)]
        common: Common,
        /// Number of steps T.
        #[arg(long)]
        steps: u64,
        /// Target ε, > 0.
        #[arg(long, allow_negative_numbers = true)]
        epsilon: f64,
        /// δ, in (0, 1).
        #[arg(long, allow_negative_numbers = true)]
        delta: f64,
    },
    /// The largest number of steps that spends at most ε at δ.
    Steps {
        #[command(flatten)]
        common: Common,
        /// Noise multiplier σ.
        #[arg(long, allow_negative_numbers = true)]
        noise_multiplier: f64,
        /// Target ε, ≥ 0.
        #[arg(long, allow_negative_numbers = true)]
        epsilon: f64,
        /// δ, in (0, 1).
        #[arg(long, allow_negative_numbers = true)]
        delta: f64,
        /// Upper limit of the search.
        #[arg(long, default_value_t = 100_000_000)]
        max_steps: u64,
    },
}

/// Flags shared by every subcommand.
#[derive(Args, Debug)]
pub struct Common {
    /// Sampling rate q ∈ (0, 1]: each example is in a batch with probability q.
    #[arg(long, allow_negative_numbers = true, conflicts_with_all = ["dataset_size", "batch_size"])]
    pub sampling_rate: Option<f64>,
    /// Dataset size N (with --batch-size: q = B/N).
    #[arg(long, requires = "batch_size")]
    pub dataset_size: Option<u64>,
    /// Expected batch size B (with --dataset-size: q = B/N).
    #[arg(long, requires = "dataset_size")]
    pub batch_size: Option<u64>,
    /// Accountant: rdp (Rényi DP) or pld (privacy loss distributions).
    #[arg(long, value_enum, default_value_t = AccountantArg::Rdp)]
    pub accountant: AccountantArg,
    /// Neighbouring relation of the guarantee.
    #[arg(long, value_enum, default_value_t = RelationArg::AddOrRemoveOne)]
    pub neighboring_relation: RelationArg,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum AccountantArg {
    Rdp,
    Pld,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum RelationArg {
    AddOrRemoveOne,
    ReplaceOne,
}
