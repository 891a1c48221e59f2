//! Relabeling: Prometheus's `relabel_configs` and `metric_relabel_configs`, every action with
//! Prometheus's defaults and validation.
//!
//! A leaf shared by three sides: `config` holds the rules as written ([`RelabelConfig`]) and
//! reports the ones that cannot work, `scrape` applies them to targets and scraped series,
//! `remote_write` to what it sends. It imports only `model`, so none of those depends on
//! another through it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use md5::{Digest, Md5};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::{Labels, LabelsBuilder, is_valid_label_name};

/// A relabel action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    /// Set `target_label` to the expanded `replacement` when `regex` matches (the default).
    #[default]
    Replace,
    /// Drop the target unless `regex` matches the joined source labels.
    Keep,
    /// Drop the target when `regex` matches the joined source labels.
    Drop,
    /// Drop the target unless the joined source labels equal `target_label`'s value.
    KeepEqual,
    /// Drop the target when the joined source labels equal `target_label`'s value.
    DropEqual,
    /// Set `target_label` to a hash of the joined source labels modulo `modulus`.
    HashMod,
    /// Copy labels whose names match `regex` to names built from `replacement`.
    LabelMap,
    /// Remove labels whose names match `regex`.
    LabelDrop,
    /// Remove labels whose names do not match `regex`.
    LabelKeep,
    /// Set `target_label` to the joined source labels in lower case.
    Lowercase,
    /// Set `target_label` to the joined source labels in upper case.
    Uppercase,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// One relabel rule as written in YAML, with Prometheus's defaults.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` as the input.
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins `source_labels` values; `;` by default.
    #[serde(default = "default_separator")]
    pub separator: String,
    /// The regex (fully anchored); `(.*)` by default.
    #[serde(default = "default_regex")]
    pub regex: String,
    /// Modulus for `hashmod`.
    #[serde(default)]
    pub modulus: u64,
    /// Label written by replace, hashmod, lowercase, uppercase, and compared by keep/dropequal.
    #[serde(default)]
    pub target_label: String,
    /// Replacement with `$1`, `${name}` references; `$1` by default.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// The action; `replace` by default.
    #[serde(default)]
    pub action: Action,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: default_separator(),
            regex: default_regex(),
            modulus: 0,
            target_label: String::new(),
            replacement: default_replacement(),
            action: Action::Replace,
        }
    }
}

/// A relabel rule that cannot work, with Prometheus's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelabelError {
    #[error("invalid regex {regex:?}: {reason}")]
    Regex { regex: String, reason: String },
    #[error("relabel configuration for {0} action requires 'target_label' value")]
    MissingTarget(&'static str),
    #[error("{0:?} is invalid 'target_label' for {1} action")]
    InvalidTarget(String, &'static str),
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ZeroModulus,
    #[error("{0:?} is invalid 'replacement' for labelmap action")]
    InvalidLabelMapReplacement(String),
    #[error("{0} action requires only 'regex', and no other fields")]
    OnlyRegex(&'static str),
    #[error("{0} action requires only 'source_labels' and `target_label`, and no other fields")]
    OnlySourceAndTarget(&'static str),
}

/// A validated rule with its regex compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    cfg: RelabelConfig,
    re: Regex,
}

const ACTIONS: [Action; 11] = [
    Action::Replace,
    Action::Keep,
    Action::Drop,
    Action::KeepEqual,
    Action::DropEqual,
    Action::HashMod,
    Action::LabelMap,
    Action::LabelDrop,
    Action::LabelKeep,
    Action::Lowercase,
    Action::Uppercase,
];

/// Actions are matched case-insensitively, as Prometheus does (`action: Replace` works).
impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let lower = s.to_lowercase();
        ACTIONS
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| {
                let all: Vec<&str> = ACTIONS.iter().map(|a| a.name()).collect();
                serde::de::Error::custom(format!(
                    "unknown value {s:?} (want one of: {})",
                    all.join(", ")
                ))
            })
    }
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

/// True for a target label that is a valid name once `$n`/`${n}` references are expanded.
fn valid_target_template(t: &str) -> bool {
    static REF: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\$(\{\w+\}|\w+)").ok());
    let stripped = match REF.as_ref() {
        Some(re) => re.replace_all(t, "x").into_owned(),
        None => t.to_string(),
    };
    !t.is_empty() && is_valid_label_name(&stripped)
}

impl Rule {
    /// Validates a rule as Prometheus does when loading its config.
    pub fn new(cfg: RelabelConfig) -> Result<Rule, RelabelError> {
        let re = Regex::new(&format!("^(?s:{})$", cfg.regex)).map_err(|e| RelabelError::Regex {
            regex: cfg.regex.clone(),
            reason: e.to_string(),
        })?;
        let a = cfg.action;
        let needs_target = matches!(
            a,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && cfg.target_label.is_empty() {
            return Err(RelabelError::MissingTarget(a.name()));
        }
        match a {
            Action::Replace if !valid_target_template(&cfg.target_label) => {
                return Err(RelabelError::InvalidTarget(
                    cfg.target_label.clone(),
                    a.name(),
                ));
            }
            Action::HashMod
            | Action::Lowercase
            | Action::Uppercase
            | Action::KeepEqual
            | Action::DropEqual
                if !is_valid_label_name(&cfg.target_label) =>
            {
                return Err(RelabelError::InvalidTarget(
                    cfg.target_label.clone(),
                    a.name(),
                ));
            }
            _ => {}
        }
        if a == Action::HashMod && cfg.modulus == 0 {
            return Err(RelabelError::ZeroModulus);
        }
        if a == Action::LabelMap && !valid_target_template(&cfg.replacement) {
            return Err(RelabelError::InvalidLabelMapReplacement(
                cfg.replacement.clone(),
            ));
        }
        let d = RelabelConfig::default();
        if matches!(a, Action::LabelDrop | Action::LabelKeep)
            && (!cfg.source_labels.is_empty()
                || !cfg.target_label.is_empty()
                || cfg.modulus != 0
                || cfg.separator != d.separator
                || cfg.replacement != d.replacement)
        {
            return Err(RelabelError::OnlyRegex(a.name()));
        }
        if matches!(a, Action::KeepEqual | Action::DropEqual)
            && (cfg.regex != d.regex
                || cfg.modulus != 0
                || cfg.separator != d.separator
                || cfg.replacement != d.replacement)
        {
            return Err(RelabelError::OnlySourceAndTarget(a.name()));
        }
        Ok(Rule { cfg, re })
    }
}

/// Applies `rules` in order to `labels`; `None` means the target or series is dropped. Labels
/// left with an empty value are removed, as in Prometheus.
pub fn process(labels: &Labels, rules: &[Rule]) -> Option<Labels> {
    let mut lb: BTreeMap<String, String> = labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    for r in rules {
        if !apply(&mut lb, r) {
            return None;
        }
    }
    let mut b = LabelsBuilder::default();
    for (n, v) in lb {
        b.push(n, v);
    }
    // Every name written was checked as a valid label name on the way in.
    b.build().ok()
}

fn apply(lb: &mut BTreeMap<String, String>, r: &Rule) -> bool {
    let c = &r.cfg;
    let val = c
        .source_labels
        .iter()
        .map(|n| lb.get(n).map_or("", String::as_str))
        .collect::<Vec<_>>()
        .join(&c.separator);
    let set = |lb: &mut BTreeMap<String, String>, k: &str, v: String| {
        if v.is_empty() {
            lb.remove(k);
        } else {
            lb.insert(k.to_string(), v);
        }
    };
    match c.action {
        Action::Replace => {
            let Some(caps) = r.re.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&c.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut res = String::new();
            caps.expand(&c.replacement, &mut res);
            set(lb, &target, res);
        }
        Action::Keep => return r.re.is_match(&val),
        Action::Drop => return !r.re.is_match(&val),
        Action::KeepEqual => return lb.get(&c.target_label).map_or("", String::as_str) == val,
        Action::DropEqual => return lb.get(&c.target_label).map_or("", String::as_str) != val,
        Action::HashMod => {
            let digest = Md5::digest(val.as_bytes());
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&digest[8..16]);
            let m = u64::from_be_bytes(tail) % c.modulus;
            set(lb, &c.target_label, m.to_string());
        }
        Action::LabelMap => {
            let found: Vec<(String, String)> = lb
                .iter()
                .filter(|(n, _)| r.re.is_match(n))
                .map(|(n, v)| {
                    (
                        r.re.replace_all(n, c.replacement.as_str()).into_owned(),
                        v.clone(),
                    )
                })
                .collect();
            for (n, v) in found {
                if is_valid_label_name(&n) {
                    set(lb, &n, v);
                }
            }
        }
        Action::LabelDrop => lb.retain(|n, _| !r.re.is_match(n)),
        Action::LabelKeep => lb.retain(|n, _| r.re.is_match(n)),
        Action::Lowercase => set(lb, &c.target_label, val.to_lowercase()),
        Action::Uppercase => set(lb, &c.target_label, val.to_uppercase()),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied()).unwrap()
    }

    fn rule(f: impl FnOnce(&mut RelabelConfig)) -> Rule {
        let mut c = RelabelConfig::default();
        f(&mut c);
        Rule::new(c).unwrap()
    }

    /// Cases follow the results documented for Prometheus's relabel package.
    #[test]
    fn every_action_as_prometheus_documents() {
        let input = l(&[("a", "foo"), ("b", "bar"), ("c", "baz")]);
        let cases: Vec<(&str, Vec<Rule>, Option<Labels>)> = vec![
            (
                "replace with capture",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "f(.*)".into();
                    c.target_label = "d".into();
                    c.replacement = "ch${1}-ch${1}".into();
                })],
                Some(l(&[
                    ("a", "foo"),
                    ("b", "bar"),
                    ("c", "baz"),
                    ("d", "choo-choo"),
                ])),
            ),
            (
                "replace joins with separator and is anchored",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into(), "b".into()];
                    c.regex = "f(.*);(.*)r".into();
                    c.target_label = "a".into();
                    c.replacement = "b${1}${2}m".into();
                })],
                Some(l(&[("a", "boobam"), ("b", "bar"), ("c", "baz")])),
            ),
            (
                "replace no match leaves labels",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "o".into();
                    c.target_label = "a".into();
                    c.replacement = "x".into();
                })],
                Some(input.clone()),
            ),
            (
                "replace to empty deletes",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "foo".into();
                    c.target_label = "b".into();
                    c.replacement = "".into();
                })],
                Some(l(&[("a", "foo"), ("c", "baz")])),
            ),
            (
                "replace with templated target",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "some-([^-]+)-([^,]+)".into();
                    c.target_label = "${1}".into();
                    c.replacement = "${2}".into();
                })],
                Some(input.clone()),
            ),
            (
                // `$1y` names group "1y" (references are as long as possible, as in Go), which
                // does not exist and expands to nothing.
                "replace of a missing source matches the empty string",
                vec![rule(|c| {
                    c.source_labels = vec!["missing".into()];
                    c.regex = "(.*)".into();
                    c.target_label = "d".into();
                    c.replacement = "x$1y".into();
                })],
                Some(l(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "x")])),
            ),
            (
                "keep matching",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "fo+".into();
                    c.action = Action::Keep;
                })],
                Some(input.clone()),
            ),
            (
                "keep not matching (anchored)",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "f".into();
                    c.action = Action::Keep;
                })],
                None,
            ),
            (
                "drop matching",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = ".*o.*".into();
                    c.action = Action::Drop;
                })],
                None,
            ),
            (
                "drop not matching",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.regex = "f".into();
                    c.action = Action::Drop;
                })],
                Some(input.clone()),
            ),
            (
                "keepequal keeps when equal",
                vec![rule(|c| {
                    c.source_labels = vec!["a".into()];
                    c.target_label = "d".into();
                    c.action = Action::KeepEqual;
                })],
                None,
            ),
            (
                "dropequal drops when equal",
                vec![rule(|c| {
                    c.source_labels = vec!["c".into()];
                    c.target_label = "c".into();
                    c.action = Action::DropEqual;
                })],
                None,
            ),
            (
                "keepequal equal values",
                vec![rule(|c| {
                    c.source_labels = vec!["c".into()];
                    c.target_label = "c".into();
                    c.action = Action::KeepEqual;
                })],
                Some(input.clone()),
            ),
            (
                "hashmod",
                vec![rule(|c| {
                    c.source_labels = vec!["c".into()];
                    c.target_label = "d".into();
                    c.modulus = 1000;
                    c.action = Action::HashMod;
                })],
                Some(l(&[("a", "foo"), ("b", "bar"), ("c", "baz"), ("d", "976")])),
            ),
            (
                "labelmap",
                vec![rule(|c| {
                    c.regex = "(b)".into();
                    c.replacement = "${1}_new".into();
                    c.action = Action::LabelMap;
                })],
                Some(l(&[
                    ("a", "foo"),
                    ("b", "bar"),
                    ("b_new", "bar"),
                    ("c", "baz"),
                ])),
            ),
            (
                "labeldrop",
                vec![rule(|c| {
                    c.regex = "[ab]".into();
                    c.action = Action::LabelDrop;
                })],
                Some(l(&[("c", "baz")])),
            ),
            (
                "labelkeep",
                vec![rule(|c| {
                    c.regex = "[ab]".into();
                    c.action = Action::LabelKeep;
                })],
                Some(l(&[("a", "foo"), ("b", "bar")])),
            ),
            (
                "lowercase and uppercase",
                vec![
                    rule(|c| {
                        c.source_labels = vec!["a".into()];
                        c.replacement = "ignored".into();
                        c.target_label = "u".into();
                        c.action = Action::Uppercase;
                    }),
                    rule(|c| {
                        c.source_labels = vec!["u".into()];
                        c.target_label = "w".into();
                        c.action = Action::Lowercase;
                    }),
                ],
                Some(l(&[
                    ("a", "foo"),
                    ("b", "bar"),
                    ("c", "baz"),
                    ("u", "FOO"),
                    ("w", "foo"),
                ])),
            ),
        ];
        for (name, rules, want) in cases {
            assert_eq!(process(&input, &rules), want, "{name}");
        }
    }

    #[test]
    fn actions_are_case_insensitive() {
        let a: Action = serde_json::from_str("\"LabelMap\"").unwrap();
        assert_eq!(a, Action::LabelMap);
        let e = serde_json::from_str::<Action>("\"rename\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown value \"rename\" (want one of: replace, keep, drop"),
            "{e}"
        );
    }

    #[test]
    fn invalid_rules_are_refused_with_prometheus_reasons() {
        let bad = |f: fn(&mut RelabelConfig)| {
            let mut c = RelabelConfig::default();
            f(&mut c);
            Rule::new(c).unwrap_err().to_string()
        };
        assert!(bad(|c| c.target_label = String::new()).contains("requires 'target_label'"));
        assert!(bad(|c| c.target_label = "1x".into()).contains("invalid 'target_label'"));
        assert!(
            bad(|c| {
                c.action = Action::HashMod;
                c.target_label = "x".into();
            })
            .contains("non-zero modulus")
        );
        assert!(
            bad(|c| {
                c.action = Action::LabelDrop;
                c.source_labels = vec!["a".into()];
            })
            .contains("only 'regex'")
        );
        assert!(
            bad(|c| {
                c.action = Action::KeepEqual;
                c.target_label = "x".into();
                c.regex = "a".into();
            })
            .contains("only 'source_labels'")
        );
        assert!(bad(|c| c.regex = "(".into()).contains("invalid regex"));
        assert!(
            bad(|c| {
                c.action = Action::LabelMap;
                c.replacement = "a-b".into();
            })
            .contains("labelmap")
        );
    }
}
