//! `mask-fields`: an example of a custom plugin, built from source by `scripts/demo.sh`. It keeps
//! personal data out of the bronze table: in a JSON answer, the named fields are replaced before the
//! row lands, either by `***` or by a salted SHA-256 pseudonym (the same value gives the same
//! pseudonym, so the column can still be joined and counted). It records how many values it masked in
//! the response metadata (`mask.masked`). An answer that is not JSON is left as it is.
//!
//! ```yaml
//! middleware:
//!   - type: wasm
//!     name: mask_fields
//!     path: plugins/mask_fields.wasm
//!     sha256: "…"                      # sha256sum of the .wasm
//!     config:
//!       fields: [email, phone, contact.email]   # dotted paths into objects
//!       mode: hash                     # hash (default) or redact
//!       salt: "{{secret.pii:salt}}"    # for hash; a secret, so never printed or landed
//! ```
//!
//! It asks for no grant: it only reads and rewrites the answer it is handed.

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sparkwasm_plugin::{Hooks, Middleware, Outcome, Request, Response};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    fields: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    salt: String,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Hash,
    Redact,
}

struct MaskFields {
    /// Each field as its path of object keys.
    paths: Vec<Vec<String>>,
    mode: Mode,
    salt: String,
}

impl MaskFields {
    fn mask(&self, value: &Value) -> Value {
        match self.mode {
            Mode::Redact => Value::String("***".into()),
            Mode::Hash => {
                let text = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let digest = Sha256::new()
                    .chain_update(self.salt.as_bytes())
                    .chain_update([0u8])
                    .chain_update(text.as_bytes())
                    .finalize();
                let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
                Value::String(format!("sha256:{hex}"))
            }
        }
    }

    /// Masks every configured field found in `doc`; returns how many were masked.
    fn apply(&self, doc: &mut Value) -> usize {
        let mut masked = 0;
        for path in &self.paths {
            let found = path
                .iter()
                .try_fold(&mut *doc, |node, key| node.get_mut(key));
            if let Some(value) = found.filter(|v| !v.is_null()) {
                *value = self.mask(value);
                masked += 1;
            }
        }
        masked
    }
}

impl Middleware for MaskFields {
    type Config = Config;

    fn new(config: Config) -> Result<Self, String> {
        if config.fields.is_empty() {
            return Err("fields: name at least one field to mask".into());
        }
        if let Some(bad) = config
            .fields
            .iter()
            .find(|f| f.split('.').any(str::is_empty))
        {
            return Err(format!("fields: `{bad}` is not a dotted path of keys"));
        }
        Ok(MaskFields {
            paths: config
                .fields
                .iter()
                .map(|f| f.split('.').map(String::from).collect())
                .collect(),
            mode: config.mode,
            salt: config.salt,
        })
    }

    fn hooks(&self) -> Hooks {
        Hooks::ON_RESPONSE
    }

    fn on_response(&self, _request: &Request, response: &Response) -> Outcome {
        let Ok(mut doc) = serde_json::from_slice::<Value>(&response.body()) else {
            return Outcome::Done;
        };
        let masked = self.apply(&mut doc);
        if masked > 0 {
            response.set_body(&serde_json::to_vec(&doc).unwrap_or_default());
        }
        response.set_metadata("mask.masked", &masked.to_string());
        Outcome::Done
    }
}

sparkwasm_plugin::export_middleware!(MaskFields);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugin(fields: &[&str], mode: Mode) -> MaskFields {
        MaskFields::new(Config {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            mode,
            salt: "pepper".into(),
        })
        .unwrap()
    }

    #[test]
    fn named_fields_are_masked_at_any_depth_and_others_kept() {
        let p = plugin(
            &["email", "contact.phone", "missing", "contact.none"],
            Mode::Redact,
        );
        let mut doc =
            json!({"id": "C1", "email": "a@b.c", "contact": {"phone": "+1", "none": null}});
        assert_eq!(p.apply(&mut doc), 2);
        assert_eq!(
            doc,
            json!({"id": "C1", "email": "***", "contact": {"phone": "***", "none": null}})
        );
    }

    #[test]
    fn a_pseudonym_is_stable_salted_and_hides_the_value() {
        let p = plugin(&["email"], Mode::Hash);
        let one = p.mask(&json!("a@b.c"));
        assert_eq!(one, p.mask(&json!("a@b.c")));
        assert_ne!(one, p.mask(&json!("a@b.d")));
        let text = one.as_str().unwrap();
        assert!(text.starts_with("sha256:") && text.len() == 23, "{text}");
        assert!(!text.contains("a@b.c"));
        let other_salt = MaskFields {
            salt: "salt".into(),
            ..plugin(&["email"], Mode::Hash)
        };
        assert_ne!(one, other_salt.mask(&json!("a@b.c")));
    }

    #[test]
    fn bad_settings_are_refused() {
        let refused = |fields: &[&str]| {
            MaskFields::new(Config {
                fields: fields.iter().map(|f| f.to_string()).collect(),
                mode: Mode::Hash,
                salt: String::new(),
            })
            .err()
        };
        assert!(refused(&[]).unwrap().contains("at least one"));
        assert!(refused(&["a..b"]).unwrap().contains("`a..b`"));
    }
}
