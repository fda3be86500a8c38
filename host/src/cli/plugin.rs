//! `sparkwasm plugin ...`: inspect, sign, describe (manifest) and list plugins.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use sparkwasm::plugin::manifest::{self, Manifest};
use sparkwasm::plugin::trust::{self, Trust};

#[derive(Subcommand, Debug)]
pub(crate) enum PluginCommand {
    /// What a plugin file is: name, version, contract, size, sha256, signature status against the
    /// trusted keys, the grants it asks for, imports and exports. Runs nothing.
    Inspect {
        /// The component (.wasm).
        file: PathBuf,
        /// Its signature (default: FILE.minisig).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
        /// A trusted minisign public key (RW...) or .pub file; repeatable. The machine's trust
        /// file (SPARKWASM_TRUST_FILE, else /etc/sparkwasm/trust.yaml) adds its keys.
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted_keys: Vec<String>,
        /// Print JSON, for machines.
        #[arg(long)]
        json: bool,
    },
    /// Sign a plugin with a minisign secret key: writes FILE.minisig, which `minisign -V` verifies.
    /// An encrypted key's password comes from SPARKWASM_SIGNING_PASSWORD.
    Sign {
        /// The component (.wasm).
        file: PathBuf,
        /// The minisign secret key file (as `minisign -G` writes it).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The signed comment (default: the file's name and sha256).
        #[arg(long, value_name = "TEXT")]
        trusted_comment: Option<String>,
        /// Where to write the signature (default: FILE.minisig).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Embed a manifest (name, version, description, requested grants) in a plugin, for any
    /// language's component: writes OUTPUT (default: FILE, in place). Sign after this.
    Manifest {
        /// The component (.wasm).
        file: PathBuf,
        /// The manifest, JSON: {"name", "version", "description", "grants": {"outbound_hosts",
        /// "env", "wall_clock", "forward_credentials"}}.
        #[arg(long, value_name = "FILE")]
        set: PathBuf,
        /// Where to write the result (default: FILE).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// The built-in plugins, with their digests: trusted as part of this binary.
    List,
    /// Push a plugin to an OCI registry (CNCF Wasm artifact layout), its signature (FILE.minisig,
    /// if there) beside it; prints the reference pinned by digest, for pipelines.
    Push {
        /// The component (.wasm).
        file: PathBuf,
        /// Where: host[:port]/namespace/name:tag (oci:// optional).
        reference: String,
        /// Its signature (default: FILE.minisig when it exists).
        #[arg(long, value_name = "FILE")]
        signature: Option<PathBuf>,
    },
    /// Pull a plugin from an OCI registry, verified by digest, into the cache (and OUTPUT); prints
    /// the reference pinned by digest and the component's sha256.
    Pull {
        /// oci://host[:port]/namespace/name:tag@sha256:DIGEST (a tag alone with --allow-unpinned).
        reference: String,
        /// Also write the component here (and its signature beside it, as OUTPUT.minisig).
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Accept a reference without a digest (the tag as it is now).
        #[arg(long)]
        allow_unpinned: bool,
    },
}

pub(crate) fn main(command: PluginCommand) -> ExitCode {
    match run(command) {
        Ok(code) => code,
        Err(e) => super::fail(&e, None),
    }
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Inspect {
            file,
            signature,
            trusted_keys,
            json,
        } => {
            let bytes = read(&file)?;
            let trust = Trust::for_pipeline(&trusted_keys, false, &std::env::current_dir()?)
                .map_err(anyhow::Error::msg)?;
            let signature = signature.unwrap_or_else(|| trust::default_signature_path(&file));
            let report = sparkwasm::plugin::inspect::inspect(&file, &bytes, &signature, &trust);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            // A file this host cannot run, or a signature that does not hold, is a failure.
            let bad = report.world.is_none() || report.signature.invalid.is_some();
            Ok(if bad {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        PluginCommand::Sign {
            file,
            key,
            trusted_comment,
            output,
        } => {
            let bytes = read(&file)?;
            manifest::read(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let comment = trusted_comment.unwrap_or_else(|| {
                use sha2::Digest;
                format!("file:{name} sha256:{:x}", sha2::Sha256::digest(&bytes))
            });
            if comment.contains(['\n', '\r']) {
                bail!("the trusted comment is one line");
            }
            let password = std::env::var("SPARKWASM_SIGNING_PASSWORD").ok();
            let signature =
                trust::sign(&bytes, &key, password, &comment).map_err(anyhow::Error::msg)?;
            let out = output.unwrap_or_else(|| trust::default_signature_path(&file));
            std::fs::write(&out, signature)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{}: signed, signature in {}", file.display(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Manifest { file, set, output } => {
            let bytes = read(&file)?;
            let text = std::fs::read_to_string(&set)
                .with_context(|| format!("cannot read {}", set.display()))?;
            let m: Manifest = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a plugin manifest", set.display()))?;
            if m.name.trim().is_empty() {
                bail!("{}: the manifest needs a name", set.display());
            }
            let out_bytes = manifest::embed(&bytes, &m)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let out = output.unwrap_or(file);
            std::fs::write(&out, &out_bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            use sha2::Digest;
            println!(
                "{}: manifest `{}` embedded; sha256 {:x}",
                out.display(),
                m.name,
                sha2::Sha256::digest(&out_bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Push {
            file,
            reference,
            signature,
        } => {
            let bytes = read(&file)?;
            let anatomy =
                manifest::read(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let sig_path = signature
                .clone()
                .unwrap_or_else(|| trust::default_signature_path(&file));
            let sig = match std::fs::read_to_string(&sig_path) {
                Ok(s) => Some(s),
                Err(_) if signature.is_none() => None,
                Err(e) => bail!("cannot read {}: {e}", sig_path.display()),
            };
            let pinned = super::runtime()
                .block_on(sparkwasm::plugin::registry::push(
                    &reference,
                    &bytes,
                    sig.as_deref(),
                    &anatomy,
                ))
                .map_err(anyhow::Error::msg)?;
            println!(
                "{}: pushed{}\n{pinned}",
                file.display(),
                if sig.is_some() {
                    " with its signature"
                } else {
                    " (unsigned)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Pull {
            reference,
            output,
            allow_unpinned,
        } => {
            let parsed =
                sparkwasm::plugin::registry::parse(&reference).map_err(anyhow::Error::msg)?;
            if parsed.digest().is_none() && !allow_unpinned {
                bail!(
                    "{reference} has no digest: give ...@sha256:DIGEST, or --allow-unpinned to take the tag as it is now"
                );
            }
            let pulled = super::runtime()
                .block_on(sparkwasm::plugin::registry::pull(&reference))
                .map_err(|e| anyhow::anyhow!("{reference}: {e}"))?;
            if let Some(out) = &output {
                std::fs::write(out, &pulled.component)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                let sig_path = trust::default_signature_path(out);
                match &pulled.signature {
                    Some(sig) => std::fs::write(&sig_path, sig)
                        .with_context(|| format!("cannot write {}", sig_path.display()))?,
                    // No stale signature of other bytes left beside the new file.
                    None => match std::fs::remove_file(&sig_path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            bail!("cannot remove the stale {}: {e}", sig_path.display())
                        }
                        _ => {}
                    },
                }
            }
            use sha2::Digest;
            println!(
                "oci://{}\n  component sha256 {:x}, {} bytes, {}{}",
                pulled.resolved,
                sha2::Sha256::digest(&pulled.component),
                pulled.component.len(),
                if pulled.signature.is_some() {
                    "a signature beside it (check it: plugin inspect --trusted-key)"
                } else {
                    "unsigned"
                },
                if pulled.from_cache {
                    " (from the cache)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::List => {
            use sha2::Digest;
            for b in sparkwasm::builtins::BUILTINS {
                println!(
                    "{:<22} sha256 {:x}  {:>7} bytes  built-in",
                    b.kind,
                    sha2::Sha256::digest(b.component),
                    b.component.len()
                );
            }
            for (alias, canonical) in sparkwasm::builtins::ALIASES {
                println!("{alias:<22} alias of {canonical}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
