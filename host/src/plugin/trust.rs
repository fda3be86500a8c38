//! Who vetted a plugin: minisign signatures (the `.minisig` format of the `minisign` CLI) checked
//! against the keys a pipeline, or the machine, trusts.
//!
//! The policy is the union of the pipeline's `plugins` section and a machine-wide file (platform
//! teams set it once for every pipeline of a host: `SPARKWASM_TRUST_FILE`, else
//! `/etc/sparkwasm/trust.yaml` when it exists). A pipeline adds keys and can require signatures;
//! it cannot lift a requirement the machine sets. Built-in plugins are part of the binary and
//! trusted with it.
//!
//! A plugin file's signature sits beside it (`plugin.wasm.minisig`) unless its entry names another.
//! With `require_signature`, a plugin that is unsigned, signed by a key nobody trusts, or whose
//! bytes do not match its signature stops the run before any request. Without it, a signature that
//! is there is still checked (a trusted key's signature that does not match is never ignored), and
//! the status is shown by `validate` and `plugin inspect`.

use std::fmt;
use std::path::{Path, PathBuf};

use minisign::{PublicKey, SignatureBox};

/// The machine-wide trust file, unless `SPARKWASM_TRUST_FILE` names another.
pub const MACHINE_TRUST_FILE: &str = "/etc/sparkwasm/trust.yaml";

/// A public key a policy trusts.
#[derive(Clone)]
pub struct TrustedKey {
    /// minisign's key id (the 8 bytes the CLI prints as 16 hex digits).
    pub id: String,
    /// Where it was given: `plugins.trusted_keys[0]`, a file, the machine's trust file.
    pub from: String,
    key: PublicKey,
}

impl fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TrustedKey({} from {})", self.id, self.from)
    }
}

/// The keys and the rule a run checks plugins against.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    /// Keys whose signatures are trusted.
    pub keys: Vec<TrustedKey>,
    /// Every plugin file must carry a signature by one of `keys`.
    pub require_signature: bool,
    /// Where `require_signature` came from (for messages).
    pub required_by: Option<String>,
    /// The machine's policy says only its keys count.
    pub only_machine_keys: bool,
}

/// The `plugins` section of the machine-wide trust file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinePolicy {
    #[serde(default)]
    trusted_keys: Vec<String>,
    #[serde(default)]
    require_signature: bool,
    /// Only the machine's keys count: a pipeline cannot trust a key of its own.
    #[serde(default)]
    only_machine_keys: bool,
}

/// What a plugin's signature says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Signature {
    /// Part of the sparkwasm binary.
    BuiltIn,
    /// No signature file.
    Unsigned,
    /// Signed, and the signature matches the bytes, by a trusted key.
    Trusted {
        /// The key's id.
        key_id: String,
        /// The signature's trusted (signed) comment.
        comment: String,
    },
    /// Signed by a key the policy does not list (its signature cannot be checked).
    UntrustedKey {
        /// The key's id.
        key_id: String,
    },
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signature::BuiltIn => write!(f, "built-in (trusted with the binary)"),
            Signature::Unsigned => write!(f, "unsigned"),
            Signature::Trusted { key_id, comment } => {
                write!(f, "signed by trusted key {key_id} ({})", printable(comment))
            }
            Signature::UntrustedKey { key_id } => {
                write!(f, "signed by key {key_id}, which is not trusted")
            }
        }
    }
}

/// The key id as the minisign CLI prints it: the 8-byte key number, little-endian, in hex.
fn key_id(keynum: &[u8]) -> String {
    let mut n = [0u8; 8];
    n.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(n))
}

/// Reads one key as written in a policy: the base64 line of a minisign public key (`RW...`), or
/// the path of a key file, e.g. `team.pub` (relative to `base_dir`; a path has a `.` in it).
pub fn parse_key(written: &str, base_dir: &Path, from: &str) -> Result<TrustedKey, String> {
    let text = written.trim();
    let key = if crate::config::plugins::is_inline_key(text) {
        PublicKey::from_base64(text)
            .map_err(|e| format!("{from}: not a minisign public key: {e}"))?
    } else {
        let path = base_dir.join(text);
        let body = std::fs::read_to_string(&path)
            .map_err(|e| format!("{from}: cannot read the key file {}: {e}", path.display()))?;
        // A .pub file: an `untrusted comment:` line, then the key.
        PublicKey::from_base64(key_line(&body)).map_err(|e| {
            format!(
                "{from}: {} is not a minisign public key file: {e}",
                path.display()
            )
        })?
    };
    Ok(TrustedKey {
        id: key_id(key.keynum()),
        from: from.to_owned(),
        key,
    })
}

impl Trust {
    /// The policy of a run: the pipeline's keys (written in the file, relative to `base_dir`) and
    /// rule, joined with the machine's trust file.
    pub fn for_pipeline(
        keys: &[String],
        require_signature: bool,
        base_dir: &Path,
    ) -> Result<Trust, String> {
        let mut trust = Trust::default();
        for (i, k) in keys.iter().enumerate() {
            trust.keys.push(parse_key(
                k,
                base_dir,
                &format!("plugins.trusted_keys[{i}]"),
            )?);
        }
        if require_signature {
            trust.require_signature = true;
            trust.required_by = Some("plugins.require_signature".into());
        }
        trust.join_machine()?;
        Ok(trust)
    }

    /// Adds the machine's policy: `/etc/sparkwasm/trust.yaml` when it exists, and the file
    /// `SPARKWASM_TRUST_FILE` names (both: the environment adds to the machine's file, it cannot
    /// replace it). With `only_machine_keys`, the pipeline's own keys do not count.
    fn join_machine(&mut self) -> Result<(), String> {
        let mut files = Vec::new();
        if Path::new(MACHINE_TRUST_FILE).exists() {
            files.push(PathBuf::from(MACHINE_TRUST_FILE));
        }
        if let Some(p) = std::env::var_os("SPARKWASM_TRUST_FILE") {
            let p = PathBuf::from(p);
            if !files.contains(&p) {
                files.push(p);
            }
        }
        for path in files {
            self.join_file(&path)?;
        }
        Ok(())
    }

    fn join_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the trust file {}: {e}", path.display()))?;
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            plugins: MachinePolicy,
        }
        let file: File = serde_saphyr::from_str(&text)
            .map_err(|e| format!("the trust file {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if file.plugins.only_machine_keys {
            self.keys.retain(|k| !k.from.starts_with("plugins."));
            self.only_machine_keys = true;
        }
        for (i, k) in file.plugins.trusted_keys.iter().enumerate() {
            self.keys.push(parse_key(
                k,
                dir,
                &format!("{}: plugins.trusted_keys[{i}]", path.display()),
            )?);
        }
        if file.plugins.require_signature {
            self.require_signature = true;
            self.required_by = Some(format!("{}: plugins.require_signature", path.display()));
        }
        Ok(())
    }

    /// Checks `bytes` against the signature at `signature` (absent: unsigned). An error says why
    /// the plugin may not run, naming the key id.
    pub fn check(&self, bytes: &[u8], signature: &Path) -> Result<Signature, String> {
        let text = match std::fs::read_to_string(signature) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(format!(
                    "cannot read its signature {}: {e}",
                    signature.display()
                ));
            }
        };
        self.check_text(bytes, text.as_deref(), &signature.display().to_string())
    }

    /// Checks `bytes` against the signature `text` (`None`: unsigned) found at `place` (a file, a
    /// registry tag).
    pub fn check_text(
        &self,
        bytes: &[u8],
        text: Option<&str>,
        place: &str,
    ) -> Result<Signature, String> {
        let Some(text) = text else {
            if self.require_signature {
                return Err(format!(
                    "is unsigned (no {place}) and {} requires a signature by a trusted key",
                    self.required_by.as_deref().unwrap_or("the policy")
                ));
            }
            return Ok(Signature::Unsigned);
        };
        well_formed(text).map_err(|e| format!("{place} is not a minisign signature: {e}"))?;
        let sig = SignatureBox::from_string(text)
            .map_err(|e| format!("{place} is not a minisign signature: {e}"))?;
        let id = key_id(sig.keynum());
        let Some(key) = self.keys.iter().find(|k| k.id == id) else {
            if self.require_signature {
                return Err(format!(
                    "is signed by key {id}, which is not among the trusted keys ({})",
                    self.key_list()
                ));
            }
            return Ok(Signature::UntrustedKey { key_id: id });
        };
        minisign::verify(
            &key.key,
            &sig,
            std::io::Cursor::new(bytes),
            true,
            false,
            false,
        )
        .map_err(|e| {
            format!(
                "does not match its signature by trusted key {id} ({place}): the file was changed after it was signed ({e})"
            )
        })?;
        Ok(Signature::Trusted {
            key_id: id,
            comment: sig.trusted_comment().unwrap_or_default(),
        })
    }

    fn key_list(&self) -> String {
        if self.keys.is_empty() {
            return "none is configured: plugins.trusted_keys".into();
        }
        self.keys
            .iter()
            .map(|k| format!("{} from {}", k.id, k.from))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub use crate::config::middleware::default_signature_path;

/// Signs `bytes` with the minisign secret key in `key_file`, as `minisign -S` does (prehashed,
/// with a trusted comment). An encrypted key is opened with `password`.
pub fn sign(
    bytes: &[u8],
    key_file: &Path,
    password: Option<String>,
    trusted_comment: &str,
) -> Result<String, String> {
    let text = std::fs::read_to_string(key_file)
        .map_err(|e| format!("cannot read the secret key {}: {e}", key_file.display()))?;
    let boxed = minisign::SecretKeyBox::from_string(&text)
        .map_err(|e| format!("{}: not a minisign secret key: {e}", key_file.display()))?;
    let key = match boxed.clone().into_unencrypted_secret_key() {
        Ok(k) if !k.is_encrypted() => k,
        // The minisign CLI (0.11) writes an unencrypted key (`-G -W`) with an all-zero checksum,
        // which the crate takes for corruption: read it as it is. Signing below checks the key
        // against its own public half, so a damaged key still cannot sign.
        _ if unencrypted(&text) => {
            let raw =
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key_line(&text))
                    .map_err(|e| {
                        format!("{}: not a minisign secret key: {e}", key_file.display())
                    })?;
            minisign::SecretKey::from_bytes(&raw)
                .map_err(|e| format!("{}: not a minisign secret key: {e}", key_file.display()))?
        }
        _ => {
            let Some(password) = password else {
                return Err(format!(
                    "{} is encrypted: give its password in SPARKWASM_SIGNING_PASSWORD",
                    key_file.display()
                ));
            };
            boxed
                .into_secret_key(Some(password))
                .map_err(|e| format!("{}: {e}", key_file.display()))?
        }
    };
    let public = minisign::PublicKey::from_secret_key(&key)
        .map_err(|e| format!("{}: {e}", key_file.display()))?;
    let signature = minisign::sign(
        Some(&public),
        &key,
        std::io::Cursor::new(bytes),
        Some(trusted_comment),
        Some("signature from sparkwasm plugin sign"),
    )
    .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(signature.into_string())
}

/// Checks the shape of a `.minisig` before the minisign crate reads it (the crate does not check
/// the length of the global signature and would panic on a short one): an untrusted comment, the
/// signature (2 + 8 + 64 bytes), a trusted comment, the global signature (64 bytes).
pub fn well_formed(text: &str) -> Result<(), String> {
    use base64::Engine;
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    if lines.len() < 4 {
        return Err(format!("{} lines, expected 4", lines.len()));
    }
    if !lines[0].starts_with("untrusted comment:") || !lines[2].starts_with("trusted comment:") {
        return Err("its comment lines are missing".into());
    }
    let decode = |line: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(line.trim())
            .map_err(|e| e.to_string())
    };
    if decode(lines[1])?.len() != 74 {
        return Err("its signature line is not 74 bytes".into());
    }
    if decode(lines[3])?.len() != 64 {
        return Err("its global signature is not 64 bytes".into());
    }
    if lines[2].len() > 8192 {
        return Err("its trusted comment is too long".into());
    }
    Ok(())
}

/// Text from a plugin or its signature, made safe to print: control characters (which could
/// forge lines or hide text on a terminal) are escaped.
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// The key line of a minisign key file (`.pub` or `.key`): the first line that is not its
/// `untrusted comment:`.
fn key_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap_or_default()
}

/// Whether a secret key file holds an unencrypted key (its KDF algorithm is none).
fn unencrypted(text: &str) -> bool {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key_line(text))
        .is_ok_and(|raw| raw.len() > 4 && raw[2..4] == [0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin_bytes() -> Vec<u8> {
        // Any bytes will do for signatures; a component is not needed here.
        (0..4096u32).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn an_encrypted_key_signs_with_its_password_and_the_signature_checks_out() {
        let dir = tempfile::tempdir().unwrap();
        let minisign::KeyPair { pk, sk } =
            minisign::KeyPair::generate_encrypted_keypair(Some("pw".into())).unwrap();
        let key_file = dir.path().join("k.key");
        std::fs::write(&key_file, sk.to_box(None).unwrap().to_string()).unwrap();
        let bytes = plugin_bytes();
        let err = sign(&bytes, &key_file, None, "c").unwrap_err();
        assert!(err.contains("SPARKWASM_SIGNING_PASSWORD"), "{err}");
        assert!(sign(&bytes, &key_file, Some("wrong".into()), "c").is_err());
        let sig = sign(&bytes, &key_file, Some("pw".into()), "vetted").unwrap();
        let sig_file = dir.path().join("p.minisig");
        std::fs::write(&sig_file, sig).unwrap();
        let trust = Trust {
            keys: vec![parse_key(&pk.to_base64(), dir.path(), "test").unwrap()],
            require_signature: true,
            required_by: None,
            only_machine_keys: false,
        };
        let status = trust.check(&bytes, &sig_file).unwrap();
        assert!(
            matches!(&status, Signature::Trusted { comment, .. } if comment == "vetted"),
            "{status:?}"
        );
        // A signature whose global signature is cut short is an error, not a panic (the crate
        // slices it unchecked).
        let text = std::fs::read_to_string(&sig_file).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[3] = "AAAA";
        let err = trust
            .check_text(&bytes, Some(&lines.join("\n")), "cut")
            .unwrap_err();
        assert!(err.contains("not a minisign signature"), "{err}");
        let mut changed = bytes.clone();
        changed[7] ^= 1;
        let err = trust.check(&changed, &sig_file).unwrap_err();
        assert!(err.contains("changed after it was signed"), "{err}");
        // Not required: an unsigned file is reported, a missing file is not an error.
        let lenient = Trust {
            require_signature: false,
            ..trust
        };
        assert_eq!(
            lenient
                .check(&bytes, &dir.path().join("none.minisig"))
                .unwrap(),
            Signature::Unsigned
        );
    }
}
