//! What a plugin says about itself: a small JSON manifest in a custom section of its component
//! (`sparkwasm-manifest`: name, version, description and the grants it asks for), and what its
//! component imports and exports. Read without compiling it, for `plugin inspect` and at load.
//!
//! A manifest is a request, never a grant: what a plugin may reach is what the pipeline's entry
//! grants. The section is written by `sparkwasm plugin manifest` (any language's component) and
//! kept in the component's top level; a manifest in a nested core module (a toolchain that keeps a
//! linker section) is read too.

use serde::{Deserialize, Serialize};

/// The custom section's name.
pub const SECTION: &str = "sparkwasm-manifest";

/// A plugin's manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name.
    pub name: String,
    /// Its version (semver, by convention).
    #[serde(default)]
    pub version: String,
    /// What it does, in a line.
    #[serde(default)]
    pub description: String,
    /// The grants it needs to work.
    #[serde(default)]
    pub grants: RequestedGrants,
}

impl Manifest {
    /// Refuses what could mislead a reader of `inspect` or `validate`: control characters (a
    /// newline forges a line, an escape sequence hides text on a terminal) and overlong fields.
    pub fn check(&self) -> Result<(), String> {
        let fields = [
            ("name", self.name.as_str(), 64),
            ("version", self.version.as_str(), 64),
            ("description", self.description.as_str(), 512),
        ];
        let grants = self
            .grants
            .outbound_hosts
            .iter()
            .chain(&self.grants.env)
            .map(|g| ("grants", g.as_str(), 256));
        for (field, text, max) in fields.into_iter().chain(grants) {
            if text.chars().any(char::is_control) {
                return Err(format!("its {field} holds control characters"));
            }
            if text.chars().count() > max {
                return Err(format!("its {field} is longer than {max} characters"));
            }
        }
        Ok(())
    }
}

/// The grants a plugin asks for, in the shape of an entry's `grants`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedGrants {
    /// Hosts besides the endpoint's origin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound_hosts: Vec<String>,
    /// The pipeline's credentials on its requests to those hosts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward_credentials: bool,
    /// Environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The real wall clock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wall_clock: bool,
}

impl RequestedGrants {
    /// What is asked for and not in `given`, one phrase each.
    pub fn missing_from(&self, given: &crate::config::Grants) -> Vec<String> {
        let mut missing = Vec::new();
        for h in &self.outbound_hosts {
            if !given
                .outbound_hosts
                .iter()
                .any(|g| g.eq_ignore_ascii_case(h))
            {
                missing.push(format!("outbound_hosts {h:?}"));
            }
        }
        if self.forward_credentials && !given.forward_credentials {
            missing.push("forward_credentials".into());
        }
        for e in &self.env {
            if !given.env.contains(e) {
                missing.push(format!("env {e:?}"));
            }
        }
        if self.wall_clock && !given.wall_clock {
            missing.push("wall_clock".into());
        }
        missing
    }
}

/// What reading a component's structure found.
#[derive(Clone, Debug, Default)]
pub struct Anatomy {
    /// The manifest, if it has one.
    pub manifest: Option<Manifest>,
    /// The component's top-level imports (interfaces and functions), by name.
    pub imports: Vec<String>,
    /// Its top-level exports.
    pub exports: Vec<String>,
}

/// Reads `bytes` as a component: its imports, exports and manifest. Errors say what is wrong.
pub fn read(bytes: &[u8]) -> Result<Anatomy, String> {
    use wasmparser::{Encoding, Parser, Payload};
    let mut anatomy = Anatomy::default();
    let mut depth = 0usize;
    let mut manifest: Option<(usize, &[u8])> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a WebAssembly component: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(
                        "a core WebAssembly module, not a component: build it for wasm32-wasip2 (or wrap it with `wasm-tools component new`)".into(),
                    );
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 1 => {
                for import in r {
                    let import = import.map_err(|e| format!("bad import section: {e}"))?;
                    anatomy.imports.push(import.name.name.to_owned());
                }
            }
            Payload::ComponentExportSection(r) if depth == 1 => {
                for export in r {
                    let export = export.map_err(|e| format!("bad export section: {e}"))?;
                    anatomy.exports.push(export.name.name.to_owned());
                }
            }
            // The top level's wins over one in a nested module; the last of a level wins.
            Payload::CustomSection(c)
                if c.name() == SECTION && manifest.is_none_or(|(d, _)| depth <= d) =>
            {
                manifest = Some((depth, c.data()));
            }
            _ => {}
        }
    }
    if let Some((_, data)) = manifest {
        let m: Manifest = serde_json::from_slice(data)
            .map_err(|e| format!("its {SECTION} section is not a valid manifest: {e}"))?;
        m.check()
            .map_err(|e| format!("its {SECTION} section is not a valid manifest: {e}"))?;
        anatomy.manifest = Some(m);
    }
    Ok(anatomy)
}

/// `bytes` with `manifest` as its `sparkwasm-manifest` custom section, appended at the component's
/// top level (a custom section may follow any section; an older manifest is left in place and
/// shadowed: the last one wins).
pub fn embed(bytes: &[u8], manifest: &Manifest) -> Result<Vec<u8>, String> {
    read(bytes)?;
    manifest.check().map_err(|e| format!("the manifest: {e}"))?;
    let data = serde_json::to_vec(manifest).map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    leb128(&mut body, SECTION.len());
    body.extend_from_slice(SECTION.as_bytes());
    body.extend_from_slice(&data);
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    leb128(&mut out, body.len());
    out.extend_from_slice(&body);
    Ok(out)
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
