//! Typed reading of the located tree: each accessor records an error (with path and line:col) instead of
//! stopping, so that one pass reports everything that is wrong.

use super::error::{ConfigError, did_you_mean};
use super::keys::{KeySpec, Kind};
use super::tree::{Key, Node, Pos, Value};

/// A value found at a key path.
#[derive(Clone, Copy)]
pub(crate) struct Field<'a> {
    pub(crate) path: &'a str,
    pub(crate) node: &'a Node,
}

/// A mapping whose keys were checked against the known ones.
pub(crate) struct Section<'a> {
    pub(crate) path: String,
    pub(crate) pos: Pos,
    /// The keys it accepts.
    keys: Vec<KeySpec>,
    /// (canonical key, key path as written, value)
    found: Vec<(&'static str, String, &'a Node)>,
}

impl<'a> Section<'a> {
    /// The kind of a known key.
    fn kind(&self, canonical: &str) -> Option<Kind> {
        self.keys
            .iter()
            .find(|k| k.name == canonical)
            .map(|k| k.kind)
    }

    /// The value of a known key (under any of its spellings).
    pub(crate) fn get(&self, canonical: &str) -> Option<Field<'_>> {
        self.found
            .iter()
            .find(|(c, _, _)| *c == canonical)
            .map(|(_, path, node)| Field { path, node })
    }

    pub(crate) fn has(&self, canonical: &str) -> bool {
        self.get(canonical).is_some()
    }

    /// Path of a child key, for messages about a missing key.
    pub(crate) fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }
}

/// Collects errors (and warnings) while reading the tree.
#[derive(Default)]
pub(crate) struct Walker {
    pub(crate) errors: Vec<ConfigError>,
    /// What is accepted but deserves a word: keys with no effect, risky settings.
    pub(crate) warnings: Vec<ConfigError>,
}

impl Walker {
    pub(crate) fn error(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, pos, message));
    }

    pub(crate) fn warn(&mut self, path: &str, pos: Pos, message: impl Into<String>) {
        self.warnings.push(ConfigError::new(path, pos, message));
    }

    /// Whether `name` can be an HTTP header's name; else an error at `path` (the name is not
    /// quoted: it may come from a secret).
    pub(crate) fn header_name(&mut self, path: &str, pos: Pos, name: &str) -> bool {
        let ok = http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        if !ok {
            self.error(path, pos, "not a valid header name");
        }
        ok
    }

    /// Whether `value` can be an HTTP header's value (a credential with a line break in it cannot
    /// be sent: refused here, not row by row); else an error at `path`, the value not quoted.
    pub(crate) fn header_value(&mut self, path: &str, pos: Pos, value: &str) -> bool {
        let ok = http::HeaderValue::from_str(value).is_ok();
        if !ok {
            self.error(
                path,
                pos,
                "not a valid HTTP header value (a line break or another control character?)",
            );
        }
        ok
    }

    /// Reads a mapping whose keys must be among `keys` (each under any of its spellings). `None` (the
    /// section is absent) reads as an empty section.
    pub(crate) fn section<'a>(
        &mut self,
        node: Option<Field<'a>>,
        path: &str,
        pos: Pos,
        keys: &[KeySpec],
    ) -> Section<'a> {
        let mut section = Section {
            path: path.to_owned(),
            pos,
            keys: keys.to_vec(),
            found: Vec::new(),
        };
        let Some(field) = node else { return section };
        section.pos = field.node.pos;
        let entries: &'a [(Key, Node)] = match &field.node.value {
            Value::Map(entries) => entries,
            Value::Null => return section,
            other => {
                self.error(
                    path,
                    field.node.pos,
                    format!("expected a mapping, found {}", other.kind()),
                );
                return section;
            }
        };
        for (key, value) in entries {
            let key_path = section.child(&key.name);
            match keys.iter().find(|k| k.is(&key.name)) {
                Some(spec) => {
                    let canonical = spec.name;
                    if let Some((_, earlier, _)) =
                        section.found.iter().find(|(c, _, _)| *c == canonical)
                    {
                        let message = format!("duplicate setting: `{earlier}` already gives it");
                        self.error(&key_path, key.pos, message);
                        continue;
                    }
                    if let Kind::NoEffect(why) = spec.kind {
                        self.warn(&key_path, key.pos, format!("has no effect: {why}"));
                        continue;
                    }
                    section.found.push((canonical, key_path, value));
                }
                None => {
                    let all = keys
                        .iter()
                        .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()));
                    let message = match did_you_mean(&key.name, all) {
                        Some(suggestion) => {
                            format!("unknown key `{}`; did you mean `{suggestion}`?", key.name)
                        }
                        None => {
                            let list: Vec<&str> = keys.iter().map(|k| k.name).collect();
                            format!(
                                "unknown key `{}` (expected one of: {})",
                                key.name,
                                list.join(", ")
                            )
                        }
                    };
                    self.error(&key_path, key.pos, message);
                }
            }
        }
        section
    }

    pub(crate) fn require<'a>(
        &mut self,
        section: &'a Section<'_>,
        canonical: &str,
        what: &str,
    ) -> Option<Field<'a>> {
        let found = section.get(canonical);
        if found.is_none() {
            let path = section.child(canonical);
            self.error(&path, section.pos, format!("missing required key: {what}"));
        }
        found
    }

    fn type_error(&mut self, f: Field<'_>, expected: &str) {
        let found = match &f.node.value {
            _ if f.node.secret => format!("{} (from a secret, not shown)", f.node.value.kind()),
            Value::Str(s) => format!("\"{s}\""),
            Value::Int(i) => i.to_string(),
            Value::Float(x) => x.to_string(),
            Value::Bool(b) => b.to_string(),
            other => other.kind().to_owned(),
        };
        self.error(
            f.path,
            f.node.pos,
            format!("expected {expected}, found {found}"),
        );
    }

    /// An integer in `min..=max`. A string holding an integer is accepted (values from `{{env.X}}`).
    pub(crate) fn int(&mut self, f: Option<Field<'_>>, min: i64, max: i64) -> Option<i64> {
        let f = f?;
        let value = match &f.node.value {
            Value::Int(i) => Some(*i),
            Value::Float(x) if x.fract() == 0.0 => Some(*x as i64),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match value {
            Some(v) if (min..=max).contains(&v) => Some(v),
            Some(v) => {
                let message = if max == i64::MAX {
                    format!("must be at least {min}, found {v}")
                } else {
                    format!("must be between {min} and {max}, found {v}")
                };
                self.error(f.path, f.node.pos, message);
                None
            }
            None => {
                self.type_error(f, "an integer");
                None
            }
        }
    }

    /// A number greater than `above` (seconds, rates).
    pub(crate) fn number(&mut self, f: Option<Field<'_>>, above: f64) -> Option<f64> {
        let f = f?;
        let value = match &f.node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        match value {
            Some(v) if v.is_finite() && v > above => Some(v),
            Some(v) => {
                self.error(
                    f.path,
                    f.node.pos,
                    format!("must be greater than {above}, found {v}"),
                );
                None
            }
            None => {
                self.type_error(f, "a number");
                None
            }
        }
    }

    /// A duration in seconds, from 0 to `max`.
    pub(crate) fn seconds(
        &mut self,
        f: Option<Field<'_>>,
        max: f64,
    ) -> Option<std::time::Duration> {
        let field = f?;
        let v = self.number(f, f64::NEG_INFINITY)?;
        if !(0.0..=max).contains(&v) {
            self.error(
                field.path,
                field.node.pos,
                format!("must be between 0 and {max} seconds, found {v}"),
            );
            return None;
        }
        Some(std::time::Duration::from_secs_f64(v))
    }

    /// A string; numbers and booleans are taken as their text (YAML users write `version: 2`).
    pub(crate) fn string(&mut self, f: Option<Field<'_>>) -> Option<String> {
        let f = f?;
        match &f.node.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(x) => Some(x.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.type_error(f, "a string");
                None
            }
        }
    }

    /// `true` or `false`.
    pub(crate) fn boolean(&mut self, f: Option<Field<'_>>) -> Option<bool> {
        let f = f?;
        match &f.node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.type_error(f, "true or false");
                None
            }
        }
    }

    /// A non-empty string.
    pub(crate) fn name(&mut self, f: Option<Field<'_>>) -> Option<String> {
        let node = f?;
        let s = self.string(f)?;
        if s.trim().is_empty() {
            self.error(node.path, node.node.pos, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// One of `options` (case-insensitive); returns the option as listed.
    pub(crate) fn choice(
        &mut self,
        f: Option<Field<'_>>,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let field = f?;
        let s = self.string(f)?;
        if let Some(o) = options.iter().find(|o| o.eq_ignore_ascii_case(s.trim())) {
            return Some(o);
        }
        let hint = match did_you_mean(&s.to_ascii_lowercase(), options.iter().copied()) {
            Some(m) => format!("; did you mean `{m}`?"),
            None => String::new(),
        };
        self.error(
            field.path,
            field.node.pos,
            format!("`{s}` is not one of: {}{hint}", options.join(", ")),
        );
        None
    }

    /// The items of a list, each with its own path.
    pub(crate) fn list<'a>(&mut self, f: Option<Field<'a>>) -> Vec<(String, &'a Node)> {
        let Some(f) = f else { return Vec::new() };
        match &f.node.value {
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("{}[{i}]", f.path), n))
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.type_error(f, "a list");
                Vec::new()
            }
        }
    }

    pub(crate) fn string_list(&mut self, f: Option<Field<'_>>) -> Vec<String> {
        self.list(f)
            .iter()
            .filter_map(|(path, node)| self.name(Some(Field { path, node })))
            .collect()
    }

    /// A mapping of names to scalar values (headers). Keeps whether each value came from a secret.
    pub(crate) fn string_map(&mut self, f: Option<Field<'_>>) -> Vec<(String, String, bool)> {
        let Some(f) = f else { return Vec::new() };
        match &f.node.value {
            Value::Map(entries) => entries
                .iter()
                .filter_map(|(k, v)| {
                    let path = format!("{}.{}", f.path, k.name);
                    self.string(Some(Field {
                        path: &path,
                        node: v,
                    }))
                    .map(|s| (k.name.clone(), s, v.secret))
                })
                .collect(),
            Value::Null => Vec::new(),
            _ => {
                self.type_error(f, "a mapping");
                Vec::new()
            }
        }
    }

    /// A key of kind [`Kind::Int`] of `s`, within its bounds.
    pub(crate) fn int_of(&mut self, s: &Section<'_>, key: &str) -> Option<i64> {
        let (min, max) = match s.kind(key) {
            Some(Kind::Int { min, max }) => (min, max),
            _ => (i64::MIN, i64::MAX),
        };
        self.int(s.get(key), min, max)
    }

    /// A key of kind [`Kind::Number`] of `s`.
    pub(crate) fn number_of(&mut self, s: &Section<'_>, key: &str) -> Option<f64> {
        let above = match s.kind(key) {
            Some(Kind::Number { above }) => above,
            _ => f64::NEG_INFINITY,
        };
        self.number(s.get(key), above)
    }

    /// A key of kind [`Kind::Seconds`] of `s`.
    pub(crate) fn seconds_of(&mut self, s: &Section<'_>, key: &str) -> Option<std::time::Duration> {
        let max = match s.kind(key) {
            Some(Kind::Seconds { max }) => max,
            _ => f64::MAX,
        };
        self.seconds(s.get(key), max)
    }

    /// A key of kind [`Kind::Choice`] of `s`: one of its words.
    pub(crate) fn choice_of(&mut self, s: &Section<'_>, key: &str) -> Option<&'static str> {
        let options = match s.kind(key) {
            Some(Kind::Choice(options)) => options,
            _ => &[],
        };
        self.choice(s.get(key), options)
    }
}
