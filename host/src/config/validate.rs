//! The pure step: a located tree → the sections of a [`Pipeline`], every problem recorded on the
//! way (nothing here touches the filesystem: what needs it is left as probes). Each section is read
//! by its own module; this puts them together.

use super::error::ConfigError;
use super::keys::TOP;
use super::probe::Probe;
use super::tree::{Node, Value};
use super::walk::{Field, Walker};
use super::{
    HostCredential, LoadOptions, MiddlewareSpec, Pipeline, auth, checks, endpoint, execution,
    metrics, middleware, plugins, spark, tables, transport,
};

/// Reads `root` into a pipeline named `stem` (unless `endpoint.name` names it) run as `shard`,
/// relative paths taken from `base_dir`; the filesystem checks go to `probes`.
pub(crate) fn pipeline(
    root: &Node,
    stem: &str,
    options: &LoadOptions<'_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
    probes: &mut Vec<Probe>,
) -> Option<Pipeline> {
    let (base_dir, shard) = (options.base_dir.as_path(), options.shard);
    let mut w = Walker::default();
    if !matches!(root.value, Value::Map(_)) {
        w.error(
            "",
            root.pos,
            format!(
                "a pipeline is a mapping of sections, found {}",
                root.value.kind()
            ),
        );
        errors.append(&mut w.errors);
        return None;
    }
    let top = w.section(
        Some(Field {
            path: "",
            node: root,
        }),
        "",
        root.pos,
        TOP,
    );
    let section = |w: &mut Walker, key: &str| {
        let spec = TOP.iter().find(|k| k.name == key).expect("a top-level key");
        let keys = match spec.kind {
            super::keys::Kind::Section(keys) => keys,
            _ => &[],
        };
        w.section(top.get(key), key, top.pos, keys)
    };
    let m = section(&mut w, "metrics");
    let metrics = metrics::read(&mut w, &m);
    let s = section(&mut w, "spark");
    let spark = spark::read(&mut w, &s, top.has("spark"));
    let e = section(&mut w, "endpoint");
    let endpoint = endpoint::read(&mut w, &e, top.has("endpoint"), base_dir, probes);
    let x = section(&mut w, "execution");
    let execution = execution::read(&mut w, &x);
    let t = section(&mut w, "transport");
    let transport = transport::read(&mut w, &t, base_dir, probes);
    let auth = auth::read(&mut w, top.get("auth"), base_dir, probes);
    let (mut middleware, mut credentials) =
        middleware::read(&mut w, top.get("middleware"), base_dir, probes);
    let pl = section(&mut w, "plugins");
    let plugins = plugins::read(&mut w, &pl, base_dir, probes);
    let t = section(&mut w, "tables");
    if !top.has("tables") {
        w.error(
            "tables",
            root.pos,
            "missing required section: tables (with sink, and source unless --source gives it)",
        );
    }
    let source = tables::source(
        &mut w,
        &t,
        &options.source,
        top.has("spark"),
        base_dir,
        probes,
    );
    let sink = tables::sink(&mut w, &t, top.has("spark"), base_dir);
    let column_mapping = tables::column_mapping(&mut w, &t);
    errors.append(&mut w.errors);
    warnings.append(&mut w.warnings);
    checks::run(
        checks::Parts {
            source: source.as_ref(),
            sink: sink.as_ref(),
            // As written: a `spark` section with a bad remote is reported there, not here.
            has_spark: top.has("spark"),
        },
        root,
        shard,
        errors,
    );

    let mut endpoint = endpoint?;
    // Endpoint headers whose value is a secret, or whose name says it carries a credential
    // (`Authorization`, `X-API-Key`, `Cookie`, ... however the value was written: from `{{env.X}}`
    // or literally), are credentials: added by the host after the chain, for the endpoint's origin
    // only, never seen by a plugin.
    let (secret, plain): (Vec<_>, Vec<_>) = endpoint
        .headers
        .drain(..)
        .partition(|h| h.secret || crate::redact::sensitive_header(&h.name));
    endpoint.headers = plain;
    credentials.splice(
        0..0,
        secret.into_iter().map(|h| HostCredential {
            from: format!("endpoint.headers.{}", h.name),
            name: h.name,
            value: h.value,
        }),
    );
    // The `auth` section's credential wins over a fixed one in the same header (an OAuth2 token
    // replaced by a static `Authorization` would be refused, renewed and refused again).
    if let Some(taken) = auth.as_ref().and_then(super::Auth::header_name) {
        let pos = |from: &str| {
            let section = if from.starts_with("endpoint") {
                "endpoint"
            } else {
                "middleware"
            };
            top.get(section).map(|f| f.node.pos).unwrap_or(root.pos)
        };
        credentials.retain(|c| {
            let clash = c.name.eq_ignore_ascii_case(taken);
            if clash {
                warnings.push(ConfigError::new(
                    &c.from,
                    pos(&c.from),
                    format!(
                        "has no effect: the auth section sets the `{}` header",
                        c.name
                    ),
                ));
            }
            !clash
        });
    }
    retry_request_limit(&mut middleware);
    // transport.diagnostics: the transport's metadata on every row, from the innermost layer (where
    // the legacy framework put its diagnostics middleware).
    if transport.diagnostics && !middleware.iter().any(|m| m.kind == "transport_diagnostics") {
        middleware.push(MiddlewareSpec {
            kind: "transport_diagnostics".into(),
            name: "transport_diagnostics".into(),
            path: "transport.diagnostics".into(),
            source: super::PluginSource::Builtin,
            config: serde_json::json!({}),
            limits: Default::default(),
            grants: Default::default(),
        });
    }
    Some(Pipeline {
        id: endpoint.name.clone().unwrap_or_else(|| stem.to_owned()),
        source,
        sink: sink?,
        endpoint,
        column_mapping,
        execution,
        transport,
        auth: auth?,
        middleware,
        plugins,
        credentials,
        spark,
        metrics,
        shard,
        secrets: Default::default(),
        retry_failed: false,
        allow_unpinned: false,
        warnings: Vec::new(),
    })
}

/// The built-in `retry` sends a row's request up to its `max_attempts` (default 3): unless its entry
/// sets `limits.max_requests`, that is its limit.
fn retry_request_limit(middleware: &mut [MiddlewareSpec]) {
    const RETRY_DEFAULT_ATTEMPTS: u32 = 3;
    for spec in middleware.iter_mut().filter(|s| s.kind == "retry") {
        if spec.limits.max_requests_set {
            continue;
        }
        let attempts = spec
            .config
            .get("max_attempts")
            .and_then(|v| v.as_u64())
            .map_or(RETRY_DEFAULT_ATTEMPTS, |v| v.min(1000) as u32);
        spec.limits.max_requests = spec.limits.max_requests.max(attempts);
    }
}
