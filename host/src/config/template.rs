//! `{{env.VAR}}` and `{{secret.SCOPE:KEY}}` in any string of the config, resolved before validation.
//!
//! Secrets come from the `--secrets-file` (a YAML/JSON mapping `scope: {key: value}`) or from the
//! environment variable `SPARKWASM_SECRET_<SCOPE>_<KEY>` (upper-cased, other characters as `_`).
//! A node that received a secret is marked, so that no error message ever prints its text, and every
//! secret value is collected for the redactor.

use std::collections::{BTreeMap, BTreeSet};

use super::error::ConfigError;
use super::tree::{Node, Pos, Value};

/// Where secret values are looked up.
#[derive(Default, Debug)]
pub struct SecretStore {
    /// `scope` → `key` → value, from the secrets file.
    file: BTreeMap<String, BTreeMap<String, String>>,
}

/// A secrets file that cannot be used (its text is never quoted: it holds secrets).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretsFileError(String);

impl SecretStore {
    /// Reads a secrets file: a mapping of scopes, each a mapping of keys to string values.
    pub fn from_file(path: &std::path::Path) -> Result<Self, SecretsFileError> {
        Self::read(path).map_err(SecretsFileError)
    }

    fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
        let root = super::tree::parse(&text).map_err(|e| {
            // The error text of the parser may quote the file; a secrets file is never quoted.
            match e.location() {
                Some(l) => format!(
                    "{}:{}:{}: the secrets file is not valid YAML/JSON",
                    path.display(),
                    l.line(),
                    l.column()
                ),
                None => format!(
                    "{}: the secrets file is not valid YAML/JSON",
                    path.display()
                ),
            }
        })?;
        let shape_error = |pos: Pos| {
            format!(
                "{}:{pos}: a secrets file maps scopes to mappings of keys to strings",
                path.display()
            )
        };
        let Value::Map(scopes) = root.value else {
            return Err(shape_error(root.pos));
        };
        let mut file = BTreeMap::new();
        for (scope, keys) in scopes {
            let Value::Map(keys) = keys.value else {
                return Err(shape_error(keys.pos));
            };
            let mut values = BTreeMap::new();
            for (key, value) in keys {
                let text = match value.value {
                    Value::Str(s) => s,
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(shape_error(value.pos)),
                };
                values.insert(key.name, text);
            }
            file.insert(scope.name, values);
        }
        Ok(SecretStore { file })
    }

    /// The secret's value: from the secrets file, else the environment, else (when
    /// `DATABRICKS_HOST` and `DATABRICKS_TOKEN` are set) the Databricks secrets API, where the
    /// legacy framework's `dbutils.secrets.get` read it. `Err`: why not, for the message.
    fn lookup(&self, scope: &str, key: &str) -> Result<String, String> {
        if let Some(v) = self.file.get(scope).and_then(|keys| keys.get(key)) {
            return Ok(v.clone());
        }
        if let Ok(v) = std::env::var(secret_env_var(scope, key)) {
            return Ok(v);
        }
        match (
            std::env::var("DATABRICKS_HOST"),
            std::env::var("DATABRICKS_TOKEN"),
        ) {
            (Ok(host), Ok(token)) if !host.is_empty() && !token.is_empty() => {
                super::databricks::secret(&host, &token, scope, key)
            }
            _ => Err(format!(
                "give it in --secrets-file or as {}, or set DATABRICKS_HOST and DATABRICKS_TOKEN to read it from Databricks",
                secret_env_var(scope, key)
            )),
        }
    }
}

/// The environment variable that holds a secret: `SPARKWASM_SECRET_<SCOPE>_<KEY>`.
pub fn secret_env_var(scope: &str, key: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("SPARKWASM_SECRET_{}_{}", clean(scope), clean(key))
}

/// Replaces every template in the tree. Returns the secret values that were substituted.
pub(crate) fn resolve(
    root: &mut Node,
    secrets: &SecretStore,
    errors: &mut Vec<ConfigError>,
) -> BTreeSet<String> {
    let mut used_secrets = BTreeSet::new();
    root.walk_strings_mut("", &mut |path, text, pos, secret| {
        if !text.contains("{{") {
            return;
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find("}}") else {
                errors.push(ConfigError::new(path, pos, "unclosed template: `{{` without `}}`"));
                return;
            };
            let inner = rest[start + 2..start + len].trim();
            rest = &rest[start + len + 2..];
            if let Some(var) = inner.strip_prefix("env.") {
                match std::env::var(var) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => errors.push(ConfigError::new(path, pos, format!("environment variable {var} is not set (from {{{{env.{var}}}}})"))),
                }
            } else if let Some(reference) = inner.strip_prefix("secret.") {
                let Some((scope, key)) = reference.split_once(':') else {
                    errors.push(ConfigError::new(path, pos, format!("a secret is written {{{{secret.SCOPE:KEY}}}}, not {{{{secret.{reference}}}}}")));
                    continue;
                };
                match secrets.lookup(scope, key) {
                    Ok(v) => {
                        *secret = true;
                        out.push_str(&v);
                        used_secrets.insert(v);
                    }
                    Err(why) => errors.push(ConfigError::new(
                        path,
                        pos,
                        format!("secret {scope}:{key} is not set ({why})"),
                    )),
                }
            } else {
                errors.push(ConfigError::new(path, pos, format!("unknown template {{{{{inner}}}}}: use {{{{env.VAR}}}} or {{{{secret.SCOPE:KEY}}}}")));
            }
        }
        out.push_str(rest);
        *text = out;
    });
    used_secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_secret_are_substituted_and_secret_marked() {
        // SAFETY: the variable names are unique to this test.
        unsafe {
            std::env::set_var("SW_TEST_HOST", "api.local");
            std::env::set_var("SPARKWASM_SECRET_VAULT_API_TOKEN", "s3cr3t");
        }
        let mut root = super::super::tree::parse(
            "a: https://{{ env.SW_TEST_HOST }}/x\nb: Bearer {{secret.vault:api-token}}\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        let used = resolve(&mut root, &SecretStore::default(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let Value::Map(m) = &root.value else { panic!() };
        assert!(matches!(&m[0].1.value, Value::Str(s) if s == "https://api.local/x"));
        assert!(!m[0].1.secret);
        assert!(matches!(&m[1].1.value, Value::Str(s) if s == "Bearer s3cr3t"));
        assert!(m[1].1.secret);
        assert!(used.contains("s3cr3t"));
    }

    #[test]
    fn missing_values_name_the_key() {
        let mut root = super::super::tree::parse(
            "x:\n  y: \"{{env.SW_SURELY_UNSET_VAR}}\"\n  z: \"{{secret.s:k}}\"\n",
        )
        .unwrap();
        let mut errors = Vec::new();
        resolve(&mut root, &SecretStore::default(), &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            text[0],
            "2:6: x.y: environment variable SW_SURELY_UNSET_VAR is not set (from {{env.SW_SURELY_UNSET_VAR}})"
        );
        assert_eq!(
            text[1],
            "3:6: x.z: secret s:k is not set (give it in --secrets-file or as SPARKWASM_SECRET_S_K, or set DATABRICKS_HOST and DATABRICKS_TOKEN to read it from Databricks)"
        );
    }
}
