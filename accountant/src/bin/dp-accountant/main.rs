//! `dp-accountant`: the accountant crate on the command line.
//!
//! Exit codes: 0 on success, 2 on bad input (one line on stderr naming the flag and value),
//! 1 on any other failure.

mod args;
mod run;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: args::Cli = match dp_accountant::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run::run(cli.command) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
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
