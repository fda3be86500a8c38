//! The pure validation step: located tree → `Pipeline`, every problem recorded on the way.

use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::tree::{Node, Value};
use super::walk::{Field, Section, Walker};
use super::*;
use crate::plugin::builtin;

/// The legacy framework's credential middleware: the host adds their header after the chain.
const CREDENTIAL_TYPES: [&str; 2] = ["bearer", "header_auth"];

/// Middleware types: the legacy framework's (built-in plugins and credentials), then `wasm` for
/// custom ones.
fn middleware_types() -> Vec<&'static str> {
    builtin::BUILTINS
        .iter()
        .map(|b| b.kind)
        .chain(CREDENTIAL_TYPES)
        .chain(["wasm"])
        .collect()
}

/// The longest `refresh_margin` (a day): renewing earlier than that is a typo.
const MAX_REFRESH_MARGIN: f64 = 86_400.0;

const AUTH_TYPES: [&str; 7] = [
    "none",
    "basic",
    "bearer",
    "api_key",
    "oauth2_client_credentials",
    "oauth2_password",
    "wasm",
];

pub fn pipeline(
    root: &Node,
    stem: &str,
    base_dir: &Path,
    errors: &mut Vec<ConfigError>,
) -> Option<Pipeline> {
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
        &[
            "execution",
            "transport",
            "auth",
            "endpoint",
            "middleware",
            "tables",
            "spark",
        ],
    );

    let spark = spark(&mut w, &top);
    let endpoint = endpoint(&mut w, &top);
    let execution = execution(&mut w, &top);
    let transport = transport(&mut w, &top, base_dir);
    let auth = auth(&mut w, &top, base_dir);
    let (mut middleware, mut credentials) = middleware(&mut w, &top, base_dir);
    let tables = w.section(
        top.get("tables"),
        "tables",
        root.pos,
        &["source", "sink", "column_mapping|column_mappings"],
    );
    if !top.has("tables") {
        w.error(
            "tables",
            root.pos,
            "missing required section: tables (with source and sink)",
        );
    }
    let has_spark = top.has("spark");
    let source = source(&mut w, &tables, has_spark, base_dir);
    let sink = sink(&mut w, &tables, has_spark, base_dir);
    let column_mapping = column_mapping(&mut w, &tables);

    errors.append(&mut w.errors);
    let mut endpoint = endpoint?;
    // Endpoint headers whose value is a secret are credentials: added by the host after the chain,
    // for the endpoint's origin only.
    let (secret, plain): (Vec<Header>, Vec<Header>) =
        endpoint.headers.drain(..).partition(|h| h.secret);
    endpoint.headers = plain;
    credentials.splice(
        0..0,
        secret.into_iter().map(|h| HostCredential {
            from: format!("endpoint.headers.{}", h.name),
            name: h.name,
            value: h.value,
        }),
    );
    if let Some(max_attempts) = execution.as_ref().map(|e| e.max_attempts) {
        retry_request_limit(&mut middleware, max_attempts);
    }
    Some(Pipeline {
        id: endpoint.name.clone().unwrap_or_else(|| stem.to_owned()),
        source: source?,
        sink: sink?,
        endpoint,
        column_mapping,
        execution: execution?,
        transport: transport?,
        auth: auth?,
        middleware,
        credentials,
        spark,
        shard: None,
        secrets: Default::default(),
    })
}

fn spark(w: &mut Walker, top: &Section<'_>) -> Option<Spark> {
    let s = w.section(top.get("spark"), "spark", top.pos, &["remote"]);
    if !top.has("spark") {
        return None;
    }
    let remote = w.require(&s, "remote", "remote (e.g. \"sc://127.0.0.1:15002\")");
    let remote = w.name(remote)?;
    if !remote.starts_with("sc://") {
        let f = s.get("remote")?;
        w.error(
            f.path,
            f.node.pos,
            "a Spark Connect address starts with sc:// (e.g. sc://127.0.0.1:15002)",
        );
        return None;
    }
    Some(Spark { remote })
}

fn endpoint(w: &mut Walker, top: &Section<'_>) -> Option<Endpoint> {
    let e = w.section(
        top.get("endpoint"),
        "endpoint",
        top.pos,
        &[
            "name",
            "vendor",
            "method",
            "base_url|base_path",
            "url_path",
            "headers",
        ],
    );
    if !top.has("endpoint") {
        w.error(
            "endpoint",
            top.pos,
            "missing required section: endpoint (with base_url)",
        );
        return None;
    }
    let name = w.name(e.get("name"));
    let vendor = w.name(e.get("vendor"));
    let method = match e.get("method") {
        Some(_) => w
            .choice(e.get("method"), &["GET", "POST", "PUT", "PATCH", "DELETE"])
            .map(|m| m.parse().expect("listed methods parse")),
        None => Some(http::Method::GET),
    };
    let base_url = w
        .require(
            &e,
            "base_url",
            "base_url (or base_path), the API's root URL",
        )
        .and_then(|f| url(w, f));
    let url_path = w.string(e.get("url_path")).unwrap_or_default();
    if let Some(f) = e.get("url_path") {
        check_placeholders(w, f, &url_path);
    }
    let headers = w
        .string_map(e.get("headers"))
        .into_iter()
        .map(|(name, value, secret)| Header {
            name,
            value,
            secret,
        })
        .collect::<Vec<_>>();
    if let Some(f) = e.get("headers") {
        for h in &headers {
            if http::HeaderName::from_bytes(h.name.as_bytes()).is_err()
                || (!h.secret && http::HeaderValue::from_str(&h.value).is_err())
            {
                w.error(
                    &format!("{}.{}", f.path, h.name),
                    f.node.pos,
                    "not a valid HTTP header",
                );
            }
        }
    }
    Some(Endpoint {
        name,
        vendor,
        method: method?,
        base_url: base_url?,
        url_path,
        headers,
    })
}

fn url(w: &mut Walker, f: Field<'_>) -> Option<url::Url> {
    let text = w.name(Some(f))?;
    match url::Url::parse(&text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(u) => {
            w.error(
                f.path,
                f.node.pos,
                format!(
                    "expected an http:// or https:// URL, found scheme `{}`",
                    u.scheme()
                ),
            );
            None
        }
        Err(e) => {
            let shown = if f.node.secret {
                "(from a secret, not shown)".to_owned()
            } else {
                format!("`{text}`")
            };
            w.error(f.path, f.node.pos, format!("not a URL {shown}: {e}"));
            None
        }
    }
}

/// `{` and `}` must pair up around a column name.
fn check_placeholders(w: &mut Walker, f: Field<'_>, template: &str) {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            w.error(
                f.path,
                f.node.pos,
                "`}` without `{` (placeholders are written {column})",
            );
            return;
        }
        let Some(close) = rest[open..].find('}') else {
            w.error(
                f.path,
                f.node.pos,
                "`{` without `}` (placeholders are written {column})",
            );
            return;
        };
        if rest[open + 1..open + close].trim().is_empty() {
            w.error(
                f.path,
                f.node.pos,
                "empty placeholder `{}`: name a column, e.g. {customer_id}",
            );
        }
        rest = &rest[open + close + 1..];
    }
}

fn execution(w: &mut Walker, top: &Section<'_>) -> Option<Execution> {
    let x = w.section(
        top.get("execution"),
        "execution",
        top.pos,
        &[
            "partitions|num_partitions",
            "batch_size",
            "max_requests_per_second",
            "concurrency_limit|max_concurrent_requests",
            "max_attempts",
        ],
    );
    let partitions = w.int(x.get("partitions"), 1, 1024).unwrap_or(1);
    let batch_size = w.int(x.get("batch_size"), 1, 10_000_000).unwrap_or(10_000);
    let rate = w.number(x.get("max_requests_per_second"), 0.0);
    let concurrency = w.int(x.get("concurrency_limit"), 1, 100_000).unwrap_or(20);
    let max_attempts = w.int(x.get("max_attempts"), 1, 100).unwrap_or(3);
    Some(Execution {
        partitions: partitions as usize,
        batch_size: batch_size as usize,
        max_requests_per_second: rate,
        concurrency_limit: concurrency as usize,
        max_attempts: max_attempts as u32,
    })
}

fn transport(w: &mut Walker, top: &Section<'_>, base_dir: &Path) -> Option<Transport> {
    let t = w.section(
        top.get("transport"),
        "transport",
        top.pos,
        &["base_timeout", "warmup_timeout", "tcp_connection", "tls"],
    );
    let secs = |w: &mut Walker, key: &str, default: f64| {
        Duration::from_secs_f64(w.number(t.get(key), 0.0).unwrap_or(default))
    };
    let base_timeout = secs(w, "base_timeout", 30.0);
    let warmup_timeout = secs(w, "warmup_timeout", 10.0);
    let tcp = w.section(
        t.get("tcp_connection"),
        "transport.tcp_connection",
        t.pos,
        &["limit"],
    );
    let connection_limit = w.int(tcp.get("limit"), 0, 100_000).unwrap_or(100) as usize;
    let tls_section = w.section(
        t.get("tls"),
        "transport.tls",
        t.pos,
        &["ca_file", "client_cert_file", "client_key_file"],
    );
    let mut file = |key: &str| {
        let f = tls_section.get(key)?;
        let p = base_dir.join(w.name(Some(f))?);
        if !p.is_file() {
            w.error(f.path, f.node.pos, format!("no such file: {}", p.display()));
        }
        Some(p)
    };
    let tls = Tls {
        ca_file: file("ca_file"),
        client_cert_file: file("client_cert_file"),
        client_key_file: file("client_key_file"),
    };
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        w.error(
            "transport.tls",
            tls_section.pos,
            "client_cert_file and client_key_file go together",
        );
    }
    Some(Transport {
        base_timeout,
        warmup_timeout,
        connection_limit,
        tls,
    })
}

fn auth(w: &mut Walker, top: &Section<'_>, base_dir: &Path) -> Option<Auth> {
    let Some(entry) = top.get("auth") else {
        return Some(Auth::None);
    };
    // A custom auth plugin has the keys of a custom middleware entry.
    let is_wasm = matches!(&entry.node.value, Value::Map(entries)
        if entries.iter().any(|(k, v)| k.name == "type" && v.to_json() == "wasm"));
    if is_wasm {
        let margin = match &entry.node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == "refresh_margin")
                .map(|(k, node)| (format!("auth.{}", k.name), node)),
            _ => None,
        };
        let refresh_margin = margin.and_then(|(path, node)| {
            w.seconds(Some(Field { path: &path, node }), MAX_REFRESH_MARGIN)
        });
        let plugin = custom_plugin(w, entry, base_dir, &["refresh_margin"])?;
        return Some(Auth::Wasm {
            plugin,
            refresh_margin: refresh_margin.unwrap_or(Duration::from_secs(60)),
        });
    }
    let a = w.section(
        Some(entry),
        "auth",
        top.pos,
        &[
            "type",
            "token",
            "username",
            "password",
            "token_url",
            "client_id",
            "client_secret",
            "scope",
            "refresh_margin",
            "client_auth",
            "api_key",
            "header_name",
            "query_param",
        ],
    );
    let kind = w.require(
        &a,
        "type",
        "type (none, basic, bearer, api_key, oauth2_client_credentials, oauth2_password, wasm)",
    );
    let kind = w.choice(kind, &AUTH_TYPES)?;
    let need = |w: &mut Walker, key: &str| {
        let f = w.require(&a, key, &format!("{key} (for auth type {kind})"));
        w.name(f)
    };
    Some(match kind {
        "none" => Auth::None,
        "basic" => Auth::Basic {
            username: need(w, "username")?,
            password: need(w, "password")?,
        },
        "bearer" => Auth::Bearer {
            token: need(w, "token")?,
        },
        "api_key" => {
            let key = need(w, "api_key");
            let query_param = w.name(a.get("query_param"));
            let header = w.name(a.get("header_name"));
            if let (Some(_), Some(f)) = (&header, a.get("query_param")) {
                w.error(
                    f.path,
                    f.node.pos,
                    "give header_name or query_param, not both",
                );
            }
            Auth::ApiKey {
                key: key?,
                header: header.unwrap_or_else(|| "X-API-Key".into()),
                query_param,
            }
        }
        _ => {
            let token_url = w
                .require(&a, "token_url", "token_url (for OAuth2)")
                .and_then(|f| {
                    let u = url(w, f)?;
                    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
                    if u.scheme() != "https" && !loopback {
                        w.error(
                            f.path,
                            f.node.pos,
                            "the client secret would travel in clear text: use https (plain http is allowed on loopback only)",
                        );
                        return None;
                    }
                    Some(u)
                });
            let client_id = need(w, "client_id");
            let client_secret = need(w, "client_secret");
            let grant = if kind == "oauth2_password" {
                OAuth2Grant::Password {
                    username: need(w, "username")?,
                    password: need(w, "password")?,
                }
            } else {
                OAuth2Grant::ClientCredentials
            };
            let scope = w.name(a.get("scope"));
            let refresh_margin = w
                .seconds(a.get("refresh_margin"), MAX_REFRESH_MARGIN)
                .unwrap_or(Duration::from_secs(60));
            let client_auth = match a.get("client_auth") {
                None => Some(ClientAuth::Auto),
                f => match w.choice(f, &["basic", "body"])? {
                    "basic" => Some(ClientAuth::Basic),
                    _ => Some(ClientAuth::Body),
                },
            };
            Auth::OAuth2(OAuth2Settings {
                grant,
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope,
                refresh_margin,
                client_auth: client_auth?,
            })
        }
    })
}

/// The `middleware` list: plugins, and the credentials of its `bearer` / `header_auth` entries.
fn middleware(
    w: &mut Walker,
    top: &Section<'_>,
    base_dir: &Path,
) -> (Vec<MiddlewareSpec>, Vec<HostCredential>) {
    let types = middleware_types();
    let mut out: Vec<MiddlewareSpec> = Vec::new();
    let mut credentials = Vec::new();
    for (path, node) in w.list(top.get("middleware")) {
        let Value::Map(entries) = &node.value else {
            w.error(
                &path,
                node.pos,
                format!(
                    "expected a mapping with a `type`, found {}",
                    node.value.kind()
                ),
            );
            continue;
        };
        let Some((_, type_node)) = entries.iter().find(|(k, _)| k.name == "type") else {
            w.error(
                &path,
                node.pos,
                format!("missing required key: type (one of: {})", types.join(", ")),
            );
            continue;
        };
        let type_path = format!("{path}.type");
        let Some(kind) = w.choice(
            Some(Field {
                path: &type_path,
                node: type_node,
            }),
            &types,
        ) else {
            continue;
        };
        let entry = Field { path: &path, node };
        if CREDENTIAL_TYPES.contains(&kind) {
            credentials.extend(credential_entry(w, entry, kind));
            continue;
        }
        let spec = if kind == "wasm" {
            custom_plugin(w, entry, base_dir, &[])
        } else {
            let own = builtin::find(kind).map_or(&[][..], |b| b.keys);
            let mut keys = vec!["type", "limits"];
            keys.extend_from_slice(own);
            let section = w.section(Some(entry), &path, node.pos, &keys);
            let limits = plugin_limits(w, &section);
            let mut config = node.to_json();
            if let Some(map) = config.as_object_mut() {
                map.remove("type");
                map.remove("limits");
            }
            Some(MiddlewareSpec {
                kind: kind.to_owned(),
                name: kind.to_owned(),
                path: path.clone(),
                source: PluginSource::Builtin,
                config,
                limits,
                grants: Grants::default(),
            })
        };
        let Some(spec) = spec else { continue };
        if let Some(earlier) = out.iter().find(|m| m.name == spec.name) {
            let message = format!(
                "plugin name `{}` is already used by {}; give each plugin its own name",
                spec.name, earlier.path
            );
            w.error(&path, node.pos, message);
            continue;
        }
        out.push(spec);
    }
    (out, credentials)
}

/// A `bearer` (`token`) or `header_auth` (`header`, `value`) entry: a header the host adds to every
/// request for the endpoint's origin after the chain, so that no plugin sees it.
fn credential_entry(w: &mut Walker, entry: Field<'_>, kind: &str) -> Option<HostCredential> {
    let path = entry.path;
    let keys: &[&str] = if kind == "bearer" {
        &["type", "token"]
    } else {
        &["type", "header", "value"]
    };
    let section = w.section(Some(entry), path, entry.node.pos, keys);
    let (name, value, at) = if kind == "bearer" {
        let f = w.require(
            &section,
            "token",
            "token (the bearer token; give it as a secret)",
        );
        let token = w.name(f)?;
        let f = section.get("token")?;
        (
            "authorization".to_owned(),
            format!("Bearer {}", token.trim()),
            f,
        )
    } else {
        let f = w.require(&section, "header", "header (the credential's header name)");
        let header = w.name(f);
        let f = w.require(
            &section,
            "value",
            "value (the credential; give it as a secret)",
        );
        let value = w.name(f);
        let at = section.get("value")?;
        if let (Some(h), Some(f)) = (&header, section.get("header"))
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            w.error(
                f.path,
                f.node.pos,
                format!("`{h}` is not a valid header name"),
            );
            return None;
        }
        (header?, value?, at)
    };
    if http::HeaderValue::from_str(&value).is_err() {
        w.error(at.path, at.node.pos, "not a valid HTTP header value");
        return None;
    }
    Some(HostCredential {
        name,
        value,
        from: format!("{path} ({kind})"),
    })
}

/// `type: wasm`: a custom plugin from a file, pinned by its sha256.
fn custom_plugin(
    w: &mut Walker,
    entry: Field<'_>,
    base_dir: &Path,
    extra_keys: &[&'static str],
) -> Option<MiddlewareSpec> {
    let path = entry.path;
    let mut keys = vec![
        "type", "name", "path", "sha256", "config", "limits", "grants",
    ];
    keys.extend_from_slice(extra_keys);
    let section = w.section(Some(entry), path, entry.node.pos, &keys);
    let f = w.require(
        &section,
        "name",
        "name (names the plugin in errors and logs)",
    );
    let name = w.name(f);
    let f = w.require(&section, "path", "path (the component's .wasm file)");
    let file = w.name(f);
    let f = w.require(
        &section,
        "sha256",
        "sha256 (the component's digest, as `sha256sum FILE` prints it)",
    );
    let sha256 = w.name(f);
    if let (Some(digest), Some(f)) = (&sha256, section.get("sha256"))
        && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        w.error(f.path, f.node.pos, "expected 64 hexadecimal digits");
    }
    if let (Some(written), Some(f)) = (&file, section.get("path"))
        && !base_dir.join(written).is_file()
    {
        w.error(f.path, f.node.pos, format!("no such file: {written}"));
    }
    let file = file.map(|f| base_dir.join(f));
    if let Some(name) = &name
        && let Some(f) = section.get("name")
        && (builtin::find(name).is_some() || name == "host")
    {
        w.error(
            f.path,
            f.node.pos,
            format!("`{name}` is the name of a built-in plugin; choose another"),
        );
    }
    let config = match section.get("config") {
        None => serde_json::json!({}),
        Some(f) => match &f.node.value {
            Value::Map(_) | Value::Null => f.node.to_json(),
            other => {
                w.error(
                    f.path,
                    f.node.pos,
                    format!("expected a mapping, found {}", other.kind()),
                );
                serde_json::json!({})
            }
        },
    };
    let limits = plugin_limits(w, &section);
    let g = w.section(
        section.get("grants"),
        &section.child("grants"),
        section.pos,
        &["outbound_hosts", "forward_credentials", "env", "wall_clock"],
    );
    let outbound_hosts = w.string_list(g.get("outbound_hosts"));
    if let Some(f) = g.get("outbound_hosts") {
        for host in &outbound_hosts {
            if let Err(e) = crate::chain::Origin::of(&format!("http://{host}/"))
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    if host.contains(['/', '@', '?', '#']) || host.trim() != host {
                        Err("expected `host` or `host:port`".to_owned())
                    } else {
                        Ok(())
                    }
                })
            {
                w.error(
                    f.path,
                    f.node.pos,
                    format!("`{host}` is not a host or host:port ({e})"),
                );
            }
        }
    }
    let forward_credentials = w.boolean(g.get("forward_credentials")).unwrap_or(false);
    if let (true, true, Some(f)) = (
        forward_credentials,
        outbound_hosts.is_empty(),
        g.get("forward_credentials"),
    ) {
        w.error(
            f.path,
            f.node.pos,
            "forward_credentials forwards the pipeline's credentials to the plugin's outbound_hosts: list them",
        );
    }
    let grants = Grants {
        outbound_hosts,
        forward_credentials,
        env: w.string_list(g.get("env")),
        wall_clock: w.boolean(g.get("wall_clock")).unwrap_or(false),
    };
    Some(MiddlewareSpec {
        kind: "wasm".into(),
        name: name?,
        path: path.to_owned(),
        source: PluginSource::File {
            path: file?,
            sha256: sha256?.to_ascii_lowercase(),
        },
        config,
        limits,
        grants,
    })
}

/// `limits: {memory_mb, timeout_ms, max_requests, max_body_bytes}` of a plugin entry.
fn plugin_limits(w: &mut Walker, entry: &Section<'_>) -> PluginLimits {
    let l = w.section(
        entry.get("limits"),
        &entry.child("limits"),
        entry.pos,
        &["memory_mb", "timeout_ms", "max_requests", "max_body_bytes"],
    );
    let default = PluginLimits::default();
    PluginLimits {
        memory_mb: w
            .int(l.get("memory_mb"), 1, 4096)
            .map_or(default.memory_mb, |v| v as u32),
        timeout_ms: w
            .int(l.get("timeout_ms"), 1, 600_000)
            .map_or(default.timeout_ms, |v| v as u64),
        max_requests: w
            .int(l.get("max_requests"), 1, 1000)
            .map_or(default.max_requests, |v| v as u32),
        max_body_bytes: w
            .int(l.get("max_body_bytes"), 0, 1 << 30)
            .map_or(default.max_body_bytes, |v| v as u64),
        max_requests_set: l.has("max_requests"),
    }
}

/// The built-in `retry` sends a row's request up to its `max_attempts` (default
/// `execution.max_attempts`): unless its entry sets `limits.max_requests`, that is its limit.
fn retry_request_limit(middleware: &mut [MiddlewareSpec], max_attempts: u32) {
    for spec in middleware.iter_mut().filter(|s| s.kind == "retry") {
        if spec.limits.max_requests_set {
            continue;
        }
        let attempts = spec
            .config
            .get("max_attempts")
            .and_then(|v| v.as_u64())
            .map_or(max_attempts, |v| v.min(1000) as u32);
        spec.limits.max_requests = spec.limits.max_requests.max(attempts);
    }
}

fn source(
    w: &mut Walker,
    tables: &Section<'_>,
    has_spark: bool,
    base_dir: &Path,
) -> Option<Source> {
    let s = w.section(
        tables.get("source"),
        "tables.source",
        tables.pos,
        &[
            "name",
            "namespace",
            "identifier",
            "id_column",
            "required_columns",
            "path",
            "format",
            "query",
        ],
    );
    if !tables.has("source") {
        w.error(
            "tables.source",
            tables.pos,
            "missing required section: tables.source",
        );
        return None;
    }
    let id_column = w.name(s.get("id_column"));
    let required_columns = w.string_list(s.get("required_columns"));
    let format = w
        .choice(s.get("format"), &FileFormat::NAMES)
        .map(FileFormat::from_name);
    let location = if let Some(f) = s.get("path") {
        let path = base_dir.join(w.name(Some(f))?);
        if s.has("query") {
            w.error(
                &s.child("query"),
                s.pos,
                "query reads through Spark; it does not go with path",
            );
        }
        let format = format.or_else(|| FileFormat::infer(&path));
        if !path.exists() {
            w.error(
                f.path,
                f.node.pos,
                format!("no such file or folder: {}", path.display()),
            );
            return None;
        }
        let Some(format) = format else {
            w.error(f.path, f.node.pos, "cannot tell the format from the name: give tables.source.format (parquet, csv, jsonl or delta)");
            return None;
        };
        SourceLocation::File { path, format }
    } else if has_spark {
        let query = w.name(s.get("query"));
        let table = match (
            w.name(s.get("identifier")),
            w.name(s.get("name")),
            w.name(s.get("namespace")),
        ) {
            (Some(identifier), _, _) => Some(identifier),
            (None, Some(name), Some(ns)) => Some(format!("{ns}.{name}")),
            (None, Some(name), None) => Some(name),
            (None, None, _) => None,
        };
        if table.is_none() && query.is_none() {
            w.error(
                "tables.source",
                s.pos,
                "a Spark source needs identifier, name (with namespace) or query",
            );
            return None;
        }
        SourceLocation::Spark { table, query }
    } else {
        w.error("tables.source.path", s.pos, "missing required key: path (a local file or folder), or set spark.remote to read a table through Spark");
        return None;
    };
    Some(Source {
        location,
        id_column,
        required_columns,
    })
}

fn sink(w: &mut Walker, tables: &Section<'_>, has_spark: bool, base_dir: &Path) -> Option<Sink> {
    let s = w.section(
        tables.get("sink"),
        "tables.sink",
        tables.pos,
        &["name", "namespace", "mode", "path", "also_spark_table"],
    );
    if !tables.has("sink") {
        w.error(
            "tables.sink",
            tables.pos,
            "missing required section: tables.sink",
        );
        return None;
    }
    let mode = match w.choice(s.get("mode"), &["append", "overwrite"]) {
        Some("overwrite") => SinkMode::Overwrite,
        _ => SinkMode::Append,
    };
    let mut spark_table = None;
    let mirror = w.name(s.get("also_spark_table"));
    if let Some(f) = s.get("also_spark_table") {
        if mode == SinkMode::Overwrite {
            w.error(
                f.path,
                f.node.pos,
                "an overwrite would replace the Delta table but not the Spark table: use mode: append",
            );
        }
        if !has_spark {
            w.error(f.path, f.node.pos, "a Spark table needs spark.remote");
        } else if !s.has("path") {
            w.error(
                f.path,
                f.node.pos,
                "also_spark_table goes with path (a Delta table written as well); without path, name the Spark table with namespace and name",
            );
        }
    }
    let path = match (w.name(s.get("path")), w.name(s.get("name"))) {
        (Some(path), _) => base_dir.join(path),
        (None, Some(name)) if has_spark => {
            let table = match w.name(s.get("namespace")) {
                Some(ns) => format!("{ns}.{name}"),
                None => name,
            };
            if mode == SinkMode::Overwrite
                && let Some(f) = s.get("mode")
            {
                w.error(
                    f.path,
                    f.node.pos,
                    "a Spark sink is append-only (a rerun resumes from the rows in it); give path: for a Delta table that can be overwritten",
                );
            }
            spark_table = Some(table);
            PathBuf::new()
        }
        (None, Some(name)) => {
            let namespace = w
                .name(s.get("namespace"))
                .unwrap_or_else(|| "default".to_owned());
            base_dir
                .join("warehouse")
                .join(namespace.replace('.', "/"))
                .join(name)
        }
        (None, None) => {
            w.error(
                "tables.sink",
                s.pos,
                "missing required key: path (the Delta table's folder) or name",
            );
            return None;
        }
    };
    Some(Sink {
        path,
        mode,
        spark_table,
        mirror,
    })
}

fn column_mapping(w: &mut Walker, tables: &Section<'_>) -> Vec<ColumnMapping> {
    let mut out = Vec::new();
    for (path, node) in w.list(tables.get("column_mapping")) {
        let m = w.section(
            Some(Field { path: &path, node }),
            &path,
            node.pos,
            &["source_column", "endpoint_param"],
        );
        let source_column = w.require(&m, "source_column", "source_column");
        let source_column = w.name(source_column);
        let endpoint_param = w
            .name(m.get("endpoint_param"))
            .or_else(|| source_column.clone());
        if let (Some(source_column), Some(endpoint_param)) = (source_column, endpoint_param) {
            out.push(ColumnMapping {
                source_column,
                endpoint_param,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{LoadOptions, SecretStore, load_str};

    fn errors(yaml: &str) -> Vec<String> {
        let secrets = SecretStore::default();
        let opts = LoadOptions {
            secrets: &secrets,
            base_dir: std::env::temp_dir(),
        };
        match load_str(yaml, "t", &opts) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn legacy_spellings_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rows.csv"), "id\n1\n").unwrap();
        let yaml = "endpoint:\n  name: legacy\n  vendor: acme\n  base_path: http://127.0.0.1:1/api\n  url_path: /items/{id}\n\
                    execution:\n  num_partitions: 3\n  max_concurrent_requests: 7\ntables:\n  source: {path: rows.csv, id_column: id}\n  \
                    sink: {name: out, namespace: bronze.demo, mode: overwrite}\n  column_mappings:\n    - {source_column: id, endpoint_param: item}\n";
        let secrets = SecretStore::default();
        let p = load_str(
            yaml,
            "t",
            &LoadOptions {
                secrets: &secrets,
                base_dir: dir.path().into(),
            },
        )
        .unwrap();
        assert_eq!(p.id, "legacy");
        assert_eq!(p.execution.partitions, 3);
        assert_eq!(p.execution.concurrency_limit, 7);
        assert_eq!(p.column_mapping[0].endpoint_param, "item");
        assert!(p.sink.path.ends_with("warehouse/bronze/demo/out"));
        assert_eq!(p.sink.mode, super::SinkMode::Overwrite);
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
}
