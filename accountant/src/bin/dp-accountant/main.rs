//! `dp-accountant`: the accountant crate on the command line.
//!
//! Exit codes: 0 on success (also when the reader closes stdout early, as in
//! `dp-accountant ... | head -c 10`), 2 on bad input (one line on stderr naming the flag and
//! value), 1 on any other failure.
//!
//! With `--json` every field keeps one type: reals are numbers, or `null` where not finite;
//! an infinite ε is `"epsilon": null` with `"unbounded": true`; `steps` is an integer with
//! `"capped": true` when it is the `--max-steps` cap and the budget allows more.

mod args;
mod format;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: args::Cli = match dp_accountant::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run::run(cli.command) {
        Ok(output) => dp_accountant::cli::print_stdout(&output),
        Err(run::Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(run::Failure::Internal(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}
