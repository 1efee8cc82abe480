//! Command-line arguments.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Parses a count flag (`--steps`, `--max-steps`, ...), so that clap's error for `-5` or `1.5`
/// names the flag and the value instead of taking `-5` for an unknown flag.
fn count(value: &str) -> Result<u64, String> {
    value
        .parse()
        .map_err(|_| format!("must be a whole number in [1, {}]", u64::MAX))
}

/// How answers are printed; shown at the end of `--help`.
const OUTPUT_HELP: &str = "\
Output: one answer in words, or with --json exactly one JSON object on one line. Every JSON
field has one type: reals are numbers, or null where the value is not finite; an ε that no
finite bound covers is \"epsilon\": null with \"unbounded\": true (and false otherwise);
\"steps\" is an integer with \"capped\": true when it is the --max-steps cap and the budget
allows more. Errors: one line on stderr; exit code 2 for bad input, 1 otherwise.";

/// Privacy accounting for DP-SGD: ε spent, δ, calibrated noise, steps a budget allows.
#[derive(Parser, Debug)]
#[command(name = "dp-accountant", version, about, after_help = OUTPUT_HELP)]
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
        /// Noise multiplier σ (noise std over the clipping norm), in [1e-6, 1e6].
        #[arg(long, allow_hyphen_values = true)]
        noise_multiplier: f64,
        /// Number of steps T.
        #[arg(long, allow_hyphen_values = true, value_parser = count)]
        steps: u64,
        /// δ, in (0, 1).
        #[arg(long, allow_hyphen_values = true)]
        delta: f64,
    },
    /// The δ at which T steps spend a given ε.
    Delta {
        #[command(flatten)]
        common: Common,
        /// Noise multiplier σ, in [1e-6, 1e6].
        #[arg(long, allow_hyphen_values = true)]
        noise_multiplier: f64,
        /// Number of steps T.
        #[arg(long, allow_hyphen_values = true, value_parser = count)]
        steps: u64,
        /// ε, ≥ 0.
        #[arg(long, allow_hyphen_values = true)]
        epsilon: f64,
    },
    /// The smallest noise multiplier σ for which T steps spend at most ε at δ.
    Noise {
        #[command(flatten)]
        common: Common,
        /// Number of steps T.
        #[arg(long, allow_hyphen_values = true, value_parser = count)]
        steps: u64,
        /// Target ε, > 0.
        #[arg(long, allow_hyphen_values = true)]
        epsilon: f64,
        /// δ, in (0, 1).
        #[arg(long, allow_hyphen_values = true)]
        delta: f64,
    },
    /// The largest number of steps that spends at most ε at δ.
    Steps {
        #[command(flatten)]
        common: Common,
        /// Noise multiplier σ, in [1e-6, 1e6].
        #[arg(long, allow_hyphen_values = true)]
        noise_multiplier: f64,
        /// Target ε, ≥ 0.
        #[arg(long, allow_hyphen_values = true)]
        epsilon: f64,
        /// δ, in (0, 1).
        #[arg(long, allow_hyphen_values = true)]
        delta: f64,
        /// Upper limit of the search: an answer equal to it means "at least this many".
        #[arg(long, default_value_t = 100_000_000, allow_hyphen_values = true, value_parser = count)]
        max_steps: u64,
    },
}

/// Flags shared by every subcommand.
#[derive(Args, Debug)]
pub struct Common {
    /// Sampling rate q ∈ (0, 1]: each example is in a batch with probability q.
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["dataset_size", "batch_size"])]
    pub sampling_rate: Option<f64>,
    /// Dataset size N (with --batch-size: q = B/N).
    #[arg(long, requires = "batch_size", allow_hyphen_values = true, value_parser = count)]
    pub dataset_size: Option<u64>,
    /// Expected batch size B (with --dataset-size: q = B/N).
    #[arg(long, requires = "dataset_size", allow_hyphen_values = true, value_parser = count)]
    pub batch_size: Option<u64>,
    /// Accountant: pld (privacy loss distributions, pessimistic: the tighter upper bound) or
    /// rdp (Rényi DP: looser, and what Opacus reports).
    #[arg(long, value_enum, default_value_t = AccountantArg::Pld)]
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
