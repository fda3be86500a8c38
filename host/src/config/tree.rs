//! A YAML/JSON document as a tree whose every node remembers where it was written.
//!
//! serde would stop at the first error; validation wants all of them, each with its line:col. So the
//! document is first read into this loose tree (serde-saphyr's `Spanned` gives the locations; JSON is
//! read by the same parser, as YAML 1.2 is a superset of it), and `validate` walks it.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Line and column (both 1-based) of a node in its source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Pos {
            line: l.line() as u32,
            col: l.column() as u32,
        }
    }
}

/// One node of the document.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
    /// True when a `{{secret...}}` template contributed to this scalar: its text is never printed.
    pub secret: bool,
}

/// A key of a mapping, with its own position (unknown-key errors point at the key, not the value).
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub name: String,
    pub pos: Pos,
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Node {
    /// The node at a dotted key path below this one (`tables.sink.mode`), if written.
    pub(crate) fn find(&self, dotted: &str) -> Option<&Node> {
        dotted
            .split('.')
            .try_fold(self, |node, key| match &node.value {
                Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
                _ => None,
            })
    }
}

impl Value {
    /// What kind of value this is, in the words an error message uses.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    /// The node as plain JSON (for plugin configs and other free-form sections).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.name.clone(), v.to_json()))
                .collect(),
        }
    }

    /// Visits every scalar string in the tree, mutably (template resolution).
    pub(crate) fn walk_strings_mut(
        &mut self,
        path: &str,
        f: &mut dyn FnMut(&str, &mut String, Pos, &mut bool),
    ) {
        match &mut self.value {
            Value::Str(s) => f(path, s, self.pos, &mut self.secret),
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    item.walk_strings_mut(&format!("{path}[{i}]"), f);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    let child = if path.is_empty() {
                        k.name.clone()
                    } else {
                        format!("{path}.{}", k.name)
                    };
                    v.walk_strings_mut(&child, f);
                }
            }
            _ => {}
        }
    }
}

/// Parses YAML or JSON text into a located tree. The error is serde-saphyr's, which carries line and column.
pub(crate) fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    let doc: Spanned<Value> = serde_saphyr::from_str(text)?;
    Ok(Node {
        value: doc.value,
        pos: doc.referenced.into(),
        secret: false,
    })
}

fn node(s: Spanned<Value>) -> Node {
    Node {
        value: s.value,
        pos: s.referenced.into(),
        secret: false,
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        i64::try_from(v)
            .map(Value::Int)
            .or(Ok(Value::Float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(node(item));
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((
                Key {
                    name: key.value,
                    pos: key.referenced.into(),
                },
                node(value),
            ));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_types() {
        let doc = parse("a:\n  b: 20\n  c: \"20\"\n  d: [1.5, true, ~]\n").unwrap();
        let Value::Map(top) = &doc.value else {
            panic!("not a map")
        };
        let Value::Map(a) = &top[0].1.value else {
            panic!("not a map")
        };
        assert_eq!(a[0].0.name, "b");
        assert_eq!(a[0].0.pos, Pos { line: 2, col: 3 });
        assert!(matches!(a[0].1.value, Value::Int(20)));
        assert_eq!(a[0].1.pos, Pos { line: 2, col: 6 });
        assert!(matches!(&a[1].1.value, Value::Str(s) if s == "20"));
        let Value::Seq(d) = &a[2].1.value else {
            panic!("not a list")
        };
        assert!(matches!(d[0].value, Value::Float(_)));
        assert!(matches!(d[1].value, Value::Bool(true)));
        assert!(matches!(d[2].value, Value::Null));
    }

    #[test]
    fn reads_json_with_positions() {
        let doc = parse("{\n  \"execution\": {\"partitions\": 4}\n}\n").unwrap();
        let Value::Map(top) = &doc.value else {
            panic!("not a map")
        };
        assert_eq!(top[0].0.name, "execution");
        assert_eq!(top[0].0.pos.line, 2);
    }
}
