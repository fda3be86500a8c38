//! One plugin's component: its bytes (embedded for built-ins; read and checked against its sha256
//! for a file), compiled once (or loaded from the compile cache), checked against the contract's
//! world, and pre-instantiated so that a new instance costs microseconds.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};

use super::bindings::{AUTH_EXPORT, MIDDLEWARE_EXPORT};
use super::instance::Contract;
use super::manifest::{self, Manifest};
use super::sandbox::PluginState;
use super::trust::{Signature, Trust};
use crate::config::{MiddlewareSpec, PluginSource};

/// The contract world a plugin is loaded as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `sparkwasm:plugin/middleware`.
    Middleware,
    /// `sparkwasm:plugin/auth`.
    Auth,
}

impl World {
    /// The world's name, versioned: `sparkwasm:plugin/middleware@1.0.0`.
    pub fn name(self) -> &'static str {
        match self {
            World::Middleware => "sparkwasm:plugin/middleware@1.0.0",
            World::Auth => "sparkwasm:plugin/auth@1.0.0",
        }
    }

    fn export(self) -> &'static str {
        match self {
            World::Middleware => MIDDLEWARE_EXPORT,
            World::Auth => AUTH_EXPORT,
        }
    }
}

/// What loading a component found out.
pub(super) struct Prepared {
    /// Hex sha256 of the component's bytes.
    pub sha256: String,
    pub size: usize,
    /// Compiled now (false: loaded from the compile cache).
    pub compiled: bool,
    pub load_time: Duration,
    /// Its signature, as the trust policy judged it.
    pub signature: Signature,
    /// The manifest it carries.
    pub manifest: Option<Manifest>,
}

/// A plugin fetched from a registry before it is prepared (its bytes already verified by digest).
pub(super) struct Fetched {
    /// The component.
    pub component: Vec<u8>,
    /// Its signature, as pushed beside it.
    pub signature: Option<String>,
    /// Where the signature was looked for, for messages.
    pub place: String,
}

/// The component's bytes: embedded for built-ins (trusted with the binary); for a file, read,
/// checked against its sha256; for a registry, as fetched. Then its signature against the policy.
pub(super) fn verified(
    spec: &MiddlewareSpec,
    trust: &Trust,
    fetched: Option<Fetched>,
) -> Result<Verified, String> {
    let (bytes, signature) = bytes(spec, trust, fetched)?;
    Ok(Verified { bytes, signature })
}

/// A component's bytes, checked against its digest and its signature against the policy.
pub(super) struct Verified {
    bytes: Cow<'static, [u8]>,
    signature: Signature,
}

fn bytes(
    spec: &MiddlewareSpec,
    trust: &Trust,
    fetched: Option<Fetched>,
) -> Result<(Cow<'static, [u8]>, Signature), String> {
    if let Some(f) = fetched {
        let status = trust.check_text(&f.component, f.signature.as_deref(), &f.place)?;
        return Ok((Cow::Owned(f.component), status));
    }
    match &spec.source {
        PluginSource::Registry { reference } => {
            Err(format!("{reference} was not fetched before loading"))
        }
        PluginSource::Builtin => crate::builtins::find(&spec.kind)
            .map(|b| (Cow::Borrowed(b.component), Signature::BuiltIn))
            .ok_or_else(|| format!("no built-in plugin `{}`", spec.kind)),
        PluginSource::File {
            path,
            sha256,
            signature,
        } => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let actual = format!("{:x}", Sha256::digest(&bytes));
            if &actual != sha256 {
                return Err(format!(
                    "{} does not match its sha256: expected {sha256}, the file has {actual}",
                    path.display()
                ));
            }
            let status = trust.check(&bytes, signature)?;
            Ok((Cow::Owned(bytes), status))
        }
    }
}

/// Loads `spec`'s component as a plugin of `C`'s world, pre-instantiated.
pub(super) fn prepare<C: Contract>(
    verified: Verified,
    engine: &wasmtime::Engine,
    cache: &wasmtime::Cache,
    linker: &Linker<PluginState>,
) -> Result<(Prepared, C::Pre), String> {
    let world = C::WORLD;
    let Verified { bytes, signature } = verified;
    let sha256 = format!("{:x}", Sha256::digest(&bytes));
    let started = Instant::now();
    let misses = cache.cache_misses();
    let component = Component::new(engine, &bytes)
        .map_err(|e| format!("not a valid WebAssembly component: {e:#}"))?;
    let load_time = started.elapsed();
    let manifest = manifest::read(&bytes)?.manifest;
    let compiled = cache.cache_misses() > misses;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    if !exports.iter().any(|e| e == world.export()) {
        let older = exports
            .iter()
            .find(|e| e.starts_with("sparkwasm:plugin/"))
            .map(|e| format!(" It exports {e}: built against another version of the contract; rebuild it with the sparkwasm-plugin SDK of this sparkwasm."))
            .unwrap_or_default();
        return Err(format!(
            "is not a plugin of the {} world (wit/plugin.wit): it does not export {}.{older}",
            world.name(),
            world.export()
        ));
    }
    let pre = C::pre(linker, &component).map_err(|e| {
        format!(
            "does not match the {} world (wit/plugin.wit): {e:#}",
            world.name()
        )
    })?;
    Ok((
        Prepared {
            sha256,
            size: bytes.len(),
            compiled,
            load_time,
            signature,
            manifest,
        },
        pre,
    ))
}
