//! `tidemark check config FILE...`: validates config files without running anything.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::bail;

use crate::config::{Config, ConfigError};

#[derive(clap::Args)]
pub(super) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(clap::Subcommand)]
enum What {
    /// Check config files: syntax, keys, values, and the files they name. Prints `FILE: OK`
    /// or every problem as `FILE:LINE:COLUMN: KEY: MESSAGE`; exits non-zero if any fails.
    Config {
        /// Config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let What::Config { files } = a.what;
    let (ok, problems, failed) = check_configs(&files);
    print!("{ok}");
    eprint!("{problems}");
    if failed > 0 {
        bail!("{failed} of {} config file(s) invalid", files.len());
    }
    Ok(())
}

/// Checks each file; returns the `FILE: OK` lines, the problem lines, and how many failed.
fn check_configs(files: &[PathBuf]) -> (String, String, usize) {
    let (mut ok, mut problems, mut failed) = (String::new(), String::new(), 0);
    for f in files {
        match Config::check_file(f) {
            Ok(_) => {
                let _ = writeln!(ok, "{}: OK", f.display());
            }
            Err(e @ ConfigError::Read { .. }) => {
                failed += 1;
                let _ = writeln!(problems, "{e}");
            }
            Err(ConfigError::Invalid(ps)) => {
                failed += 1;
                for p in ps {
                    let _ = writeln!(problems, "{p}");
                }
            }
        }
    }
    (ok, problems, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_ok_files_and_every_problem_of_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yml");
        std::fs::write(&good, "scrape_configs:\n  - job_name: a\n").unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(
            &bad,
            "scrape_configs:\n  - job_name: a\n    scrape_timeout: 2m\n  - job_name: a\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.yml");
        let (ok, problems, failed) = check_configs(&[good.clone(), bad.clone(), missing]);
        assert_eq!(ok, format!("{}: OK\n", good.display()));
        assert_eq!(failed, 2);
        let lines: Vec<&str> = problems.lines().collect();
        assert_eq!(lines.len(), 3, "{problems}");
        assert!(
            lines[0].starts_with(&format!(
                "{}:3:21: scrape_configs[0].scrape_timeout:",
                bad.display()
            )),
            "{problems}"
        );
        assert!(lines[1].contains(":4:15: scrape_configs[1].job_name: duplicate job_name \"a\" (first defined at line 2)"), "{problems}");
        assert!(lines[2].contains("missing.yml: cannot read"), "{problems}");
    }
}
