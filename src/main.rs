//! The `tidemark` binary: parse the command line and dispatch. Nothing else lives here.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    tidemark::cli::main()
}
