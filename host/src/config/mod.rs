//! Stage 1: a pipeline file (YAML or JSON, legacy or new keys) → a validated [`Pipeline`].
//!
//! [`load`] reads the file into a located tree ([`tree`]), resolves `{{env.X}}` / `{{secret.S:K}}`
//! ([`template`]), reads every section through its key descriptions ([`keys`]; one module per
//! section: [`endpoint`], [`execution`], [`transport`], [`auth`], [`middleware`], [`tables`],
//! [`spark`]), applies the rules that span sections ([`checks`]), then checks the filesystem
//! ([`probe`]). Every error is collected, each with its key path and line:col. Runtime objects are
//! built only from a `Pipeline`, never from the raw file.

pub mod auth;
mod checks;
mod databricks;
pub mod endpoint;
mod error;
pub mod execution;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod plugins;
mod probe;
pub mod schema;
pub mod spark;
pub mod tables;
mod template;
pub mod transport;
mod tree;
mod validate;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub use auth::{Auth, ClientAuth, OAuth2Grant, OAuth2Settings, basic_header};
pub use endpoint::{Endpoint, Header};
pub use error::{ConfigError, ConfigErrors};
pub use execution::{Execution, Outcomes, StatusClass};
pub use middleware::{Grants, HostCredential, MiddlewareSpec, PluginLimits, PluginSource};
pub use plugins::PluginPolicy;
pub use spark::{Spark, quote_identifier};
pub use tables::{
    ColumnMapping, FileFormat, Sink, SinkMode, Source, SourceLocation, SourceOverride,
};
pub use template::{SecretStore, SecretsFileError, secret_env_var};
pub use transport::{Tls, Transport};

/// A validated pipeline: everything a run needs, with defaults filled in.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Identifies the pipeline in the sink's transaction log (`endpoint.name`, else the file's stem).
    pub id: String,
    /// `tables.source`, or the rows given with `--source`; `None`: none yet (`validate` accepts that,
    /// `run` needs one).
    pub source: Option<Source>,
    /// `tables.sink`.
    pub sink: Sink,
    /// `endpoint`.
    pub endpoint: Endpoint,
    /// `tables.column_mapping`.
    pub column_mapping: Vec<ColumnMapping>,
    /// `execution`.
    pub execution: Execution,
    /// `transport`.
    pub transport: Transport,
    /// `auth`.
    pub auth: Auth,
    /// The plugins of `middleware`, outermost first.
    pub middleware: Vec<MiddlewareSpec>,
    /// `plugins`: the trust policy for custom plugins.
    pub plugins: PluginPolicy,
    /// Headers the host adds to every request for the endpoint's origin after the chain: the
    /// legacy `bearer` / `header_auth` middleware and endpoint headers whose value is a secret or
    /// whose name says they carry a credential (`redact::sensitive_header`).
    pub credentials: Vec<HostCredential>,
    /// `spark`.
    pub spark: Option<Spark>,
    /// The Prometheus endpoint the run serves.
    pub metrics: metrics::Metrics,
    /// This host's share of the rows (`--shard I/N`); `None`: all of them.
    pub shard: Option<Shard>,
    /// Every secret value substituted into the config, for redaction of logs, errors and the sink.
    pub secrets: BTreeSet<String>,
    /// `--retry-failed`: rows that failed for good in earlier runs are sent again too.
    pub retry_failed: bool,
    /// `--allow-unpinned`: `oci://` plugins without a digest are taken at their tag's current digest.
    pub allow_unpinned: bool,
    /// What was accepted but deserves a word (keys with no effect, risky settings), each as
    /// `LINE:COL: PATH: MESSAGE`; printed by `validate` and at the start of every run.
    pub warnings: Vec<ConfigError>,
}

/// A credential header's value, and its token alone when it has a scheme (`Bearer <token>`): an
/// API that echoes the token back shows it without the scheme. A value shorter than
/// [`CREDENTIAL_FROM`] is not searched for (a `Cookie: lang=en` would hide every `lang=en` of every
/// body); a header value that came from a secret is searched for as that secret anyway.
fn credential_forms(value: &str) -> Vec<String> {
    let token = value.split_once(' ').map(|(_, t)| t.trim());
    [Some(value), token]
        .into_iter()
        .flatten()
        .filter(|v| v.len() >= CREDENTIAL_FROM)
        .map(str::to_owned)
        .collect()
}

/// The shortest credential header value (or token) that is redacted wherever it shows up.
const CREDENTIAL_FROM: usize = 8;

impl Pipeline {
    /// Every secret value a run must keep out of what it writes: the values substituted from
    /// `{{secret...}}`, the credential headers the host adds, and the `auth` section's secrets in
    /// every form they travel in.
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets
            .iter()
            .cloned()
            .chain(
                self.credentials
                    .iter()
                    .flat_map(|c| credential_forms(&c.value)),
            )
            .chain(self.auth.secret_forms())
            .chain(self.storage_secrets())
            .collect()
    }

    /// The secret storage options of the source and sink, and, when either is on an object store,
    /// the secrets the standard environment variables give its client.
    fn storage_secrets(&self) -> Vec<String> {
        let source = self.source.as_ref().and_then(|s| match &s.location {
            SourceLocation::File { path, .. } => Some(path),
            SourceLocation::Spark { .. } => None,
        });
        let remotes: Vec<&crate::store::Remote> = [Some(&self.sink.location), source]
            .into_iter()
            .flatten()
            .filter_map(|l| match l {
                crate::store::Location::Remote(r) => Some(r),
                crate::store::Location::Local(_) => None,
            })
            .collect();
        let mut out: Vec<String> = remotes
            .iter()
            .flat_map(|r| r.options.iter())
            .filter(|(k, _)| crate::store::is_secret_option(k))
            .map(|(_, v)| v.clone())
            .collect();
        if !remotes.is_empty() {
            out.extend(
                crate::store::SECRET_ENV
                    .iter()
                    .filter_map(|k| std::env::var(k).ok()),
            );
        }
        out
    }
}

/// `--shard I/N`: the rows with `pmod(xxhash64(id_column), N) = I`, computed by Spark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This host's shard, from 0.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

/// A `--shard` value that is not `I/N` with `I < N`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShardError(String);

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(s: &str) -> Result<Self, ShardError> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| ShardError(format!("`{s}` is not I/N (e.g. 0/4)")))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| ShardError(format!("`{i}` is not a shard index")))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| ShardError(format!("`{n}` is not a shard count")))?;
        if count == 0 || index >= count {
            return Err(ShardError(format!(
                "shard {index}/{count}: the index runs from 0 to N-1"
            )));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// How a pipeline file is loaded.
pub struct LoadOptions<'a> {
    /// Where `{{secret...}}` values come from.
    pub secrets: &'a SecretStore,
    /// Folder that relative paths (source, sink, TLS files) are taken from: the working directory.
    pub base_dir: PathBuf,
    /// This host's share of the rows (`--shard I/N`), checked with the rest of the pipeline.
    pub shard: Option<Shard>,
    /// Rows given on the command line, instead of the file's `tables.source`.
    pub source: SourceOverride,
    /// `--retry-failed`: send again the rows that failed for good in earlier runs.
    pub retry_failed: bool,
    /// `--allow-unpinned`: an `oci://` plugin source without a digest takes its tag as it is now.
    pub allow_unpinned: bool,
}

/// Reads, resolves and validates a pipeline file; errors name the file as `path` was given.
pub fn load(path: &Path, options: &LoadOptions<'_>) -> Result<Pipeline, ConfigErrors> {
    let display = path.display().to_string();
    let fail = |errors| ConfigErrors {
        file: display.clone(),
        errors,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(vec![ConfigError::new(
            "",
            Default::default(),
            format!("cannot read the file: {e}"),
        )])
    })?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("pipeline");
    load_str(&text, stem, options).map_err(fail)
}

/// [`load`] on text already read. `stem` names the pipeline when `endpoint.name` does not.
pub fn load_str(
    text: &str,
    stem: &str,
    options: &LoadOptions<'_>,
) -> Result<Pipeline, Vec<ConfigError>> {
    let mut root = tree::parse(text).map_err(|e| vec![parse_error(&e)])?;
    let mut errors = Vec::new();
    let secrets = template::resolve(&mut root, options.secrets, &mut errors);
    let redactor = crate::redact::Redactor::new(secrets.iter().cloned());
    let mut probes = Vec::new();
    let mut warnings = Vec::new();
    let mut pipeline = validate::pipeline(
        &root,
        stem,
        options,
        &mut errors,
        &mut warnings,
        &mut probes,
    );
    if let Some(p) = &mut pipeline {
        p.secrets = secrets;
        p.retry_failed = options.retry_failed;
        p.allow_unpinned = options.allow_unpinned;
        warnings.sort_by_key(|e| (e.pos.line, e.pos.col));
        p.warnings = warnings;
    }
    probe::run(probes, pipeline.as_mut(), &mut errors);
    match pipeline {
        Some(p) if errors.is_empty() => Ok(p),
        _ => {
            // A message may quote a value that came from a secret (`endpoint.method: `...` is not
            // one of`); every one is redacted, whatever check wrote it.
            for e in &mut errors {
                if let std::borrow::Cow::Owned(text) = redactor.text(&e.message) {
                    e.message = text;
                }
            }
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
            errors.dedup();
            Err(errors)
        }
    }
}

fn parse_error(e: &serde_saphyr::Error) -> ConfigError {
    let pos = e.location().map(tree::Pos::from).unwrap_or_default();
    // serde-saphyr's message already says where; keep its first line, which names the problem.
    let text = e.without_snippet().to_string();
    let first = text.lines().next().unwrap_or("syntax error").trim();
    ConfigError::new("", pos, format!("not valid YAML/JSON: {first}"))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Helpers for the sections' tests: a section's YAML is completed with a minimal endpoint and
    //! tables (a `rows.csv` in a temp folder) unless it gives its own, so line numbers in the
    //! expected errors are the section's own.

    use super::*;

    fn run(yaml: &str) -> (tempfile::TempDir, Result<Pipeline, Vec<ConfigError>>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rows.csv"), "id\n1\n").unwrap();
        let mut text = yaml.to_owned();
        if !yaml.lines().any(|l| l.starts_with("endpoint:")) {
            text.push_str("endpoint: {base_url: \"http://127.0.0.1:1\"}\n");
        }
        if !yaml.lines().any(|l| l.starts_with("tables:")) {
            text.push_str("tables: {source: {path: rows.csv, id_column: id}, sink: {path: out}}\n");
        }
        let secrets = SecretStore::default();
        let result = load_str(
            &text,
            "t",
            &LoadOptions {
                secrets: &secrets,
                base_dir: dir.path().into(),
                shard: None,
                source: Default::default(),
                retry_failed: false,
                allow_unpinned: false,
            },
        );
        (dir, result)
    }

    /// The pipeline of `yaml` (completed), which must be valid.
    pub(crate) fn load(yaml: &str) -> Pipeline {
        run(yaml).1.unwrap_or_else(|e| panic!("{e:#?}"))
    }

    /// The pipeline of a whole `yaml`, which must be valid.
    pub(crate) fn load_full(yaml: &str) -> Pipeline {
        load(yaml)
    }

    /// The errors of `yaml` (completed), as printed after the file name.
    pub(crate) fn errors(yaml: &str) -> Vec<String> {
        match run(yaml).1 {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_header_named_like_a_credential_is_one_however_it_is_written() {
        let p = load(
            "endpoint: {base_url: \"http://127.0.0.1:1\", headers: {Authorization: \"Bearer tok-1234567890\", X-Trace: t1, cookie: \"s=1\", Api-Key: \"key-abcdefgh\"}}\n",
        );
        // Taken from the headers the chain sees; added by the host after it.
        let plain: Vec<&str> = p.endpoint.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(plain, ["X-Trace"]);
        let credentials: Vec<&str> = p.credentials.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(credentials, ["Authorization", "cookie", "Api-Key"]);
        // Redacted as written and as the token alone (an API may echo the token back); a value too
        // short to be told from ordinary text is still a credential, but not searched for.
        let secrets = p.secret_values();
        for s in ["Bearer tok-1234567890", "tok-1234567890", "key-abcdefgh"] {
            assert!(secrets.iter().any(|v| v == s), "{s}: {secrets:?}");
        }
        assert!(!secrets.iter().any(|v| v == "s=1"), "{secrets:?}");
    }

    #[test]
    fn the_auth_sections_header_wins_over_a_fixed_one_and_says_so() {
        let p = load(
            "endpoint: {base_url: \"http://127.0.0.1:1\", headers: {Authorization: \"Bearer static-123456789\", X-Api-Key: key-123456789}}\nauth: {type: bearer, token: tok-abcdefghij}\n",
        );
        let credentials: Vec<&str> = p.credentials.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(credentials, ["X-Api-Key"]);
        let warnings: Vec<String> = p.warnings.iter().map(ToString::to_string).collect();
        assert!(
            warnings.iter().any(|w| w.ends_with(
                "endpoint.headers.Authorization: has no effect: the auth section sets the `Authorization` header"
            )),
            "{warnings:#?}"
        );
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let e = errors(
            "endpoint:\n  base_url: ftp://x\nexecution:\n  partitons: 2\n  batch_size: -1\ntables:\n  source: {}\n  sink: {}\n",
        );
        assert_eq!(e.len(), 5, "{e:#?}");
        assert!(
            e[0].starts_with("2:13: endpoint.base_url: expected an http:// or https:// URL"),
            "{e:#?}"
        );
        assert_eq!(
            e[1],
            "4:3: execution.partitons: unknown key `partitons`; did you mean `partitions`?"
        );
        assert_eq!(
            e[2],
            "5:15: execution.batch_size: must be between 1 and 10000000, found -1"
        );
    }

    #[test]
    fn the_shard_is_checked_with_the_pipeline() {
        let (_dir, result) = {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("rows.csv"), "id\n1\n").unwrap();
            let secrets = SecretStore::default();
            let r = load_str(
                "endpoint: {base_url: \"http://127.0.0.1:1\"}\ntables:\n  source: {path: rows.csv}\n  sink: {path: out, mode: overwrite}\n",
                "t",
                &LoadOptions {
                    secrets: &secrets,
                    base_dir: dir.path().into(),
                    shard: Some("1/2".parse().unwrap()),
                    source: Default::default(),
                    retry_failed: false,
                    allow_unpinned: false,
                },
            );
            (dir, r)
        };
        let e: Vec<String> = result
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with("3:11: tables.source: --shard 1/2 needs tables.source.id_column"),
            "{e:#?}"
        );
        assert!(
            e[1].starts_with("4:27: tables.sink.mode: --shard 1/2 with mode: overwrite"),
            "{e:#?}"
        );
    }
}
