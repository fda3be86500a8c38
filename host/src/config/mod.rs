//! Stage 1: a pipeline file (YAML or JSON, legacy or new keys) → a validated [`Pipeline`].
//!
//! `load` reads the file into a located tree, resolves `{{env.X}}` / `{{secret.S:K}}`, then `validate`
//! reads every section, collecting all errors with their key path and line:col. Runtime objects are built
//! only from a `Pipeline`, never from the raw file.

mod error;
mod template;
mod tree;
mod validate;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use error::{ConfigError, ConfigErrors};
pub use template::{SecretStore, secret_env_var};

/// A validated pipeline: everything a run needs, with defaults filled in.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Identifies the pipeline in the sink's transaction log (`endpoint.name`, else the file's stem).
    pub id: String,
    pub source: Source,
    pub sink: Sink,
    pub endpoint: Endpoint,
    pub column_mapping: Vec<ColumnMapping>,
    pub execution: Execution,
    pub transport: Transport,
    pub auth: Auth,
    pub middleware: Vec<MiddlewareSpec>,
    /// Headers the host adds to every request for the endpoint's origin after the chain: the
    /// legacy `bearer` / `header_auth` middleware and endpoint headers whose value is a secret.
    pub credentials: Vec<HostCredential>,
    pub spark: Option<Spark>,
    /// This host's share of the rows (`--shard I/N`); `None`: all of them.
    pub shard: Option<Shard>,
    /// Every secret value substituted into the config, for redaction of logs, errors and the sink.
    pub secrets: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub struct Source {
    pub location: SourceLocation,
    pub id_column: Option<String>,
    pub required_columns: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum SourceLocation {
    File {
        path: PathBuf,
        format: FileFormat,
    },
    /// A table or a query read through Spark Connect.
    Spark {
        table: Option<String>,
        query: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    Parquet,
    Csv,
    Jsonl,
    Delta,
}

impl FileFormat {
    pub const NAMES: [&'static str; 4] = ["parquet", "csv", "jsonl", "delta"];

    fn from_name(name: &str) -> Self {
        match name {
            "csv" => FileFormat::Csv,
            "jsonl" => FileFormat::Jsonl,
            "delta" => FileFormat::Delta,
            _ => FileFormat::Parquet,
        }
    }

    /// The format a path implies: its extension, or a folder holding `_delta_log` (else parquet files).
    pub fn infer(path: &Path) -> Option<Self> {
        if path.is_dir() {
            return Some(if path.join("_delta_log").is_dir() {
                FileFormat::Delta
            } else {
                FileFormat::Parquet
            });
        }
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "csv" => Some(FileFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(FileFormat::Jsonl),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Sink {
    /// The Delta table's location: a local folder (unused when `spark_table` is set).
    pub path: PathBuf,
    pub mode: SinkMode,
    /// With `spark.remote` and no `path`: the Spark catalog table (`namespace.name`) the bronze batches
    /// are appended to instead.
    pub spark_table: Option<String>,
    /// With `path`: a Spark catalog table every committed batch is also appended to
    /// (`tables.sink.also_spark_table`).
    pub mirror: Option<String>,
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.spark_table {
            Some(table) => write!(f, "Spark table {table}"),
            None => match &self.mirror {
                Some(table) => write!(f, "{} and Spark table {table}", self.path.display()),
                None => write!(f, "{}", self.path.display()),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinkMode {
    Append,
    Overwrite,
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub method: http::Method,
    pub base_url: url::Url,
    /// Path template appended to `base_url`; `{column}` is replaced by the row's value, percent-encoded.
    pub url_path: String,
    pub headers: Vec<Header>,
}

/// A credential header the host adds after the middleware chain (no plugin sees it).
#[derive(Clone, Debug)]
pub struct HostCredential {
    pub name: String,
    pub value: String,
    /// Where the pipeline file sets it, for messages: `middleware[1] (bearer)`.
    pub from: String,
}

#[derive(Clone, Debug)]
pub struct Header {
    pub name: String,
    pub value: String,
    /// The value came from a secret: it is sent but never recorded.
    pub secret: bool,
}

#[derive(Clone, Debug)]
pub struct ColumnMapping {
    pub source_column: String,
    pub endpoint_param: String,
}

#[derive(Clone, Debug)]
pub struct Execution {
    pub partitions: usize,
    pub batch_size: usize,
    pub max_requests_per_second: Option<f64>,
    /// Consumers per partition.
    pub concurrency_limit: usize,
    pub max_attempts: u32,
}

#[derive(Clone, Debug)]
pub struct Transport {
    pub base_timeout: Duration,
    pub warmup_timeout: Duration,
    /// Open connections per host; 0 = no cap (as aiohttp's `limit=0`).
    pub connection_limit: usize,
    pub tls: Tls,
}

#[derive(Clone, Debug, Default)]
pub struct Tls {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Basic {
        username: String,
        password: String,
    },
    Bearer {
        token: String,
    },
    /// A fixed key in a header (default `X-API-Key`) or a query parameter.
    ApiKey {
        key: String,
        header: String,
        query_param: Option<String>,
    },
    OAuth2(OAuth2Settings),
    /// A component of the `auth` world; its credential is renewed `refresh_margin` before it expires.
    Wasm {
        plugin: MiddlewareSpec,
        refresh_margin: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct OAuth2Settings {
    pub grant: OAuth2Grant,
    pub token_url: url::Url,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    /// Renew the token this long before it expires (at most half its lifetime).
    pub refresh_margin: Duration,
    pub client_auth: ClientAuth,
}

#[derive(Clone, Debug)]
pub enum OAuth2Grant {
    ClientCredentials,
    Password { username: String, password: String },
}

/// How the client authenticates to the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic first; the form body if the server refuses the client.
    Auto,
    Basic,
    Body,
}

/// One entry of the `middleware` list: a built-in plugin or a custom component.
#[derive(Clone, Debug)]
pub struct MiddlewareSpec {
    /// The built-in type (`retry`, ...) or `wasm`.
    pub kind: String,
    /// What errors and logs call it: the type for built-ins, `name` for custom plugins.
    pub name: String,
    /// `middleware[i]`, for messages.
    pub path: String,
    pub source: PluginSource,
    /// The plugin's own settings, as JSON (built-ins: the entry's other keys; custom: `config`).
    pub config: serde_json::Value,
    pub limits: PluginLimits,
    pub grants: Grants,
}

#[derive(Clone, Debug)]
pub enum PluginSource {
    /// Embedded in the binary.
    Builtin,
    /// A component file, pinned by its digest.
    File { path: PathBuf, sha256: String },
}

/// What a plugin may use.
#[derive(Clone, Copy, Debug)]
pub struct PluginLimits {
    /// Linear memory cap, per instance.
    pub memory_mb: u32,
    /// Time the guest may run per call (an auth plugin's outbound fetches do not count).
    pub timeout_ms: u64,
    /// Most times one row's request may be sent on by this plugin (its first send and its resends).
    pub max_requests: u32,
    /// The largest body the plugin may set or answer with (and an auth plugin may fetch).
    pub max_body_bytes: u64,
    /// `max_requests` was given in the file (else the built-in retry raises it to its attempts).
    pub max_requests_set: bool,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            memory_mb: 32,
            timeout_ms: 1000,
            max_requests: 10,
            max_body_bytes: 16 << 20,
            max_requests_set: false,
        }
    }
}

/// Capabilities beyond the sandbox's defaults (nothing).
#[derive(Clone, Debug, Default)]
pub struct Grants {
    /// Hosts (`host` or `host:port`) besides the endpoint's origin that a middleware may send a
    /// row's request to, and that an auth plugin's outbound fetch may reach.
    pub outbound_hosts: Vec<String>,
    /// The pipeline's credentials go with this plugin's requests to its `outbound_hosts` too.
    pub forward_credentials: bool,
    /// Environment variables the plugin sees (names; values from the sparkwasm process).
    pub env: Vec<String>,
    /// The real wall clock (otherwise the plugin's clock reads 1970-01-01).
    pub wall_clock: bool,
}

#[derive(Clone, Debug)]
pub struct Spark {
    pub remote: String,
}

/// A table name (`name`, `ns.name`, `catalog.ns.name`) as a Spark SQL identifier, each part
/// backtick-quoted: names with hyphens or reserved words work, and nothing else can ride along.
pub fn quote_identifier(name: &str) -> String {
    name.split('.')
        .map(|part| format!("`{}`", part.trim().trim_matches('`').replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

/// `--shard I/N`: the rows with `pmod(xxhash64(id_column), N) = I`, computed by Spark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N (e.g. 0/4)"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("`{i}` is not a shard index"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{n}` is not a shard count"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index runs from 0 to N-1"
            ));
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
    pub secrets: &'a SecretStore,
    /// Folder that relative paths (source, sink, TLS files) are taken from: the working directory.
    pub base_dir: PathBuf,
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
    let pipeline = validate::pipeline(&root, stem, &options.base_dir, &mut errors);
    match pipeline {
        Some(mut p) if errors.is_empty() => {
            p.secrets = secrets;
            Ok(p)
        }
        _ => {
            errors.sort_by_key(|e| (e.pos.line, e.pos.col));
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
