//! `sparkwasm plugin inspect`: what a plugin file is, without running it — its manifest, contract,
//! imports and exports, digest and signature status.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::bindings::{AUTH_EXPORT, MIDDLEWARE_EXPORT};
use super::component::World;
use super::manifest::{self, Manifest};
use super::trust::{Signature, Trust};

/// What inspecting a plugin found.
#[derive(Debug, serde::Serialize)]
pub struct Inspection {
    /// The file.
    pub file: String,
    /// Its size in bytes.
    pub size: usize,
    /// Hex sha256 of its bytes (what a pipeline pins).
    pub sha256: String,
    /// The world it implements (`sparkwasm:plugin/middleware@1.0.0`), if any this host runs.
    pub world: Option<&'static str>,
    /// Why it is not a plugin this host runs (another contract version, no contract export).
    pub contract_problem: Option<String>,
    /// The manifest it carries (name, version, description, requested grants).
    pub manifest: Option<Manifest>,
    /// Its signature, checked against the trusted keys.
    pub signature: SignatureReport,
    /// Its top-level imports.
    pub imports: Vec<String>,
    /// Its top-level exports.
    pub exports: Vec<String>,
}

/// A signature's status, or why it fails.
#[derive(Debug, serde::Serialize)]
pub struct SignatureReport {
    /// The signature file looked at.
    pub file: String,
    /// What it says, when it could be checked.
    #[serde(flatten)]
    pub status: Option<Signature>,
    /// Why it does not hold (a trusted key's signature that does not match the bytes, a file
    /// that is not a signature).
    pub invalid: Option<String>,
}

/// Inspects the component `bytes` read from `file`, its signature at `signature`, against `trust`
/// (whose `require_signature` is ignored: inspect reports, it does not refuse).
pub fn inspect(file: &Path, bytes: &[u8], signature: &Path, trust: &Trust) -> Inspection {
    let anatomy = manifest::read(bytes);
    let (manifest, imports, exports, problem) = match anatomy {
        Ok(a) => (a.manifest, a.imports, a.exports, None),
        Err(e) => (None, Vec::new(), Vec::new(), Some(e)),
    };
    let world = if exports.iter().any(|e| e == MIDDLEWARE_EXPORT) {
        Some(World::Middleware.name())
    } else if exports.iter().any(|e| e == AUTH_EXPORT) {
        Some(World::Auth.name())
    } else {
        None
    };
    let contract_problem = problem.or_else(|| {
        world.is_none().then(|| {
            match exports.iter().find(|e| e.starts_with("sparkwasm:plugin/")) {
                Some(e) => format!(
                    "exports {e}: built against another version of the contract; this host runs sparkwasm:plugin 1.x ({MIDDLEWARE_EXPORT} or {AUTH_EXPORT})"
                ),
                None => format!(
                    "exports neither {MIDDLEWARE_EXPORT} nor {AUTH_EXPORT}: not a sparkwasm plugin"
                ),
            }
        })
    });
    let lenient = Trust {
        require_signature: false,
        ..trust.clone()
    };
    let (status, invalid) = match lenient.check(bytes, signature) {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    Inspection {
        file: file.display().to_string(),
        size: bytes.len(),
        sha256: format!("{:x}", Sha256::digest(bytes)),
        world,
        contract_problem,
        manifest,
        signature: SignatureReport {
            file: signature.display().to_string(),
            status,
            invalid,
        },
        imports,
        exports,
    }
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.file)?;
        match &self.manifest {
            Some(m) => {
                let version = if m.version.is_empty() {
                    String::new()
                } else {
                    format!(" {}", m.version)
                };
                writeln!(f, "  name:      {}{version}", m.name)?;
                if !m.description.is_empty() {
                    writeln!(f, "  about:     {}", m.description)?;
                }
            }
            None => writeln!(
                f,
                "  name:      (no manifest: sparkwasm plugin manifest adds one)"
            )?,
        }
        match (self.world, &self.contract_problem) {
            (Some(w), _) => writeln!(f, "  contract:  {w}")?,
            (None, Some(p)) => writeln!(f, "  contract:  none this host runs: {p}")?,
            (None, None) => writeln!(f, "  contract:  none")?,
        }
        writeln!(f, "  size:      {} bytes", self.size)?;
        writeln!(f, "  sha256:    {}", self.sha256)?;
        match (&self.signature.status, &self.signature.invalid) {
            (Some(s), _) => writeln!(f, "  signature: {s} [{}]", self.signature.file)?,
            (None, Some(e)) => writeln!(f, "  signature: INVALID: {e}")?,
            (None, None) => writeln!(f, "  signature: unknown")?,
        }
        let asked = self
            .manifest
            .as_ref()
            .map(|m| m.grants.missing_from(&Default::default()))
            .unwrap_or_default();
        if asked.is_empty() {
            writeln!(f, "  requests:  no grants")?;
        } else {
            writeln!(
                f,
                "  requests:  {} (requested; only a pipeline's grants give them)",
                asked.join(", ")
            )?;
        }
        writeln!(f, "  imports:   {}", self.imports.join(", "))?;
        write!(f, "  exports:   {}", self.exports.join(", "))
    }
}
