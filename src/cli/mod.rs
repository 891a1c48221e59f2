//! The command line: one file per subcommand. `anyhow` is used here and nowhere else.

use std::process::ExitCode;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
