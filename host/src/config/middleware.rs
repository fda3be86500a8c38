//! `middleware`: the chain, outermost first. Each entry is a built-in plugin (`retry`, `logging`,
//! ...: the entry's other keys are its settings), a credential the host adds after the chain
//! (`bearer`, `header_auth`), or a custom plugin (`type: wasm`: a component file pinned by its
//! sha256, with limits and grants).

use std::path::{Path, PathBuf};

use super::keys::{KeySpec, Kind};
use super::probe::Probe;
use super::tree::Value;
use super::walk::{Field, Section, Walker};
use crate::builtins;

/// One plugin of the chain: a built-in one or a custom component.
#[derive(Clone, Debug)]
pub struct MiddlewareSpec {
    /// The built-in type (`retry`, ...) or `wasm`.
    pub kind: String,
    /// What errors and logs call it: the type for built-ins, `name` for custom plugins.
    pub name: String,
    /// `middleware[i]`, for messages.
    pub path: String,
    /// Where its component comes from.
    pub source: PluginSource,
    /// The plugin's own settings, as JSON (built-ins: the entry's other keys; custom: `config`).
    pub config: serde_json::Value,
    /// What it may use.
    pub limits: PluginLimits,
    /// What it may reach beyond the sandbox.
    pub grants: Grants,
}

/// Where a plugin's component comes from.
#[derive(Clone, Debug)]
pub enum PluginSource {
    /// Embedded in the binary.
    Builtin,
    /// A component file, pinned by its digest.
    File {
        /// The file.
        path: PathBuf,
        /// Its sha256, lower-case hex.
        sha256: String,
        /// Its minisign signature (default: the file's path + `.minisig`), checked against the
        /// trusted keys (`plugins`).
        signature: PathBuf,
    },
    /// A component in an OCI registry: `oci://host/ns/name:tag@sha256:...`, fetched (or taken from
    /// the cache) at load, verified by digest; its signature is pushed beside it.
    Registry {
        /// The reference as written.
        reference: String,
    },
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

/// A credential header the host adds after the middleware chain (no plugin sees it).
#[derive(Clone, Debug)]
pub struct HostCredential {
    /// The header's name.
    pub name: String,
    /// Its value (a secret).
    pub value: String,
    /// Where the pipeline file sets it, for messages: `middleware[1] (bearer)`.
    pub from: String,
}

/// The legacy framework's credential middleware: the host adds their header after the chain.
const CREDENTIAL_TYPES: [&str; 2] = ["bearer", "header_auth"];

/// The keys of a `limits` mapping.
pub(crate) const LIMIT_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "memory_mb",
        Kind::Int { min: 1, max: 4096 },
        "Linear memory cap per instance, MiB.",
    )
    .default(|| PluginLimits::default().memory_mb.into()),
    KeySpec::new(
        "timeout_ms",
        Kind::Int {
            min: 1,
            max: 600_000,
        },
        "Guest running time per call, ms.",
    )
    .default(|| PluginLimits::default().timeout_ms.into()),
    KeySpec::new(
        "max_requests",
        Kind::Int { min: 1, max: 1000 },
        "Sends of one row's request by this plugin (the first and the resends).",
    )
    .default(|| PluginLimits::default().max_requests.into()),
    KeySpec::new(
        "max_body_bytes",
        Kind::Int {
            min: 0,
            max: 1 << 30,
        },
        "The largest body the plugin may set or answer with.",
    )
    .default(|| PluginLimits::default().max_body_bytes.into()),
];

/// The keys of a `grants` mapping.
pub(crate) const GRANT_KEYS: &[KeySpec] = &[
    KeySpec::new(
        "outbound_hosts",
        Kind::TextList,
        "`host:port` (or `host` for 80 and 443) a plugin may send a row's request to, or fetch from.",
    ),
    KeySpec::new(
        "forward_credentials",
        Kind::Bool,
        "The pipeline's credentials go with its requests to outbound_hosts too.",
    )
    .default(|| false.into()),
    KeySpec::new(
        "env",
        Kind::TextList,
        "Environment variables the plugin sees.",
    ),
    KeySpec::new(
        "wall_clock",
        Kind::Bool,
        "The real wall clock (else 1970-01-01).",
    )
    .default(|| false.into()),
];

/// The keys of a custom plugin entry (`type: wasm`).
pub(crate) const CUSTOM_KEYS: &[KeySpec] = &[
    KeySpec::new("type", Kind::Choice(&["wasm"]), "A custom plugin."),
    KeySpec::new("name", Kind::Text, "Names the plugin in errors and logs."),
    KeySpec::new("path", Kind::Text, "The component's .wasm file."),
    KeySpec::new(
        "source",
        Kind::Text,
        "Instead of path and sha256: oci://host/ns/name:tag@sha256:DIGEST, a plugin in an OCI registry.",
    ),
    KeySpec::new(
        "sha256",
        Kind::Text,
        "The component's digest, as `sha256sum FILE` prints it.",
    ),
    KeySpec::new(
        "signature",
        Kind::Text,
        "Its minisign signature file (default: PATH.minisig), checked against plugins.trusted_keys.",
    ),
    KeySpec::new(
        "config",
        Kind::Any,
        "The plugin's settings, handed to it as JSON.",
    ),
    KeySpec::new("limits", Kind::Section(LIMIT_KEYS), "What it may use."),
    KeySpec::new("grants", Kind::Section(GRANT_KEYS), "What it may reach."),
];

/// Middleware types: the built-in plugins, the credentials, then `wasm` for custom ones.
pub(crate) fn middleware_types() -> Vec<&'static str> {
    builtins::BUILTINS
        .iter()
        .map(|b| b.kind)
        .chain(builtins::ALIASES.iter().map(|(alias, _)| *alias))
        .chain(CREDENTIAL_TYPES)
        .chain(["wasm"])
        .collect()
}

/// The `middleware` list: its plugins, and the credentials of its `bearer` / `header_auth`
/// entries. Plugin files are checked afterwards (`probes`).
pub(crate) fn read(
    w: &mut Walker,
    list: Option<Field<'_>>,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> (Vec<MiddlewareSpec>, Vec<HostCredential>) {
    let types = middleware_types();
    let mut out: Vec<MiddlewareSpec> = Vec::new();
    let mut credentials = Vec::new();
    for (path, node) in w.list(list) {
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
        // A legacy spelling of a built-in (worker_diag) is that built-in.
        let kind = builtins::canonical(kind);
        let spec = if kind == "wasm" {
            custom_plugin(w, entry, base_dir, probes, &[])
        } else {
            let own = builtins::find(kind).map_or(&[][..], |b| b.keys);
            let keys: Vec<KeySpec> = [
                KeySpec::new("type", Kind::Text, "The built-in plugin."),
                KeySpec::new("limits", Kind::Section(LIMIT_KEYS), "What it may use."),
            ]
            .into_iter()
            .chain(own.iter().map(|k| KeySpec::new(k, Kind::Any, "")))
            .collect();
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
    let keys: &[KeySpec] = if kind == "bearer" {
        BEARER_KEYS
    } else {
        HEADER_AUTH_KEYS
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
            && !w.header_name(f.path, f.node.pos, h)
        {
            return None;
        }
        (header?, value?, at)
    };
    if !w.header_value(at.path, at.node.pos, &value) {
        return None;
    }
    Some(HostCredential {
        name,
        value,
        from: format!("{path} ({kind})"),
    })
}

/// `type: wasm`: a custom plugin from a file, pinned by its sha256.
/// The keys of a `bearer` entry.
pub(crate) const BEARER_KEYS: &[KeySpec] = &[
    KeySpec::new("type", Kind::Text, "bearer"),
    KeySpec::new(
        "token",
        Kind::Text,
        "The bearer token (give it as a secret).",
    ),
];

/// The keys of a `header_auth` entry.
pub(crate) const HEADER_AUTH_KEYS: &[KeySpec] = &[
    KeySpec::new("type", Kind::Text, "header_auth"),
    KeySpec::new("header", Kind::Text, "The credential's header name."),
    KeySpec::new("value", Kind::Text, "The credential (give it as a secret)."),
];

/// A custom plugin entry (`type: wasm`, or an auth section of that type with `extra` keys).
pub(crate) fn custom_plugin(
    w: &mut Walker,
    entry: Field<'_>,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
    extra: &[KeySpec],
) -> Option<MiddlewareSpec> {
    let path = entry.path;
    let keys: Vec<KeySpec> = CUSTOM_KEYS.iter().chain(extra).copied().collect();
    let section = w.section(Some(entry), path, entry.node.pos, &keys);
    let f = w.require(
        &section,
        "name",
        "name (names the plugin in errors and logs)",
    );
    let name = w.name(f);
    if let Some(name) = &name
        && let Some(f) = section.get("name")
        && (builtins::find(name).is_some() || name == "host")
    {
        w.error(
            f.path,
            f.node.pos,
            format!("`{name}` is the name of a built-in plugin; choose another"),
        );
    }
    if let Some(f) = section.get("source") {
        return registry_plugin(w, &section, f, name, entry.path);
    }
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
    if let (Some(written), Some(f)) = (&file, section.get("path")) {
        probes.push(Probe::File {
            key: f.path.to_owned(),
            pos: f.node.pos,
            path: base_dir.join(written),
            written: written.clone(),
        });
    }
    let file = file.map(|f| base_dir.join(f));
    let signature = match section.get("signature") {
        Some(f) => w.name(Some(f)).map(|s| base_dir.join(s)),
        None => file.as_deref().map(default_signature_path),
    };
    let config = plugin_config(w, &section);
    let limits = plugin_limits(w, &section);
    let grants = grants(w, &section);
    Some(MiddlewareSpec {
        kind: "wasm".into(),
        name: name?,
        path: path.to_owned(),
        source: PluginSource::File {
            path: file?,
            sha256: sha256?.to_ascii_lowercase(),
            signature: signature?,
        },
        config,
        limits,
        grants,
    })
}

/// A custom plugin entry with `source: oci://...`.
fn registry_plugin(
    w: &mut Walker,
    section: &Section<'_>,
    source: Field<'_>,
    name: Option<String>,
    path: &str,
) -> Option<MiddlewareSpec> {
    for other in ["path", "sha256", "signature"] {
        if let Some(f) = section.get(other) {
            w.error(
                f.path,
                f.node.pos,
                "give `source` (oci://...), or `path` and `sha256`: not both (a registry reference is pinned by its digest, and its signature is stored beside it)",
            );
        }
    }
    let reference = w.name(Some(source))?;
    let Some(bare) = reference.strip_prefix("oci://") else {
        w.error(
            source.path,
            source.node.pos,
            "a plugin source is oci://host[:port]/namespace/name:tag@sha256:DIGEST",
        );
        return None;
    };
    if let Err(e) = bare.parse::<oci_client::Reference>() {
        w.error(
            source.path,
            source.node.pos,
            format!("not an OCI reference: {e}"),
        );
        return None;
    }
    let limits = plugin_limits(w, section);
    let grants = grants(w, section);
    let config = plugin_config(w, section);
    Some(MiddlewareSpec {
        kind: "wasm".into(),
        name: name?,
        path: path.to_owned(),
        source: PluginSource::Registry { reference },
        config,
        limits,
        grants,
    })
}

/// Where a plugin file's signature is by default: `FILE.minisig`, as `minisign -S` writes it.
pub fn default_signature_path(plugin: &Path) -> PathBuf {
    let mut s = plugin.as_os_str().to_owned();
    s.push(".minisig");
    PathBuf::from(s)
}

/// A custom plugin's `config`: a mapping handed to it as JSON (absent: `{}`).
fn plugin_config(w: &mut Walker, section: &Section<'_>) -> serde_json::Value {
    match section.get("config") {
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
    }
}

/// `grants` of a custom plugin entry.
fn grants(w: &mut Walker, entry: &Section<'_>) -> Grants {
    let g = w.section(
        entry.get("grants"),
        &entry.child("grants"),
        entry.pos,
        GRANT_KEYS,
    );
    let outbound_hosts = w.string_list(g.get("outbound_hosts"));
    if let Some(f) = g.get("outbound_hosts") {
        for host in &outbound_hosts {
            let checked = crate::chain::Origin::of(&format!("http://{host}/"))
                .map_err(|e| e.to_string())
                .and_then(|_| {
                    if host.contains(['/', '@', '?', '#']) || host.trim() != host {
                        Err("expected `host` or `host:port`".to_owned())
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = checked {
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
    Grants {
        outbound_hosts,
        forward_credentials,
        env: w.string_list(g.get("env")),
        wall_clock: w.boolean(g.get("wall_clock")).unwrap_or(false),
    }
}

/// `limits` of a plugin entry.
fn plugin_limits(w: &mut Walker, entry: &Section<'_>) -> PluginLimits {
    let l = w.section(
        entry.get("limits"),
        &entry.child("limits"),
        entry.pos,
        LIMIT_KEYS,
    );
    let d = PluginLimits::default();
    PluginLimits {
        memory_mb: w.int_of(&l, "memory_mb").map_or(d.memory_mb, |v| v as u32),
        timeout_ms: w
            .int_of(&l, "timeout_ms")
            .map_or(d.timeout_ms, |v| v as u64),
        max_requests: w
            .int_of(&l, "max_requests")
            .map_or(d.max_requests, |v| v as u32),
        max_body_bytes: w
            .int_of(&l, "max_body_bytes")
            .map_or(d.max_body_bytes, |v| v as u64),
        max_requests_set: l.has("max_requests"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{errors, load};

    #[test]
    fn credential_entries_are_host_credentials_not_plugins() {
        let p = load("middleware:\n  - {type: bearer, token: t0k}\n  - {type: timing}\n");
        assert_eq!(p.middleware.len(), 1);
        assert_eq!(p.credentials[0].name, "authorization");
        assert_eq!(p.credentials[0].value, "Bearer t0k");
    }

    #[test]
    fn grants_name_hosts_and_forwarding_needs_them() {
        let e = errors(
            "middleware:\n  - type: wasm\n    name: x\n    path: nope.wasm\n    sha256: \"0000000000000000000000000000000000000000000000000000000000000000\"\n    grants: {outbound_hosts: [\"http://a/\"], forward_credentials: true}\n",
        );
        assert!(
            e.iter().any(
                |e| e.contains("grants.outbound_hosts: `http://a/` is not a host or host:port")
            ),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|e| e.contains("middleware[0].path: no such file: nope.wasm")),
            "{e:?}"
        );
    }
}
