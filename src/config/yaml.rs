//! YAML as a tree that remembers where every node came from, and a serde `Deserializer` over
//! that tree which names the key path and position of every error it raises.
//!
//! Why not deserialize straight from the parser: serde's derive reports *what* went wrong but
//! not *where*, and validation after deserialization (duplicate job names, a timeout longer
//! than its interval) needs positions of values that were deserialized long ago. Holding the
//! tree lets both kinds of error point at `file:line:column` and `scrape_configs[2].key`.
//!
//! Scalars keep their source text: a type is chosen only when serde asks for one, so a
//! password written as `0123` stays `"0123"` and is never read as a number first.

use std::collections::HashMap;
use std::fmt;

use granit_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    fn from_marker(m: &granit_parser::Marker) -> Pos {
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

/// One step of a key path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A 0-based list index.
    Index(usize),
}

/// Where a value sits in the document, written as `scrape_configs[2].scrape_interval`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    /// This path extended by a key.
    pub fn key(&self, k: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }

    /// This path extended by a list index.
    pub fn index(&self, i: usize) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A node's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A scalar with its text after YAML escapes; `plain` is false when it was quoted, a block
    /// scalar or tagged `!!str`, which makes it a string whatever it looks like.
    Scalar { text: String, plain: bool },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order, merge keys (`<<`) already applied.
    Map(Vec<Entry>),
}

/// A value and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The content.
    pub kind: Kind,
    /// Where the value itself starts.
    pub pos: Pos,
}

/// One mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key's text.
    pub key: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// The value.
    pub value: Node,
}

impl Node {
    /// True for `~`, `null`, and a missing value (`key:` with nothing after it).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The position to report for this node when it is the value of a key at `key_pos`:
    /// a scalar's own position, otherwise the key's (a nested block starts on the next line,
    /// which is not where a reader looks for "basic_auth").
    fn report_pos(&self, key_pos: Pos) -> Pos {
        match self.kind {
            Kind::Scalar { .. } => self.pos,
            _ => key_pos,
        }
    }

    /// The position of the node at `path`, or of its deepest existing ancestor when part of
    /// the path is absent (a defaulted value has no position of its own).
    pub fn locate(&self, path: &KeyPath) -> Pos {
        self.find(path, false)
    }

    /// Like [`Node::locate`], but for a path ending in a key, the key's own position: for
    /// problems with the key itself, such as an invalid label name.
    pub fn locate_key(&self, path: &KeyPath) -> Pos {
        self.find(path, true)
    }

    fn find(&self, path: &KeyPath, want_key: bool) -> Pos {
        let last = path.0.len().saturating_sub(1);
        let mut node = self;
        let mut pos = self.pos;
        for (i, seg) in path.0.iter().enumerate() {
            let next = match (&node.kind, seg) {
                (Kind::Map(entries), Seg::Key(k)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| {
                        let at = if want_key && i == last {
                            e.key_pos
                        } else {
                            e.value.report_pos(e.key_pos)
                        };
                        (&e.value, at)
                    })
                }
                (Kind::Seq(items), Seg::Index(i)) => items.get(*i).map(|n| (n, n.pos)),
                _ => None,
            };
            match next {
                Some((n, p)) => {
                    node = n;
                    pos = p;
                }
                None => break,
            }
        }
        pos
    }
}

/// An error in a YAML document: its message, and where, when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    /// What is wrong.
    pub msg: String,
    /// The key path of the offending value, once known.
    pub path: Option<KeyPath>,
    /// Its position, once known.
    pub pos: Option<Pos>,
}

impl DeError {
    fn at(msg: impl Into<String>, pos: Pos) -> DeError {
        DeError {
            msg: msg.into(),
            path: None,
            pos: Some(pos),
        }
    }

    /// Fills in the location unless an inner node already did: the innermost is the most
    /// precise.
    fn or_at(mut self, path: &KeyPath, pos: Pos) -> DeError {
        if self.pos.is_none() {
            self.pos = Some(pos);
            self.path = Some(path.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for DeError {}

/// Prometheus keys that tidemark knows but does not implement; naming them gives a clearer
/// error than "unknown key" for a prometheus.yml copied as is.
const UNSUPPORTED: &[&str] = &[
    "rule_files",
    "alerting",
    "scrape_config_files",
    "remote_read",
    "tracing",
    "otlp",
    "runtime",
    "query_log_file",
    "scrape_failure_log_file",
    "rule_query_offset",
    "metric_name_validation_scheme",
    "metric_name_escaping_scheme",
    "scrape_classic_histograms",
    "track_timestamps_staleness",
    "oauth2",
    "proxy_url",
    "no_proxy",
    "proxy_from_environment",
    "proxy_connect_header",
    "http_headers",
    "sigv4",
    "azuread",
    "google_iam",
    "round_robin_dns",
    "username_ref",
    "password_ref",
    "credentials_ref",
    "tsdb",
    "exemplars",
];

/// Levenshtein distance, for "did you mean" on misspelt keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn unknown_key_message(field: &str, expected: &[&str]) -> String {
    if UNSUPPORTED.contains(&field) || field.ends_with("_sd_configs") {
        return format!("`{field}` is a Prometheus setting that tidemark does not support");
    }
    let close = expected
        .iter()
        .map(|e| (edit_distance(field, e), *e))
        .filter(|(d, _)| *d <= 2)
        .min();
    match close {
        Some((_, e)) => format!("unknown key `{field}`; did you mean `{e}`?"),
        None if expected.is_empty() => format!("unknown key `{field}`: no keys are allowed here"),
        None => format!(
            "unknown key `{field}` (allowed here: {})",
            expected.join(", ")
        ),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            msg: msg.to_string(),
            path: None,
            pos: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(unknown_key_message(field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        de::Error::custom(format!(
            "unknown value {variant:?} (want one of: {})",
            expected.join(", ")
        ))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format!("missing required key `{field}`"))
    }
}

/// Bounds that keep a hostile document from exhausting memory or the stack.
const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 1_000_000;

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        seen: HashMap<String, Pos>,
        merged: Vec<Entry>,
        key: Option<(String, Pos)>,
    },
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| 1 + count_nodes(&e.value))
                .sum::<usize>()
        }
    }
}

/// Nesting depth of a node; recursion is bounded because no tree deeper than `MAX_DEPTH`
/// is ever built.
fn node_depth(n: &Node) -> usize {
    match &n.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(node_depth).max().unwrap_or(0),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|e| node_depth(&e.value))
                .max()
                .unwrap_or(0)
        }
    }
}

struct Builder {
    stack: Vec<Frame>,
    /// Anchored nodes with their depth: an alias must not nest the tree deeper than the
    /// source text could, or recursion over the tree could overflow the stack.
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    nodes: usize,
}

impl Builder {
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), DeError> {
        if anchor != 0 {
            let depth = node_depth(&node);
            self.anchors.insert(anchor, (node.clone(), depth));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                seen,
                merged,
                key,
                ..
            }) => match key.take() {
                None => match node.kind {
                    Kind::Scalar { text, .. } => *key = Some((text, node.pos)),
                    _ => return Err(DeError::at("mapping keys must be plain strings", node.pos)),
                },
                Some((k, key_pos)) if k == "<<" => merge_into(merged, node, key_pos)?,
                Some((k, key_pos)) => {
                    if let Some(first) = seen.get(&k) {
                        return Err(DeError::at(
                            format!("duplicate key `{k}` (first at line {})", first.line),
                            key_pos,
                        ));
                    }
                    seen.insert(k.clone(), key_pos);
                    entries.push(Entry {
                        key: k,
                        key_pos,
                        value: node,
                    });
                }
            },
        }
        Ok(())
    }
}

/// Applies a YAML merge key: the merged mappings supply keys the mapping does not set itself.
fn merge_into(merged: &mut Vec<Entry>, node: Node, key_pos: Pos) -> Result<(), DeError> {
    let sources = match node.kind {
        Kind::Map(entries) => vec![entries],
        Kind::Seq(items) => {
            let mut v = Vec::new();
            for item in items {
                match item.kind {
                    Kind::Map(entries) => v.push(entries),
                    _ => return Err(DeError::at("`<<` merges only mappings", item.pos)),
                }
            }
            v
        }
        Kind::Scalar { .. } => return Err(DeError::at("`<<` merges only mappings", key_pos)),
    };
    for entries in sources {
        for e in entries {
            if !merged.iter().any(|m| m.key == e.key) {
                merged.push(e);
            }
        }
    }
    Ok(())
}

/// Parses one YAML document into a tree; `None` for a document with no content.
pub fn parse(text: &str) -> Result<Option<Node>, DeError> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
    };
    let mut documents = 0;
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| {
            DeError::at(
                format!("YAML syntax error: {}", e.info()),
                Pos::from_marker(e.marker()),
            )
        })?;
        let pos = Pos::from_marker(&span.start);
        if b.stack.len() > MAX_DEPTH {
            return Err(DeError::at(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                pos,
            ));
        }
        match ev {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(DeError::at(
                        "more than one YAML document; a config file holds exactly one",
                        pos,
                    ));
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                b.nodes += 1;
                let forced_string = tag.is_some_and(|t| t.is_yaml_core_schema_tag("str"));
                let plain = style == ScalarStyle::Plain && !forced_string;
                let node = Node {
                    kind: Kind::Scalar {
                        text: value.into_owned(),
                        plain,
                    },
                    pos,
                };
                b.complete(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some((target, depth)) = b.anchors.get(&id) else {
                    return Err(DeError::at("alias to an unknown anchor", pos));
                };
                if b.stack.len() + depth > MAX_DEPTH {
                    return Err(DeError::at(
                        format!("nesting deeper than {MAX_DEPTH} levels (through an alias)"),
                        pos,
                    ));
                }
                b.nodes += count_nodes(target);
                if b.nodes > MAX_NODES {
                    return Err(DeError::at(
                        "document expands to too many nodes (alias bomb?)",
                        pos,
                    ));
                }
                let node = target.clone();
                b.complete(node, 0)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                b.nodes += 1;
                b.stack.push(Frame::Seq {
                    pos,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, _) => {
                b.nodes += 1;
                b.stack.push(Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    seen: HashMap::new(),
                    merged: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match b.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items }) => (
                        Node {
                            kind: Kind::Seq(items),
                            pos,
                        },
                        anchor,
                    ),
                    Some(Frame::Map {
                        pos,
                        anchor,
                        mut entries,
                        seen,
                        merged,
                        ..
                    }) => {
                        entries.extend(merged.into_iter().filter(|m| !seen.contains_key(&m.key)));
                        (
                            Node {
                                kind: Kind::Map(entries),
                                pos,
                            },
                            anchor,
                        )
                    }
                    None => return Err(DeError::at("unbalanced YAML structure", pos)),
                };
                b.complete(node, anchor)?;
            }
            _ => {}
        }
        if b.nodes > MAX_NODES {
            return Err(DeError::at("document has too many nodes", pos));
        }
    }
    Ok(b.root.filter(|r| !r.is_null()))
}

/// Deserializes `T` from a tree, every error carrying the key path and position.
pub fn from_node<'de, T: de::Deserialize<'de>>(root: &'de Node) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node: root,
        path: KeyPath::default(),
        at: root.pos,
        in_seq: false,
    })
}

/// A deserializer for one node.
struct NodeDe<'de> {
    node: &'de Node,
    path: KeyPath,
    /// The position errors about this node report.
    at: Pos,
    /// A null list item cannot stand for an empty mapping: `- ~` is almost always a mistake.
    in_seq: bool,
}

fn describe(node: &Node) -> String {
    match &node.kind {
        _ if node.is_null() => "an empty value".into(),
        Kind::Scalar { text, .. } => format!("{text:?}"),
        Kind::Seq(_) => "a list".into(),
        Kind::Map(_) => "a mapping".into(),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    // YAML 1.1's words too, because Prometheus's YAML library accepts them.
    match s {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn int_text(s: &str) -> Option<String> {
    let s = s.strip_prefix('+').unwrap_or(s);
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        || digits.starts_with('_')
        || digits.ends_with('_')
    {
        return None;
    }
    Some(s.replace('_', ""))
}

impl<'de> NodeDe<'de> {
    fn wrap<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.or_at(&self.path, self.at))
    }

    fn type_error(&self, want: &str) -> DeError {
        DeError {
            msg: format!("expected {want}, found {}", describe(self.node)),
            path: Some(self.path.clone()),
            pos: Some(self.at),
        }
    }

    fn scalar(&self) -> Option<&'de str> {
        match &self.node.kind {
            Kind::Scalar { text, .. } if !self.node.is_null() => Some(text.as_str()),
            _ => None,
        }
    }

    fn int<T: std::str::FromStr>(&self, want: &str) -> Result<T, DeError> {
        self.scalar()
            .and_then(int_text)
            .and_then(|t| t.parse::<T>().ok())
            .ok_or_else(|| self.type_error(want))
    }

    fn float(&self) -> Result<f64, DeError> {
        let s = self.scalar().ok_or_else(|| self.type_error("a number"))?;
        let v = match s {
            ".inf" | ".Inf" | ".INF" | "+.inf" => f64::INFINITY,
            "-.inf" | "-.Inf" | "-.INF" => f64::NEG_INFINITY,
            ".nan" | ".NaN" | ".NAN" => f64::NAN,
            _ => s.parse().map_err(|_| self.type_error("a number"))?,
        };
        Ok(v)
    }

    fn child(&self, node: &'de Node, path: KeyPath, at: Pos, in_seq: bool) -> NodeDe<'de> {
        NodeDe {
            node,
            path,
            at,
            in_seq,
        }
    }

    fn visit_mapping<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        static EMPTY: Vec<Entry> = Vec::new();
        let entries = match &self.node.kind {
            Kind::Map(entries) => entries,
            _ if self.node.is_null() && self.in_seq => {
                return Err(self.type_error("a mapping (an empty list entry is a mistake)"));
            }
            _ if self.node.is_null() => &EMPTY,
            _ => return Err(self.type_error("a mapping")),
        };
        let r = visitor.visit_map(MapAcc {
            parent: &self,
            iter: entries.iter(),
            current: None,
        });
        self.wrap(r)
    }
}

macro_rules! de_int {
    ($($method:ident $visit:ident $t:ty, $want:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let v: $t = self.int($want)?;
            let r = visitor.$visit(v);
            self.wrap(r)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            _ if self.node.is_null() => visitor.visit_unit(),
            Kind::Scalar { text, plain: true } => {
                if let Some(b) = parse_bool(text) {
                    visitor.visit_bool(b)
                } else if let Some(i) = int_text(text).and_then(|t| t.parse::<i64>().ok()) {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_borrowed_str(text)
                }
            }
            Kind::Scalar { text, .. } => visitor.visit_borrowed_str(text),
            Kind::Seq(_) => return self.deserialize_seq(visitor),
            Kind::Map(_) => return self.visit_mapping(visitor),
        };
        self.wrap(r)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let b = self
            .scalar()
            .and_then(parse_bool)
            .ok_or_else(|| self.type_error("true or false"))?;
        let r = visitor.visit_bool(b);
        self.wrap(r)
    }

    de_int! {
        deserialize_i8 visit_i8 i8, "an integer";
        deserialize_i16 visit_i16 i16, "an integer";
        deserialize_i32 visit_i32 i32, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u8 u8, "a non-negative integer";
        deserialize_u16 visit_u16 u16, "a non-negative integer";
        deserialize_u32 visit_u32 u32, "a non-negative integer";
        deserialize_u64 visit_u64 u64, "a non-negative integer";
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let v = self.float()?;
        let r = visitor.visit_f64(v);
        self.wrap(r)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            _ if self.node.is_null() => visitor.visit_borrowed_str(""),
            Kind::Scalar { text, .. } => visitor.visit_borrowed_str(text),
            _ => return Err(self.type_error("a string")),
        };
        self.wrap(r)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            let r = visitor.visit_none();
            return self.wrap(r);
        }
        let at = (self.path.clone(), self.at);
        visitor.visit_some(self).map_err(|e| e.or_at(&at.0, at.1))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if !self.node.is_null() {
            return Err(self.type_error("an empty value"));
        }
        let r = visitor.visit_unit();
        self.wrap(r)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let at = (self.path.clone(), self.at);
        visitor
            .visit_newtype_struct(self)
            .map_err(|e| e.or_at(&at.0, at.1))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        static EMPTY: Vec<Node> = Vec::new();
        let items = match &self.node.kind {
            Kind::Seq(items) => items,
            _ if self.node.is_null() => &EMPTY,
            _ => return Err(self.type_error("a list")),
        };
        let r = visitor.visit_seq(SeqAcc {
            parent: &self,
            iter: items.iter().enumerate(),
        });
        self.wrap(r)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_mapping(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_mapping(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let s = self
            .scalar()
            .ok_or_else(|| self.type_error("one of the named values"))?;
        let r = visitor.visit_enum(s.into_deserializer());
        self.wrap(r)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = visitor.visit_unit();
        self.wrap(r)
    }
}

struct SeqAcc<'p, 'de> {
    parent: &'p NodeDe<'de>,
    iter: std::iter::Enumerate<std::slice::Iter<'de, Node>>,
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_, 'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, item)) = self.iter.next() else {
            return Ok(None);
        };
        let path = self.parent.path.index(i);
        let child = self.parent.child(item, path.clone(), item.pos, true);
        // Errors raised after the node was read (a `Deserialize` impl rejecting the value)
        // carry no position yet: they belong to this item.
        seed.deserialize(child)
            .map(Some)
            .map_err(|e| e.or_at(&path, item.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

struct MapAcc<'p, 'de> {
    parent: &'p NodeDe<'de>,
    iter: std::slice::Iter<'de, Entry>,
    current: Option<&'de Entry>,
}

impl<'de> de::MapAccess<'de> for MapAcc<'_, 'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(e) = self.iter.next() else {
            return Ok(None);
        };
        self.current = Some(e);
        let key: de::value::BorrowedStrDeserializer<'de, DeError> =
            de::value::BorrowedStrDeserializer::new(&e.key);
        seed.deserialize(key)
            .map(Some)
            .map_err(|err| err.or_at(&self.parent.path.key(&e.key), e.key_pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(e) = self.current.take() else {
            return Err(de::Error::custom("value requested before its key"));
        };
        let at = e.value.report_pos(e.key_pos);
        let path = self.parent.path.key(&e.key);
        let child = self.parent.child(&e.value, path.clone(), at, false);
        seed.deserialize(child).map_err(|err| err.or_at(&path, at))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}
