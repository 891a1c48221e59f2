//! file_sd target files: Prometheus's `file_sd_configs` format, a JSON or YAML list of
//! `{targets: [...], labels: {...}}`, found through glob patterns.
//!
//! Only reading: expanding patterns and parsing files are pure functions of the file system
//! at the time of the call. Watching, refreshing and keeping the last good groups of a file
//! that turned bad belong to the scrape manager.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{ConfigError, Problem, problem_from};
use super::yaml::{self, KeyPath};
use crate::model::is_valid_label_name;

/// The label Prometheus attaches to every group read from a file: the file's path.
pub const FILEPATH_LABEL: &str = "__meta_filepath";

/// Targets sharing labels, as read from one entry of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    /// `host:port` addresses.
    pub targets: Vec<String>,
    /// Labels for every target, including [`FILEPATH_LABEL`].
    pub labels: BTreeMap<String, String>,
    /// `file:index`, which identifies the group across refreshes as Prometheus does.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
#[derive(Default)]
struct RawGroup {
    targets: Vec<String>,
    labels: BTreeMap<String, String>,
}

const EXTENSIONS: [&str; 3] = [".json", ".yml", ".yaml"];

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A `files` entry file discovery cannot use; each holds the entry as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The last path element does not name a `.json`, `.yml` or `.yaml` file.
    #[error("{0:?} is not valid for file discovery (want a .json, .yml or .yaml file name)")]
    NotATargetFile(String),
    /// `*`, `?` or `[` in a directory name.
    #[error("{0:?}: patterns are allowed only in the last path element")]
    PatternInDirectory(String),
    /// An unclosed `[` or a trailing `\`.
    #[error("{0:?}: malformed pattern")]
    Malformed(String),
}

/// Checks a `files` entry as Prometheus does: it names `.json`, `.yml` or `.yaml` files and
/// only its last path element is a pattern.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    let (dir, name) = match pattern.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", pattern),
    };
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || !EXTENSIONS.iter().any(|e| lower.ends_with(e)) {
        return Err(PatternError::NotATargetFile(pattern.to_string()));
    }
    if has_meta(dir) {
        return Err(PatternError::PatternInDirectory(pattern.to_string()));
    }
    if compile(name).is_none() {
        return Err(PatternError::Malformed(pattern.to_string()));
    }
    Ok(())
}

#[derive(Debug)]
enum Tok {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Compiles a glob; `None` for an unclosed `[` or a trailing `\`.
fn compile(pattern: &str) -> Option<Vec<Tok>> {
    let mut out = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => out.push(Tok::Star),
            '?' => out.push(Tok::Any),
            '\\' => out.push(Tok::Char(it.next()?)),
            '[' => {
                let negated = matches!(it.peek(), Some('!' | '^'));
                if negated {
                    it.next();
                }
                let mut ranges = Vec::new();
                loop {
                    let mut lo = it.next()?;
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    if lo == '\\' {
                        lo = it.next()?;
                    }
                    let mut hi = lo;
                    if it.peek() == Some(&'-') {
                        it.next();
                        hi = it.next()?;
                        if hi == '\\' {
                            hi = it.next()?;
                        }
                    }
                    ranges.push((lo, hi));
                }
                out.push(Tok::Class { negated, ranges });
            }
            c => out.push(Tok::Char(c)),
        }
    }
    Some(out)
}

fn tok_matches(t: &Tok, c: char) -> bool {
    match t {
        Tok::Char(x) => *x == c,
        Tok::Any => true,
        Tok::Star => false,
        Tok::Class { negated, ranges } => {
            ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
        }
    }
}

/// Matches one file name against a glob (`*`, `?`, `[a-z]`, `[!x]`, `\` escapes), like Go's
/// `filepath.Match` within one path element.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let Some(toks) = compile(pattern) else {
        return false;
    };
    let s: Vec<char> = name.chars().collect();
    // Greedy with backtracking to the last star: linear in practice, no recursion.
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, i));
                p += 1;
            }
            Some(t) if tok_matches(t, s[i]) => {
                p += 1;
                i += 1;
            }
            _ => match star {
                Some((sp, si)) => {
                    p = sp + 1;
                    i = si + 1;
                    star = Some((sp, si + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::Star))
}

/// The files matched by `patterns`, sorted within each pattern, each once. A directory that
/// does not exist matches nothing, as in Prometheus.
pub fn expand(patterns: &[String]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut found = Vec::new();
        if !has_meta(&name) {
            if path.is_file() {
                found.push(path.to_path_buf());
            }
        } else {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ConfigError::Read { path: dir, source }),
            };
            for entry in entries {
                let entry = entry.map_err(|source| ConfigError::Read {
                    path: dir.clone(),
                    source,
                })?;
                let file_name = entry.file_name().to_string_lossy().into_owned();
                if glob_match(&name, &file_name) && entry.path().is_file() {
                    found.push(dir.join(file_name));
                }
            }
            found.sort();
        }
        for f in found {
            if !out.contains(&f) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Parses the text of a target file; `name` is used in errors, `source` and
/// [`FILEPATH_LABEL`]. JSON is read through the same YAML parser (JSON is YAML 1.2), so
/// errors in either carry line, column and key path.
pub fn parse(text: &str, name: &str) -> Result<Vec<TargetGroup>, ConfigError> {
    let invalid = |e| ConfigError::Invalid(vec![problem_from(name, e)]);
    let Some(root) = yaml::parse(text).map_err(invalid)? else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawGroup> = yaml::from_node(&root).map_err(invalid)?;
    let mut problems = Vec::new();
    let mut report = |path: KeyPath, message: String| {
        let pos = root.locate_key(&path);
        problems.push(Problem {
            file: name.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message,
        });
    };
    let mut groups = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let at = KeyPath::default().index(i);
        for (j, t) in g.targets.iter().enumerate() {
            if t.trim().is_empty() {
                report(at.key("targets").index(j), "empty target".into());
            }
        }
        for label in g.labels.keys() {
            if !is_valid_label_name(label) {
                report(
                    at.key("labels").key(label),
                    format!("{label:?} is not a valid label name"),
                );
            }
        }
        let mut labels = g.labels;
        labels.insert(FILEPATH_LABEL.into(), name.to_string());
        groups.push(TargetGroup {
            targets: g.targets,
            labels,
            source: format!("{name}:{i}"),
        });
    }
    if problems.is_empty() {
        Ok(groups)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// Reads and parses one target file.
pub fn read_file(path: &Path) -> Result<Vec<TargetGroup>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Every group of every file matched by `patterns`; the first bad file fails the whole load
/// (use [`expand`] and [`read_file`] to keep going per file).
pub fn load(patterns: &[String]) -> Result<Vec<TargetGroup>, ConfigError> {
    let mut out = Vec::new();
    for f in expand(patterns)? {
        out.extend(read_file(&f)?);
    }
    Ok(out)
}
