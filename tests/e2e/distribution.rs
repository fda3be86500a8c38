//! Vetted plugins: a manifest, minisign signatures (interop with the real `minisign` CLI, Debian's
//! package, in both directions), the trust policy of a pipeline and of the machine, and the
//! built-ins' digests. Every refusal is checked from the server's side: no request was sent.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use testkit::ApiServer;

use crate::support::*;

fn fixture(file: &str) -> PathBuf {
    Path::new(env!("SPARKWASM_PLUGIN_DIR")).join(file)
}

fn sha256_of(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// The minisign CLI (scripts/test.sh installs it), or a skip where that is allowed.
fn minisign() -> Option<Command> {
    let found = Command::new("minisign")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip_allowed("the minisign CLI (Debian package minisign)");
        return None;
    }
    Some(Command::new("minisign"))
}

/// A key pair made by the minisign CLI, unencrypted (`-W`): (public key file, secret key file).
fn cli_keypair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (pk, sk) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("minisign")
        .args(["-G", "-W", "-f", "-p"])
        .arg(&pk)
        .arg("-s")
        .arg(&sk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    (pk, sk)
}

/// The key id as the minisign CLI prints it, read from the public key file by this test: bytes 2..10
/// of the decoded key, little-endian, in hex.
fn key_id(pk: &Path) -> String {
    use base64::Engine;
    let text = std::fs::read_to_string(pk).unwrap();
    let line = text.lines().nth(1).unwrap().trim();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(line)
        .unwrap();
    let mut n = [0u8; 8];
    n.copy_from_slice(&raw[2..10]);
    format!("{:016X}", u64::from_le_bytes(n))
}

fn cli_sign(sk: &Path, file: &Path, comment: &str) {
    let out = Command::new("minisign")
        .args(["-S", "-s"])
        .arg(sk)
        .arg("-m")
        .arg(file)
        .args(["-t", comment])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn pipeline_with(server: &ApiServer, plugin: &Path, policy: &str) -> String {
    pipeline(
        &server.url(),
        "/items/{id}",
        &format!(
            "{policy}middleware:\n  - type: wasm\n    name: vetted\n    path: {}\n    sha256: \"{}\"\n",
            plugin.display(),
            sha256_of(plugin)
        ),
    )
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_signed_with_the_minisign_cli_runs_and_unsigned_untrusted_or_changed_ones_do_not()
{
    let Some(_) = minisign() else { return };
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(20, "");
    let dir = case.dir.path();
    let plugin = dir.join("vetted.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &plugin).unwrap();

    // The author: embeds a manifest that asks for a grant, then signs with the minisign CLI.
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"name": "vetted", "version": "1.2.0", "description": "changes nothing", "grants": {"outbound_hosts": ["audit.example.com"]}}"#,
    )
    .unwrap();
    let out = sparkwasm(dir)
        .args([
            "plugin",
            "manifest",
            "vetted.wasm",
            "--set",
            "manifest.json",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let (pk, sk) = cli_keypair(dir, "team");
    let team = key_id(&pk);
    cli_sign(&sk, &plugin, "vetted by the platform team");

    // inspect, as a machine reads it: every field checked against what this test knows.
    let out = sparkwasm(dir)
        .args([
            "plugin",
            "inspect",
            "vetted.wasm",
            "--json",
            "--trusted-key",
            "team.pub",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sha256"], sha256_of(&plugin));
    assert_eq!(report["size"], std::fs::metadata(&plugin).unwrap().len());
    assert_eq!(report["world"], "sparkwasm:plugin/middleware@1.0.0");
    assert_eq!(report["manifest"]["name"], "vetted");
    assert_eq!(report["manifest"]["version"], "1.2.0");
    assert_eq!(
        report["manifest"]["grants"]["outbound_hosts"][0],
        "audit.example.com"
    );
    assert_eq!(report["signature"]["status"], "trusted", "{report}");
    assert_eq!(report["signature"]["key_id"], team);
    assert_eq!(
        report["signature"]["comment"],
        "vetted by the platform team"
    );
    assert!(
        report["exports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "sparkwasm:plugin/handler@1.0.0"),
        "{report}"
    );
    // Without the key, the same signature is reported as by an untrusted key, not as trusted.
    let out = sparkwasm(dir)
        .args(["plugin", "inspect", "vetted.wasm", "--json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["signature"]["status"], "untrusted_key");
    assert_eq!(report["signature"]["key_id"], team);

    // The data team: pins the digest, trusts the key, requires a signature.
    let policy = "plugins:\n  trusted_keys: [team.pub]\n  require_signature: true\n";
    std::fs::write(dir.join("p.yaml"), pipeline_with(&server, &plugin, policy)).unwrap();
    let out = sparkwasm(dir)
        .args(["validate", "p.yaml"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let said = text(&out);
    assert!(
        said.contains(&format!("signed by trusted key {team}")),
        "{said}"
    );
    // What it asks for and was not given is said, and not granted.
    assert!(
        said.contains("warning:")
            && said.contains("audit.example.com")
            && said.contains("not grant"),
        "{said}"
    );
    let out = case.run();
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 20);
    assert_eq!(read_bronze(&case.bronze()).len(), 20);

    let refused = |why: &str, expect: &[&str]| {
        let out = case.run();
        assert_exit(&out, 1);
        let said = text(&out);
        for e in expect {
            assert!(said.contains(e), "{why}: expected `{e}` in: {said}");
        }
        assert!(said.contains("plugin `vetted`"), "{why}: {said}");
    };

    // Unsigned.
    let signature = dir.join("vetted.wasm.minisig");
    let kept = std::fs::read(&signature).unwrap();
    std::fs::remove_file(&signature).unwrap();
    refused("unsigned", &["unsigned", "plugins.require_signature"]);

    // Signed by a key nobody trusts.
    let (_, stranger_sk) = cli_keypair(dir, "stranger");
    let stranger = key_id(&dir.join("stranger.pub"));
    cli_sign(&stranger_sk, &plugin, "not vetted");
    refused(
        "untrusted",
        &[&stranger, "not among the trusted keys", &team],
    );

    // One byte changed after signing, with the pin updated to the changed file (whoever changed
    // it also edited the pipeline): the signature catches it.
    std::fs::write(&signature, &kept).unwrap();
    let mut bytes = std::fs::read(&plugin).unwrap();
    let at = bytes
        .windows(15)
        .rposition(|w| w == b"changes nothing")
        .unwrap();
    bytes[at] = b'C'; // one letter of the manifest's description: still a valid component
    std::fs::write(&plugin, &bytes).unwrap();
    std::fs::write(dir.join("p.yaml"), pipeline_with(&server, &plugin, policy)).unwrap();
    refused("changed", &[&team, "changed after it was signed"]);

    // None of the refused runs sent a request.
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_machine_trust_file_requires_signatures_that_a_pipeline_cannot_waive() {
    let Some(_) = minisign() else { return };
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(5, "");
    let dir = case.dir.path();
    let plugin = dir.join("vetted.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &plugin).unwrap();
    let (pk, sk) = cli_keypair(dir, "platform");
    std::fs::write(
        dir.join("trust.yaml"),
        "plugins:\n  trusted_keys: [platform.pub]\n  require_signature: true\n",
    )
    .unwrap();
    // The pipeline says nothing about signatures (and tries to waive them).
    std::fs::write(
        dir.join("p.yaml"),
        pipeline_with(&server, &plugin, "plugins: {require_signature: false}\n"),
    )
    .unwrap();
    let run = || {
        sparkwasm(dir)
            .args(["run", "p.yaml"])
            .env("SPARKWASM_TRUST_FILE", dir.join("trust.yaml"))
            .output()
            .unwrap()
    };
    let out = run();
    assert_exit(&out, 1);
    let said = text(&out);
    assert!(
        said.contains("unsigned") && said.contains("trust.yaml: plugins.require_signature"),
        "{said}"
    );
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 0);
    cli_sign(&sk, &plugin, "vetted");
    let out = run();
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 5);
    let _ = pk;
}

#[test]
fn a_signature_made_by_sparkwasm_verifies_with_the_minisign_cli() {
    let Some(_) = minisign() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = d.join("p.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &plugin).unwrap();
    let (pk, sk) = cli_keypair(d, "k");
    let out = sparkwasm(d)
        .args(["plugin", "sign", "p.wasm", "--key", "k.key"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let verify = || {
        Command::new("minisign")
            .args(["-V", "-p"])
            .arg(&pk)
            .arg("-m")
            .arg(&plugin)
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(out.status.success(), "{out:?}");
    // The CLI prints the trusted comment sparkwasm signed: the file's name and digest.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("sha256:{}", sha256_of(&plugin))),
        "{out:?}"
    );
    // And it refuses the file once a byte changes (the signature is over these bytes).
    let mut bytes = std::fs::read(&plugin).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&plugin, bytes).unwrap();
    assert!(!verify().status.success());
    let _ = sk;
}

#[test]
fn plugin_list_shows_each_built_in_with_the_digest_of_the_component_built_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = sparkwasm(dir.path())
        .args(["plugin", "list"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let listed = String::from_utf8_lossy(&out.stdout);
    for name in [
        "retry",
        "logging",
        "timing",
        "json_body",
        "param_injector",
        "worker_identity",
        "transport_diagnostics",
    ] {
        // The digest of the file the build produced, computed here.
        let digest = sha256_of(&fixture(&format!("{name}.wasm")));
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(name) && l.contains(&digest)),
            "{name} {digest} not in:\n{listed}"
        );
    }
    assert!(listed.contains("worker_diag"), "{listed}");
}
