//! The command line: one file per subcommand. `anyhow` is used here and nowhere else.
//!
//! `cli` may call every other module; nothing calls `cli` but `main.rs`.

mod check;
mod dump;
mod import;
mod inspect;
mod query;
mod remote;
mod run;
mod series;
mod snapshot;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::model::Matcher;

#[derive(Parser)]
#[command(
    name = "tidemark",
    version,
    about = "A Prometheus-style metrics agent with its own time-series storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Log level: error, warn, info, debug or trace, or target=level directives [default:
    /// info; `run` reads `log.level` from its config when this is not given].
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format [default: text; `run` reads `log.format` from its config when this is not
    /// given].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The logging flags as given; `run` fills what is missing from its config file.
#[derive(Clone)]
struct LogFlags {
    level: Option<String>,
    format: Option<LogFormat>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default when no subcommand is given).
    Run(run::Args),
    /// Write OpenMetrics text with timestamps into blocks of a data directory (backfill).
    Import(import::Args),
    /// Show blocks, head, WAL and cardinality of a data directory (safe while an agent runs).
    Inspect(inspect::Args),
    /// Write stored samples as OpenMetrics text that `tidemark import` and promtool read back.
    Dump(dump::Args),
    /// Validate files without running anything (`check config FILE...`).
    Check(check::Args),
    /// Evaluate a PromQL expression against a data directory or a running agent.
    Query(query::Args),
    /// List the label sets of the series matching selectors.
    Series(series::Args),
    /// Copy a data directory's blocks and head into a new directory (safe while an agent runs).
    Snapshot(snapshot::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = LogFlags {
        level: cli.log_level,
        format: cli.log_format,
    };
    // No subcommand means `run` with its defaults, so `cargo run --release` starts the agent.
    let command = cli
        .command
        .unwrap_or_else(|| Command::Run(<run::Args as Parser>::parse_from(["run"])));
    // `run` starts logging once it has read its config, whose `log` section the flags
    // override; the other commands have no config to read.
    if !matches!(command, Command::Run(_))
        && let Err(e) = init_logging(log.level.as_deref().unwrap_or("info"), log.format)
    {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    let result = match command {
        Command::Run(a) => run::run(a, log),
        Command::Import(a) => import::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Dump(a) => dump::run(a),
        Command::Check(a) => check::run(a),
        Command::Query(a) => query::run(a),
        Command::Series(a) => series::run(a),
        Command::Snapshot(a) => snapshot::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts logging to stderr; a level that is not one is an error rather than a silent
/// fallback.
fn init_logging(level: &str, format: Option<LogFormat>) -> anyhow::Result<()> {
    crate::config::check_log_level(level).map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format.unwrap_or(LogFormat::Text) {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// The data directory flag shared by the storage commands.
#[derive(clap::Args, Clone)]
struct DataDir {
    /// Data directory.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
}

/// Parses a PromQL series selector into matchers.
fn parse_selector(s: &str) -> anyhow::Result<Vec<Matcher>> {
    crate::query::parse_selector(s).with_context(|| format!("invalid series selector {s:?}"))
}

/// Shows `done/total` on one stderr line while on a terminal; silent otherwise.
struct Progress {
    on: bool,
    what: &'static str,
    total: u64,
    last_pct: u64,
}

impl Progress {
    fn new(what: &'static str, total: u64) -> Self {
        Progress {
            on: std::io::stderr().is_terminal(),
            what,
            total: total.max(1),
            last_pct: u64::MAX,
        }
    }

    fn set(&mut self, done: u64) {
        let pct = done.min(self.total) * 100 / self.total;
        if self.on && pct != self.last_pct {
            self.last_pct = pct;
            let bar = "#".repeat((pct / 4) as usize);
            eprint!("\r{:<10} [{bar:<25}] {pct:>3}%", self.what);
        }
    }

    fn finish(&mut self) {
        if self.on {
            self.set(self.total);
            eprintln!();
        }
    }
}
