//! Command-line conventions shared by this crate's `dp-accountant` and the example programs:
//! bad input is one line on stderr and exit code 2; `--help` and `--version` print and succeed;
//! a reader that closes stdout early (`dp-accountant ... | head -c 10`) ends the program
//! quietly with success, as Unix tools do.

use std::io::{self, Write};
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

/// Prints `text` and a newline on stdout and returns the exit code to end with: success, also
/// when the reader has closed the pipe (`program | head`), where the Unix convention is to
/// stop quietly; code 1 and one line on stderr for any other write error. Use it instead of
/// `println!`, which panics when stdout is a closed pipe.
///
/// ```
/// use std::process::ExitCode;
///
/// fn main() -> ExitCode {
///     let code = dp_accountant::cli::print_stdout("ε = 1.2 at δ = 1e-5");
///     assert_eq!(code, ExitCode::SUCCESS);
///     code
/// }
/// ```
pub fn print_stdout(text: &str) -> ExitCode {
    match write_line(&mut io::stdout().lock(), text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` and a newline and flushes; a closed pipe is not an error.
fn write_line(out: &mut impl Write, text: &str) -> io::Result<()> {
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then fails like a pipe whose reader is gone (or with `kind`).
    struct Closing {
        room: usize,
        kind: io::ErrorKind,
    }

    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(self.kind));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_quietly_and_other_errors_are_reported() {
        let mut pipe = Closing {
            room: 3,
            kind: io::ErrorKind::BrokenPipe,
        };
        assert!(write_line(&mut pipe, "more than three bytes").is_ok());
        let mut disk = Closing {
            room: 3,
            kind: io::ErrorKind::StorageFull,
        };
        let err = write_line(&mut disk, "more than three bytes").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    }
}
