use std::fmt;

/// The reserved label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Why a label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("invalid label name {0:?}")]
    InvalidName(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    #[error("empty label set")]
    Empty,
}

/// True for a legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// True for a legacy Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => {}
        _ => return false,
    }
    b[1..]
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}

/// A series identity: label pairs sorted by name, unique names, no empty values, `__name__`
/// included as an ordinary label. Values may be any UTF-8.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// The empty label set (used for scalar results and tests; storage refuses it).
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds a label set from pairs in any order. Pairs with empty values are dropped, as in
    /// Prometheus; names are validated and must be unique.
    pub fn new<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, LabelError> {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.push(n, v);
        }
        b.build()
    }

    /// Builds from pairs already known to be valid and sorted (decoding stored data). Debug
    /// builds check the invariant.
    pub fn from_sorted_unchecked(pairs: Vec<(String, String)>) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0 < w[1].0));
        Labels(pairs)
    }

    /// Value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Iterates over `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of labels, `__name__` included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs as a slice, in name order.
    pub fn as_slice(&self) -> &[(String, String)] {
        &self.0
    }

    /// A stable 64-bit hash of the label set (xxh3 over names and values with separators); the
    /// same on every run and machine.
    pub fn stable_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (n, v) in &self.0 {
            h.update(n.as_bytes());
            h.update(&[0xff]);
            h.update(v.as_bytes());
            h.update(&[0xff]);
        }
        h.digest()
    }

    /// A builder seeded with these labels, to add, replace or remove some.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            pairs: self.0.clone(),
        }
    }
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`, values escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(n) = name {
            f.write_str(n)?;
        }
        let rest: Vec<_> = self.iter().filter(|(n, _)| *n != METRIC_NAME).collect();
        if rest.is_empty() && name.is_some() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, (n, v)) in rest.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n}=\"")?;
            write_escaped(f, v)?;
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Writes a label value with `\\`, `\"` and `\n` escaped, as the exposition formats do.
pub(crate) fn write_escaped(f: &mut impl fmt::Write, v: &str) -> fmt::Result {
    for c in v.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            c => f.write_char(c)?,
        }
    }
    Ok(())
}

/// Collects label pairs in any order and validates them into [`Labels`].
#[derive(Debug, Clone, Default)]
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

impl LabelsBuilder {
    /// Adds a pair (a later `set` replaces; `push` keeps duplicates for `build` to refuse).
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((name.into(), value.into()));
        self
    }

    /// Sets `name` to `value`, replacing any existing value; an empty value removes it.
    pub fn set(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        self.pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            self.pairs.push((name.to_string(), value));
        }
        self
    }

    /// Removes label `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.pairs.retain(|(n, _)| n != name);
        self
    }

    /// Value of `name` as it stands now.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sorts, drops empty values, checks names and uniqueness.
    pub fn build(mut self) -> Result<Labels, LabelError> {
        self.pairs.retain(|(_, v)| !v.is_empty());
        self.pairs.sort_by(|a, b| a.0.cmp(&b.0));
        for w in self.pairs.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(LabelError::Duplicate(w[0].0.clone()));
            }
        }
        for (n, v) in &self.pairs {
            if n == METRIC_NAME {
                if !is_valid_metric_name(v) {
                    return Err(LabelError::InvalidMetricName(v.clone()));
                }
            } else if !is_valid_label_name(n) {
                return Err(LabelError::InvalidName(n.clone()));
            }
        }
        Ok(Labels(self.pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_empty_values_dropped() {
        let l = Labels::new([("b", "2"), ("__name__", "up"), ("a", "1"), ("c", "")]).unwrap();
        let names: Vec<_> = l.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["__name__", "a", "b"]);
        assert_eq!(l.get("b"), Some("2"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.to_string(), r#"up{a="1", b="2"}"#);
    }

    #[test]
    fn invalid_and_duplicate_names_refused() {
        assert!(matches!(
            Labels::new([("1a", "x")]),
            Err(LabelError::InvalidName(_))
        ));
        assert!(matches!(
            Labels::new([("a", "x"), ("a", "y")]),
            Err(LabelError::Duplicate(_))
        ));
        assert!(matches!(
            Labels::new([("__name__", "a-b")]),
            Err(LabelError::InvalidMetricName(_))
        ));
        assert!(Labels::new([("__name__", "job:rate5m"), ("_x", "ü\"\n")]).is_ok());
        assert!(!is_valid_label_name("a:b"));
        assert!(!is_valid_label_name(""));
    }

    #[test]
    fn display_escapes_values() {
        let l = Labels::new([("__name__", "m"), ("path", "a\"b\\c\nd")]).unwrap();
        assert_eq!(l.to_string(), r#"m{path="a\"b\\c\nd"}"#);
    }

    #[test]
    fn stable_hash_separates_pairs() {
        let a = Labels::new([("a", "bc")]).unwrap();
        let b = Labels::new([("ab", "c")]).unwrap();
        assert_ne!(a.stable_hash(), b.stable_hash());
        assert_eq!(
            a.stable_hash(),
            Labels::new([("a", "bc")]).unwrap().stable_hash()
        );
    }
}
