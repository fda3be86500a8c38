//! A JSON Schema of the pipeline file, generated from the same key descriptions the validator walks
//! ([`super::keys`]): names, legacy spellings, kinds with their bounds and choices, defaults and docs.
//! Never written by hand, so it cannot drift from what `validate` accepts. For editors (the YAML
//! language server's `# yaml-language-server: $schema=...`) and for checks in CI.
//!
//! The schema is as strict about keys as the validator (unknown keys are refused) and a little
//! looser about values: a number, a boolean or a URL may also be written as a `{{env.X}}` /
//! `{{secret.S:K}}` template (resolved before validation), and choices are matched in any case.

use serde_json::{Map, Value, json};

use super::keys::{KeySpec, Kind, TOP};

/// Which JSON Schema draft to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draft {
    /// 2020-12 (the default).
    Draft2020,
    /// Draft 7, for older editors.
    Draft7,
}

/// A `{{...}}` template, which may stand for any value.
fn template() -> Value {
    json!({"type": "string", "pattern": "^\\s*\\{\\{.*\\}\\}\\s*$"})
}

/// `schema`, or a template standing for it.
fn or_template(schema: Value) -> Value {
    json!({"anyOf": [schema, template()]})
}

fn text() -> Value {
    json!({"type": ["string", "number", "boolean"]})
}

fn kind(k: &Kind) -> Value {
    match k {
        Kind::Text => text(),
        Kind::Int { min, max } => {
            or_template(json!({"type": "integer", "minimum": min, "maximum": max}))
        }
        Kind::Number { above } => or_template(json!({"type": "number", "exclusiveMinimum": above})),
        Kind::Seconds { max } => {
            or_template(json!({"type": "number", "minimum": 0, "maximum": max}))
        }
        Kind::Bool => or_template(json!({"type": "boolean"})),
        Kind::Url => json!({"type": "string", "pattern": "^(?i:https?://|\\s*\\{\\{)"}),
        Kind::Choice(words) => {
            let mut all: Vec<String> = Vec::new();
            for w in *words {
                for v in [w.to_string(), w.to_lowercase(), w.to_uppercase()] {
                    if !all.contains(&v) {
                        all.push(v);
                    }
                }
            }
            or_template(json!({"enum": all}))
        }
        Kind::TextList => json!({"type": "array", "items": text()}),
        Kind::TextMap => json!({"type": "object", "additionalProperties": text()}),
        Kind::Section(keys) => section(&[keys]),
        Kind::Sections(keys) => json!({"type": "array", "items": section(&[keys])}),
        Kind::Middleware => middleware(),
        Kind::Any => json!({}),
        Kind::NoEffect(_) => json!({}),
    }
}

/// One key's schema: its kind, with its doc and default.
fn key(spec: &KeySpec) -> Value {
    let mut v = kind(&spec.kind);
    let mut doc = spec.doc.to_owned();
    if let Kind::NoEffect(why) = spec.kind {
        doc = format!("{doc} Accepted with a warning: it has no effect ({why}).");
        v["deprecated"] = true.into();
    }
    if !doc.is_empty() {
        v["description"] = doc.into();
    }
    if let Some(default) = spec.default {
        v["default"] = default();
    }
    v
}

/// A mapping with the keys of `tables` (joined), and nothing else.
fn section(tables: &[&[KeySpec]]) -> Value {
    let mut properties = Map::new();
    for spec in tables.iter().flat_map(|t| t.iter()) {
        let schema = key(spec);
        for alias in spec.aliases {
            let mut a = schema.clone();
            a["description"] = format!("Legacy spelling of `{}`. {}", spec.name, spec.doc).into();
            properties.entry(alias.to_string()).or_insert(a);
        }
        properties.entry(spec.name.to_owned()).or_insert(schema);
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// The middleware list: each entry's keys depend on its `type` (a built-in, a credential, `wasm`).
fn middleware() -> Value {
    use super::middleware::{BEARER_KEYS, CUSTOM_KEYS, HEADER_AUTH_KEYS, middleware_types};
    let types = middleware_types();
    let mut entries = Vec::new();
    for t in &types {
        let canonical = crate::builtins::canonical(t);
        let keys: Vec<KeySpec> = match *t {
            "wasm" => CUSTOM_KEYS.to_vec(),
            "bearer" => BEARER_KEYS.to_vec(),
            "header_auth" => HEADER_AUTH_KEYS.to_vec(),
            _ => {
                let own = crate::builtins::find(canonical).map_or(&[][..], |b| b.keys);
                [KeySpec::new(
                    "limits",
                    Kind::Section(super::middleware::LIMIT_KEYS),
                    "What it may use.",
                )]
                .into_iter()
                .chain(
                    own.iter()
                        .map(|k| KeySpec::new(k, Kind::Any, "A setting of the built-in plugin.")),
                )
                .collect()
            }
        };
        let mut s = section(&[&keys]);
        s["properties"]["type"] = json!({"const": t});
        s["required"] = json!(["type"]);
        let about = if *t == canonical {
            format!("middleware type `{t}`")
        } else {
            format!("middleware type `{t}` (legacy spelling of `{canonical}`)")
        };
        s["title"] = about.into();
        entries.push(s);
    }
    json!({
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": types}},
            "oneOf": entries,
        },
    })
}

/// The pipeline file's schema.
pub fn json_schema(draft: Draft) -> Value {
    let mut root = section(&[TOP]);
    // `auth: {type: wasm}` takes a custom plugin's keys too.
    root["properties"]["auth"] = {
        let mut a = section(&[super::auth::KEYS, super::middleware::CUSTOM_KEYS]);
        a["properties"]["type"] = key(&super::auth::KEYS[0]);
        a["description"] = TOP
            .iter()
            .find(|k| k.name == "auth")
            .map(|k| k.doc)
            .unwrap_or_default()
            .into();
        a
    };
    root["$schema"] = match draft {
        Draft::Draft2020 => "https://json-schema.org/draft/2020-12/schema",
        Draft::Draft7 => "http://json-schema.org/draft-07/schema#",
    }
    .into();
    root["$id"] = "https://sparkwasm.dev/schema/pipeline.json".into();
    root["title"] = "sparkwasm pipeline".into();
    root["description"] = "A sparkwasm pipeline file (YAML or JSON; the legacy framework's format is accepted as is). Generated by `sparkwasm schema` from the validator's own key descriptions.".into();
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the validator knows, at every depth, is a property of the schema, with its
    /// legacy spellings.
    #[test]
    fn every_key_is_in_the_schema() {
        fn walk(keys: &[KeySpec], schema: &Value, path: &str, seen: &mut usize) {
            for k in keys {
                for name in std::iter::once(k.name).chain(k.aliases.iter().copied()) {
                    let p = &schema["properties"][name];
                    assert!(!p.is_null(), "{path}.{name} is not in the schema");
                    *seen += 1;
                }
                match k.kind {
                    Kind::Section(inner) => walk(inner, &schema["properties"][k.name], path, seen),
                    Kind::Sections(inner) => {
                        walk(inner, &schema["properties"][k.name]["items"], path, seen)
                    }
                    _ => {}
                }
            }
        }
        let schema = json_schema(Draft::Draft2020);
        let mut seen = 0;
        walk(TOP, &schema, "", &mut seen);
        assert!(seen > 80, "{seen} keys");
        assert_eq!(schema["additionalProperties"], false);
    }
}
