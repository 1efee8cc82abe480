//! Command-line conventions shared by this crate's `dp-accountant` and the example programs:
//! bad input is one line on stderr and exit code 2; `--help` and `--version` print and succeed.

use std::process::ExitCode;

/// Parses the command line into `T`, or returns the exit code to end with after printing
/// help (success) or the first line of clap's error (code 2).
///
/// ```no_run
/// use clap::Parser;
/// use std::process::ExitCode;
///
/// #[derive(Parser)]
/// struct Args {
///     #[arg(long)]
///     steps: u64,
/// }
///
/// fn main() -> ExitCode {
///     let args: Args = match dp_accountant::cli::parse_args() {
///         Ok(args) => args,
///         Err(code) => return code,
///     };
///     println!("{} steps", args.steps);
///     ExitCode::SUCCESS
/// }
/// ```
pub fn parse_args<T: clap::Parser>() -> Result<T, ExitCode> {
    T::try_parse().map_err(|err| {
        use clap::error::ErrorKind;
        if matches!(
            err.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
        ) {
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        // clap's message spans several lines (usage, tips): keep the first.
        let rendered = err.render().to_string();
        eprintln!(
            "{}",
            rendered
                .lines()
                .next()
                .unwrap_or("error: invalid arguments")
        );
        ExitCode::from(2)
    })
}
