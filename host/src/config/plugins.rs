//! `plugins`: the trust policy for custom plugins — the minisign public keys whose signatures are
//! trusted and whether every plugin file must carry one. A machine-wide trust file adds to it (see
//! `plugin::trust`); built-in plugins are trusted with the binary.

use std::path::Path;

use super::keys::{KeySpec, Kind};
use super::probe::Probe;
use super::walk::{Section, Walker};

/// The `plugins` section.
#[derive(Clone, Debug, Default)]
pub struct PluginPolicy {
    /// Trusted keys as written: a minisign public key (`RW...`) or the path of a `.pub` file
    /// (relative to `base_dir`).
    pub trusted_keys: Vec<String>,
    /// Every custom plugin must be signed by a trusted key.
    pub require_signature: bool,
    /// Where relative key paths start.
    pub base_dir: std::path::PathBuf,
}

/// The keys of `plugins`.
pub(crate) const KEYS: &[KeySpec] = &[
    KeySpec::new(
        "trusted_keys",
        Kind::TextList,
        "minisign public keys whose plugin signatures are trusted: the key (RW...) or a .pub file.",
    ),
    KeySpec::new(
        "require_signature",
        Kind::Bool,
        "Every custom plugin must carry a signature (FILE.minisig) by a trusted key.",
    )
    .default(|| PluginPolicy::default().require_signature.into()),
];

/// Whether a trusted key as written is the key itself (minisign's base64, `RW…`) rather than the
/// path of a key file (a path has a `.` in it: `team.pub`, `./keys/team`).
pub fn is_inline_key(text: &str) -> bool {
    text.starts_with("RW") && !text.contains('.')
}

/// Reads `plugins` (absent: no keys, signatures not required).
pub(crate) fn read(
    w: &mut Walker,
    s: &Section<'_>,
    base_dir: &Path,
    probes: &mut Vec<Probe>,
) -> PluginPolicy {
    let list = s.get("trusted_keys");
    let keys = w.string_list(list);
    if let Some(f) = list {
        for (i, key) in keys.iter().enumerate() {
            let path = format!("{}[{i}]", f.path);
            let text = key.trim();
            if is_inline_key(text) {
                if let Err(e) = minisign::PublicKey::from_base64(text) {
                    w.error(&path, f.node.pos, format!("not a minisign public key: {e}"));
                }
            } else {
                probes.push(Probe::File {
                    key: path,
                    pos: f.node.pos,
                    path: base_dir.join(text),
                    written: text.to_owned(),
                });
            }
        }
    }
    let require_signature = w
        .boolean(s.get("require_signature"))
        .unwrap_or(PluginPolicy::default().require_signature);
    PluginPolicy {
        trusted_keys: keys,
        require_signature,
        base_dir: base_dir.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::errors;

    #[test]
    fn a_trusted_key_must_be_a_minisign_key() {
        let e = errors("plugins: {trusted_keys: [\"RWnotakey\"], require_signature: true}\n");
        assert!(
            e.iter()
                .any(|l| l.contains("plugins.trusted_keys[0]: not a minisign public key")),
            "{e:?}"
        );
    }
}
