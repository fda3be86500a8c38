//! Stage 2: the pipeline's plugins, loaded. Every one is verified (its sha256), compiled once (or
//! taken from the compile cache), checked against its world of the contract (wit/plugin.wit) and
//! initialised, before any row is read; middleware become layers of the chain
//! ([`crate::chain::Layer`]), an auth plugin a credential source ([`crate::auth::Authenticator`]).
//!
//! The house, by lifetime (as wasmtime's wasi-http and spin's factors split theirs):
//! - [`engine`]: once per run: the engine, its instance pool sizing, the epoch ticker, the cache;
//! - [`component`]: once per plugin: bytes, digest, compilation, the world check, pre-instantiation;
//! - [`instance`]: per worker thread: the pools of initialised instances (a middleware has two: one
//!   for calls on fibers, one for calls on the stack, see [`stack`]);
//! - [`sandbox`]: per instance: the store's data, its WASI context and memory cap;
//! - [`budget`]: per call: the CPU deadline, the yields, the wall bound, the ticks on the stack;
//! - [`stack`]: middleware hooks called on the worker's own stack, run again on a fiber when
//!   preempted;
//! - [`bindings`]: the contract's generated bindings (private), [`resources`] and [`services`]: the
//!   host's side of it;
//! - [`middleware`] and [`auth`]: the two worlds as the rest of the host sees them;
//! - [`trust`] (who signed a plugin), [`manifest`] (what it says it is and asks for) and
//!   [`inspect`] (both, for `sparkwasm plugin inspect`).

mod auth;
mod bindings;
mod budget;
mod component;
mod engine;
pub mod inspect;
mod instance;
pub mod manifest;
mod middleware;
pub mod registry;
mod resources;
mod sandbox;
mod services;
mod stack;
pub mod trust;

use std::fmt;
use std::sync::Arc;

pub use auth::WasmAuth;
pub use component::World;
pub use sandbox::WorkerSlot;

use crate::api::Sender;
use crate::chain::{Egress, Hooks, Layer};
use crate::config::{Auth, MiddlewareSpec, Pipeline, PluginLimits, PluginSource};
use crate::redact::Redactor;
use component::Prepared;
use instance::{AuthWorld, Contract, MiddlewareWorld, PER_WORKER, WasmPlugin};
use sandbox::{PluginInfo, PluginState};

/// A plugin that could not be loaded: the run stops before its first request.
#[derive(Debug, thiserror::Error)]
#[error("{path}: plugin `{name}`: {message}")]
pub struct PluginError {
    /// The entry's key path (`middleware[2]`).
    pub path: String,
    /// The plugin's name.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// What a loaded plugin is, as `validate` prints it and a run logs it.
#[derive(Clone, Debug)]
pub struct PluginSummary {
    /// Its name.
    pub name: String,
    /// `built-in` or the file's path.
    pub source: String,
    /// The component's sha256 (hex).
    pub sha256: String,
    /// The component's size in bytes.
    pub size: usize,
    /// The world it was loaded as.
    pub world: World,
    /// The hooks a middleware asked for (`None` for an auth plugin).
    pub hooks: Option<Hooks>,
    /// A middleware's hooks are called on the worker's stack (else on fibers only).
    pub on_stack: bool,
    /// What it may use.
    pub limits: PluginLimits,
    /// Where it may send requests.
    pub egress: Egress,
    /// Environment variables it sees.
    pub env: Vec<String>,
    /// It sees the real wall clock.
    pub wall_clock: bool,
    /// Compiled by this load (false: from the compile cache).
    pub compiled: bool,
    /// How long compiling (or loading from the cache) took.
    pub load_time: std::time::Duration,
    /// Its signature, as the trust policy judged it.
    pub signature: trust::Signature,
    /// `name version` from its manifest.
    pub manifest: Option<String>,
    /// Grants its manifest asks for that its entry does not give (never granted).
    pub not_granted: Vec<String>,
}

impl PluginSummary {
    /// What its manifest asks for and the pipeline does not give, said once (nothing is granted
    /// implicitly: the plugin runs without it).
    pub fn grant_warning(&self) -> Option<String> {
        (!self.not_granted.is_empty()).then(|| {
            format!(
                "plugin `{}` asks in its manifest for {}, which the pipeline does not grant; it runs without (add them to its entry's grants to give them)",
                self.name,
                self.not_granted.join(", ")
            )
        })
    }
}

impl fmt::Display for PluginSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` ({}, {} bytes): sha256 {}, {}",
            self.name,
            self.source,
            self.size,
            self.sha256,
            self.world.name()
        )?;
        if let Some(h) = self.hooks {
            let names: Vec<&str> = [
                (h.request, "on-request"),
                (h.response, "on-response"),
                (h.error, "on-error"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            let names = if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(" ")
            };
            let on = if self.on_stack { "the stack" } else { "fibers" };
            write!(f, ", hooks {names} (called on {on})")?;
        }
        let l = &self.limits;
        write!(
            f,
            "; limits: memory {} MiB, {} ms per call, {} requests per row, bodies up to {} bytes",
            l.memory_mb, l.timeout_ms, l.max_requests, l.max_body_bytes
        )?;
        let mut grants = Vec::new();
        if !self.egress.hosts.is_empty() {
            grants.push(format!("outbound_hosts {:?}", self.egress.hosts));
        }
        if self.egress.forward_credentials {
            grants.push("forward_credentials".to_owned());
        }
        if !self.env.is_empty() {
            grants.push(format!("env {:?}", self.env));
        }
        if self.wall_clock {
            grants.push("wall_clock".to_owned());
        }
        if grants.is_empty() {
            write!(f, "; grants: none")?;
        } else {
            write!(f, "; grants: {}", grants.join(", "))?;
        }
        if let Some(m) = &self.manifest {
            write!(f, "; manifest: {m}")?;
        }
        write!(f, "; signature: {}", self.signature)
    }
}

/// The plugins of a run, loaded.
pub struct Plugins {
    /// The middleware, outermost first.
    pub layers: Vec<Arc<dyn Layer>>,
    /// A custom auth strategy (`auth: {type: wasm}`).
    pub auth: Option<WasmAuth>,
    /// Every plugin, in the pipeline's order (the auth plugin last).
    pub summaries: Vec<PluginSummary>,
}

/// Loads a pipeline's plugins for a run with `pools` worker pools (one per worker thread, and pool
/// 0 for other threads: see [`crate::worker`]). An auth plugin's outbound fetches go through
/// `sender`; whatever plugins log passes through `redactor`.
pub async fn load(
    pipeline: &Pipeline,
    pools: usize,
    sender: &Arc<dyn Sender>,
    redactor: &Arc<Redactor>,
) -> Result<Plugins, PluginError> {
    let auth_spec = match &pipeline.auth {
        Auth::Wasm { plugin, .. } => Some(plugin),
        _ => None,
    };
    let specs: Vec<&MiddlewareSpec> = pipeline.middleware.iter().chain(auth_spec).collect();
    let mut plugins = Plugins {
        layers: Vec::new(),
        auth: None,
        summaries: Vec::new(),
    };
    let Some(first) = specs.first() else {
        return Ok(plugins);
    };
    let host_error = |message: String| PluginError {
        path: first.path.clone(),
        name: "host".into(),
        message,
    };
    let shards = pools.max(1);
    // Each plugin: at most PER_WORKER instances alive per worker pool, plus the one made at load;
    // a middleware's stack pool one per worker pool (its calls never overlap), plus one.
    let instances = u32::try_from(specs.len() * (shards * (PER_WORKER + 2) + 1) + 8)
        .map_err(|_| host_error("too many plugins for the instance pool".into()))?;
    let memory_mb = specs.iter().map(|s| s.limits.memory_mb).max().unwrap_or(32);
    let (engine, cache) = engine::start(instances, memory_mb)
        .map_err(|e| host_error(format!("cannot start the WASM engine: {e:#}")))?;
    let mut middleware_linker = wasmtime::component::Linker::new(&engine);
    let mut stack_linker = wasmtime::component::Linker::new(&engine);
    let mut auth_linker = wasmtime::component::Linker::new(&engine);
    bindings::link(&mut middleware_linker, &mut stack_linker, &mut auth_linker)
        .map_err(|e| host_error(format!("cannot link the host interfaces: {e:#}")))?;
    let trust = trust::Trust::for_pipeline(
        &pipeline.plugins.trusted_keys,
        pipeline.plugins.require_signature,
        &pipeline.plugins.base_dir,
    )
    .map_err(|message| PluginError {
        path: "plugins".into(),
        name: "host".into(),
        message,
    })?;
    let process = format!("{}/{}", hostname(), pipeline.id);
    for spec in specs {
        let fail = |message: String| PluginError {
            path: spec.path.clone(),
            name: spec.name.clone(),
            message,
        };
        let is_auth = auth_spec.is_some_and(|a| std::ptr::eq(a, spec));
        let info = Arc::new(PluginInfo {
            name: spec.name.clone(),
            config: spec.config.to_string(),
            limits: spec.limits,
            env: spec
                .grants
                .env
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
                .collect(),
            wall_clock: spec.grants.wall_clock,
            process: process.clone(),
            redactor: redactor.clone(),
            egress: Egress {
                hosts: spec.grants.outbound_hosts.clone(),
                forward_credentials: spec.grants.forward_credentials,
            },
            sender: sender.clone(),
        });
        let summary = |prepared: &Prepared, world, hooks| PluginSummary {
            name: spec.name.clone(),
            source: match &spec.source {
                PluginSource::Builtin => "built-in".into(),
                PluginSource::File { path, .. } => path.display().to_string(),
                PluginSource::Registry { reference } => reference.clone(),
            },
            sha256: prepared.sha256.clone(),
            size: prepared.size,
            world,
            hooks,
            on_stack: false,
            limits: spec.limits,
            egress: info.egress.clone(),
            env: spec.grants.env.clone(),
            wall_clock: spec.grants.wall_clock,
            compiled: prepared.compiled,
            load_time: prepared.load_time,
            signature: prepared.signature.clone(),
            manifest: prepared.manifest.as_ref().map(|m| {
                if m.version.is_empty() {
                    m.name.clone()
                } else {
                    format!("{} {}", m.name, m.version)
                }
            }),
            not_granted: prepared
                .manifest
                .as_ref()
                .map(|m| m.grants.missing_from(&spec.grants))
                .unwrap_or_default(),
        };
        let fetched = fetch(spec, pipeline).await.map_err(fail)?;
        let verified = component::verified(spec, &trust, fetched).map_err(fail)?;
        if is_auth {
            let (plugin, prepared, ()) =
                start::<AuthWorld>(verified, &info, &engine, &cache, &auth_linker, shards)
                    .await
                    .map_err(fail)?;
            plugins
                .summaries
                .push(summary(&prepared, World::Auth, None));
            plugins.auth = Some(WasmAuth::new(plugin));
        } else {
            let (plugin, prepared, asked) = start::<MiddlewareWorld>(
                verified,
                &info,
                &engine,
                &cache,
                &middleware_linker,
                shards,
            )
            .await
            .map_err(fail)?;
            let hooks = middleware::hooks(asked);
            let component = plugin.pre().instance_pre().component();
            let on_stack =
                match stack::OnStack::new(&info, &engine, &stack_linker, component, shards) {
                    Ok(on_stack) => Some(on_stack),
                    Err(why) => {
                        tracing::debug!(plugin = %spec.name, "its hooks run on fibers only: {why}");
                        None
                    }
                };
            let mut summary = summary(&prepared, World::Middleware, Some(hooks));
            summary.on_stack = on_stack.is_some();
            plugins.summaries.push(summary);
            plugins.layers.push(Arc::new(middleware::WasmMiddleware {
                plugin,
                on_stack,
                hooks,
            }));
        }
        let s = plugins.summaries.last_mut().expect("just pushed");
        // A grant may be written with a secret in it: the summary (logged, printed by `validate`,
        // in the run's report) shows it redacted.
        for host in &mut s.egress.hosts {
            if let std::borrow::Cow::Owned(shown) = redactor.text(host) {
                *host = shown;
            }
        }
        let s = &*s;
        tracing::info!(
            plugin = %s.name,
            compiled = s.compiled,
            load_ms = s.load_time.as_secs_f64() * 1e3,
            "{s}"
        );
        if let Some(w) = s.grant_warning() {
            tracing::warn!(plugin = %s.name, "{w}");
        }
    }
    Ok(plugins)
}

/// Compiles, checks and pre-instantiates one plugin, and makes its first instance (which proves
/// that it instantiates and that its config is good; it is kept for the first rows).
async fn start<C: Contract>(
    verified: component::Verified,
    info: &Arc<PluginInfo>,
    engine: &wasmtime::Engine,
    cache: &wasmtime::Cache,
    linker: &wasmtime::component::Linker<PluginState>,
    shards: usize,
) -> Result<(WasmPlugin<C>, Prepared, C::Init), String> {
    let (prepared, pre) = component::prepare::<C>(verified, engine, cache, linker)?;
    let plugin = WasmPlugin::<C>::new(info.clone(), engine.clone(), pre, shards);
    let (instance, init) = plugin.instantiate().await?;
    plugin.keep(instance);
    Ok((plugin, prepared, init))
}

/// A registry plugin, fetched (or taken from the cache) and verified by digest; `None` for others.
/// A reference without a digest is refused unless the run allows unpinned ones; then the digest it
/// resolved to is said, to pin.
async fn fetch(
    spec: &MiddlewareSpec,
    pipeline: &Pipeline,
) -> Result<Option<component::Fetched>, String> {
    let PluginSource::Registry { reference } = &spec.source else {
        return Ok(None);
    };
    let parsed = registry::parse(reference)?;
    if parsed.digest().is_none() && !pipeline.allow_unpinned {
        return Err(format!(
            "{reference} has no digest: pin it (oci://...@sha256:DIGEST, as `sparkwasm plugin pull` prints it), or run with --allow-unpinned"
        ));
    }
    let pulled = registry::pull(reference)
        .await
        .map_err(|e| format!("{reference}: {e}"))?;
    if parsed.digest().is_none() {
        // Said whatever RUST_LOG filters: the one notice that a mutable tag was run.
        crate::say::warning(&format!(
            "plugin `{}`: {reference} is not pinned: it resolved to oci://{} (pin that in the pipeline)",
            spec.name, pulled.resolved
        ));
    }
    Ok(Some(component::Fetched {
        component: pulled.component,
        signature: pulled.signature,
        place: {
            let tag = registry::signature_tag(&pulled.digest);
            if pulled.from_cache {
                format!(
                    "signature at tag {tag}, as cached in {} (remove that entry to fetch it again)",
                    registry::cache_dir().display()
                )
            } else {
                format!("signature at tag {tag}")
            }
        },
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
