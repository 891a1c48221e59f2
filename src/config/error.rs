//! What is wrong with a config or file_sd file, and where: every problem names
//! `file:line:column` and the key path (`scrape_configs[1].scrape_interval`).

use std::fmt;
use std::path::PathBuf;

use super::yaml::{self, KeyPath, Node};

/// One thing wrong with a config file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Key path such as `scrape_configs[1].scrape_interval`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// A config (or file_sd) file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not valid; every problem found, in document order.
    #[error("{}", join_problems(.0))]
    Invalid(Vec<Problem>),
}

fn join_problems(ps: &[Problem]) -> String {
    ps.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The problems found, empty for a read error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(p) => p,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// A message on one line, so that each problem is one line of output.
fn one_line(msg: String) -> String {
    if msg.contains('\n') {
        msg.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        msg
    }
}

/// Turns a YAML-layer error into a problem of `file`.
pub(super) fn problem_from(file: &str, e: yaml::DeError) -> Problem {
    let pos = e.pos.unwrap_or(yaml::Pos { line: 1, column: 1 });
    Problem {
        file: file.to_string(),
        line: pos.line,
        column: pos.column,
        path: e.path.map(|p| p.to_string()).unwrap_or_default(),
        message: one_line(e.msg),
    }
}

/// Collects the problems of one file, each located through the file's document tree: the
/// position of the value at a key path, or of the key itself.
pub(super) struct Reporter<'a> {
    file: &'a str,
    root: Option<&'a Node>,
    problems: Vec<Problem>,
}

impl<'a> Reporter<'a> {
    /// No problems yet in `file`, whose tree is `root` (`None` for an empty document).
    pub(super) fn new(file: &'a str, root: Option<&'a Node>) -> Reporter<'a> {
        Reporter {
            file,
            root,
            problems: Vec::new(),
        }
    }

    /// Reports a problem with the value at `path`.
    pub(super) fn report(&mut self, path: &KeyPath, msg: impl fmt::Display) {
        self.report_at(path, msg, false);
    }

    /// Reports a problem with the last key of `path` itself, pointing at the key.
    pub(super) fn report_key(&mut self, path: &KeyPath, msg: impl fmt::Display) {
        self.report_at(path, msg, true);
    }

    fn report_at(&mut self, path: &KeyPath, msg: impl fmt::Display, key: bool) {
        let pos = match self.root {
            Some(r) if key => r.locate_key(path),
            Some(r) => r.locate(path),
            None => yaml::Pos { line: 1, column: 1 },
        };
        self.problems.push(Problem {
            file: self.file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: one_line(msg.to_string()),
        });
    }

    /// The line of the value at `path`.
    pub(super) fn line_of(&self, path: &KeyPath) -> usize {
        self.root.map_or(1, |r| r.locate(path).line)
    }

    /// Reports the problems of another file (a file_sd target file) as seen from `at`.
    pub(super) fn nested(&mut self, at: &KeyPath, e: ConfigError) {
        match e {
            ConfigError::Read { path, source } => {
                self.report(at, format!("cannot read {}: {source}", path.display()));
            }
            ConfigError::Invalid(ps) => self.problems.extend(ps),
        }
    }

    /// Every problem reported, in the order reported.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}
