//! The configuration in force written back as YAML, for `/api/v1/status/config`.
//!
//! As in Prometheus, what is shown is the parsed configuration serialized again (defaults
//! filled in, inherited values resolved, relative file names joined), never the file's text:
//! a secret is hidden by its type ([`super::Secret`] serializes as `<secret>`), so no way of
//! spelling it in the file (flow maps, quoted keys, multi-line scalars) can show it.
//!
//! serde gives the structure; this module keeps it in field order (serde_json's map would sort
//! it) and writes block-style YAML that the loader reads back: a scalar is written plain only
//! when YAML reads it back as the same string, otherwise double-quoted.

use std::fmt;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::Config;

impl Config {
    /// The configuration as `/api/v1/status/config` shows it: this parsed configuration
    /// written back as YAML (defaults and inherited values filled in), every [`super::Secret`]
    /// as `<secret>`, passwords in URLs as `xxxxx` and header values hidden.
    pub fn render(&self) -> String {
        to_yaml(self).unwrap_or_else(|e| format!("# the configuration cannot be shown: {e}\n"))
    }
}

/// A serialized value, maps in field order.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Value>),
    Map(Vec<(String, Value)>),
}

/// Why a value could not be serialized (a file name that is not UTF-8).
#[derive(Debug)]
pub struct RenderError(String);

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

impl ser::Error for RenderError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        RenderError(msg.to_string())
    }
}

/// `v` as block-style YAML; `None` (`Option::None`) values and empty lists and maps are left
/// out, as Prometheus's `omitempty` does.
pub fn to_yaml<T: Serialize + ?Sized>(v: &T) -> Result<String, RenderError> {
    let tree = v.serialize(ValueSer)?;
    let mut out = String::new();
    match &tree {
        Value::Map(entries) => write_map(&mut out, entries, 0),
        other => {
            write_value_line(&mut out, other, 0);
        }
    }
    Ok(out)
}

/// Left out of a map: unset or empty.
fn omitted(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Seq(s) => s.is_empty(),
        Value::Map(m) => m.iter().all(|(_, v)| omitted(v)),
        _ => false,
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_map(out: &mut String, entries: &[(String, Value)], indent: usize) {
    for (k, v) in entries.iter().filter(|(_, v)| !omitted(v)) {
        pad(out, indent);
        out.push_str(&scalar(k));
        out.push(':');
        match v {
            Value::Map(m) => {
                out.push('\n');
                write_map(out, m, indent + 2);
            }
            // Items of a list under a key sit at the key's indentation, as Prometheus
            // (yaml.v2) writes them.
            Value::Seq(s) => {
                out.push('\n');
                write_seq(out, s, indent);
            }
            _ => {
                out.push(' ');
                write_value_line(out, v, indent);
            }
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        // The item's block is written at the indentation after `- `, its first line joined
        // to the dash.
        let mut block = String::new();
        match item {
            Value::Map(m) if !omitted(item) => write_map(&mut block, m, indent + 2),
            Value::Seq(s) if !s.is_empty() => write_seq(&mut block, s, indent + 2),
            _ => write_value_line(&mut block, item, indent + 2),
        }
        out.push_str(block.trim_start_matches(' '));
    }
}

/// A scalar (or an empty collection) and the end of its line.
fn write_value_line(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) if f.is_nan() => out.push_str(".nan"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { ".inf" } else { "-.inf" }),
        Value::Float(f) => out.push_str(&format!("{f:?}")),
        Value::Str(s) => out.push_str(&scalar(s)),
        Value::Seq(s) if s.is_empty() => out.push_str("[]"),
        Value::Map(m) if omitted(v) || m.is_empty() => out.push_str("{}"),
        Value::Seq(s) => {
            out.push('\n');
            write_seq(out, s, indent);
            return;
        }
        Value::Map(m) => {
            out.push('\n');
            write_map(out, m, indent);
            return;
        }
    }
    out.push('\n');
}

/// A string as a YAML scalar: plain when YAML reads it back as this same string, otherwise
/// double-quoted with JSON's escapes (which YAML's double-quoted style shares).
fn scalar(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
    }
}

fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    // Indicators that start something else than a plain scalar, or that a following space
    // makes a key or a sequence entry.
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) || first.is_whitespace() {
        return false;
    }
    if s.ends_with(char::is_whitespace) || s.ends_with(':') {
        return false;
    }
    if s.contains(": ") || s.contains(" #") || s.contains(['\t', ',', '[', ']', '{', '}']) {
        return false;
    }
    if s.chars().any(|c| c.is_control() || c == '\u{feff}') {
        return false;
    }
    // Words and numbers YAML would read as something else than a string.
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "~" | "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n"
    ) {
        return false;
    }
    let number_like = lower.trim_start_matches(['+', '-']);
    let numeric = |c: char| c.is_ascii_digit() || "_:.".contains(c);
    if matches!(number_like, ".inf" | ".nan")
        || number_like.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && (number_like.parse::<f64>().is_ok()
                || ["0x", "0o", "0b"].iter().any(|p| {
                    number_like.strip_prefix(p).is_some_and(|r| {
                        !r.is_empty() && r.chars().all(|c| c.is_ascii_hexdigit() || c == '_')
                    })
                })
                // Sexagesimal and `1_000` integers of YAML 1.1 (an address such as
                // `10.0.0.1:80` has more than one dot and is a string everywhere).
                || number_like.chars().all(numeric) && number_like.matches('.').count() <= 1)
    {
        return false;
    }
    true
}

/// Serializes into a [`Value`].
struct ValueSer;

/// A list or tuple being serialized.
struct SeqSer(Vec<Value>);

/// A map or struct being serialized.
struct MapSer {
    entries: Vec<(String, Value)>,
    key: Option<String>,
}

/// The text of a map key.
fn key_text(v: Value) -> Result<String, RenderError> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Int(i) => Ok(i.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(RenderError("a map key must be a string".into())),
    }
}

impl ser::Serializer for ValueSer {
    type Ok = Value;
    type Error = RenderError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = Impossible<Value, RenderError>;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = Impossible<Value, RenderError>;

    fn serialize_bool(self, v: bool) -> Result<Value, RenderError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, RenderError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, RenderError> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, RenderError> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, RenderError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, RenderError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Value, RenderError> {
        Err(RenderError("bytes cannot be shown".into()))
    }
    fn serialize_none(self) -> Result<Value, RenderError> {
        Ok(Value::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, RenderError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, RenderError> {
        Ok(Value::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, RenderError> {
        Ok(Value::Null)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, RenderError> {
        Ok(Value::Str(variant.to_string()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Value, RenderError> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, RenderError> {
        Ok(Value::Map(vec![(variant.to_string(), v.serialize(self)?)]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, RenderError> {
        Ok(SeqSer(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, RenderError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, RenderError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, RenderError> {
        Err(RenderError("tuple variants cannot be shown".into()))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapSer, RenderError> {
        Ok(MapSer {
            entries: Vec::with_capacity(len.unwrap_or(0)),
            key: None,
        })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<MapSer, RenderError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, RenderError> {
        Err(RenderError("struct variants cannot be shown".into()))
    }
}

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = RenderError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), RenderError> {
        self.0.push(v.serialize(ValueSer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, RenderError> {
        Ok(Value::Seq(self.0))
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = RenderError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), RenderError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, RenderError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = RenderError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), RenderError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, RenderError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = RenderError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), RenderError> {
        self.key = Some(key_text(k.serialize(ValueSer)?)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), RenderError> {
        let k = self
            .key
            .take()
            .ok_or_else(|| RenderError("a map value without a key".into()))?;
        self.entries.push((k, v.serialize(ValueSer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, RenderError> {
        Ok(Value::Map(self.entries))
    }
}

impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = RenderError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        k: &'static str,
        v: &T,
    ) -> Result<(), RenderError> {
        self.entries.push((k.to_string(), v.serialize(ValueSer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, RenderError> {
        Ok(Value::Map(self.entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_yaml_would_read_differently_are_quoted() {
        for s in [
            "",
            "true",
            "No",
            "null",
            "~",
            "10",
            "1.5",
            "-3",
            "0x1f",
            "1e3",
            ".inf",
            "12:30",
            "0b101",
            "0o17",
            "- a",
            "a: b",
            "a #b",
            "#x",
            "{a}",
            "[a]",
            "a,b",
            "*x",
            "&x",
            "!x",
            "|",
            ">",
            "'q'",
            "\"q\"",
            "%x",
            "@x",
            "`x",
            " lead",
            "trail ",
            "tab\there",
            "line\nbreak",
            "key:",
            "?x",
        ] {
            assert!(scalar(s).starts_with('"'), "{s:?} written plain");
        }
        for s in [
            "<secret>",
            "job",
            "127.0.0.1:9090",
            "/metrics",
            "(.*)",
            "$1",
            ";",
            "15s",
            "a:b",
            "http://h:1/p?x=1",
            "TLS12",
            "PrometheusText0.0.4",
            "x#y",
            "0B",
            "10.0.0.1:80",
        ] {
            assert_eq!(scalar(s), s);
        }
    }

    #[test]
    fn lists_of_maps_are_written_as_prometheus_writes_them() {
        #[derive(Serialize)]
        struct Job {
            job_name: &'static str,
            targets: Vec<&'static str>,
            empty: Vec<u8>,
            unset: Option<u8>,
        }
        #[derive(Serialize)]
        struct Top {
            jobs: Vec<Job>,
            nested: Vec<Vec<u8>>,
        }
        let y = to_yaml(&Top {
            jobs: vec![Job {
                job_name: "a",
                targets: vec!["h:1", "h:2"],
                empty: vec![],
                unset: None,
            }],
            nested: vec![vec![1, 2], vec![]],
        })
        .unwrap();
        assert_eq!(
            y,
            "jobs:\n- job_name: a\n  targets:\n  - h:1\n  - h:2\nnested:\n- - 1\n  - 2\n- []\n"
        );
    }
}
