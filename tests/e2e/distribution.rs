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
    let (_, sk) = cli_keypair(dir, "platform");
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

    // A pipeline that vouches for a plugin with a key of its own: accepted, unless the machine
    // says only its keys count.
    let (_, team_sk) = cli_keypair(dir, "team");
    cli_sign(&team_sk, &plugin, "vetted by the pipeline's author");
    std::fs::write(
        dir.join("p.yaml"),
        pipeline_with(&server, &plugin, "plugins: {trusted_keys: [team.pub]}\n"),
    )
    .unwrap();
    std::fs::remove_dir_all(case.bronze()).unwrap();
    let out = run();
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 10);
    std::fs::write(
        dir.join("trust.yaml"),
        "plugins:\n  trusted_keys: [platform.pub]\n  require_signature: true\n  only_machine_keys: true\n",
    )
    .unwrap();
    std::fs::remove_dir_all(case.bronze()).unwrap();
    let out = run();
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("not among the trusted keys"),
        "{}",
        text(&out)
    );
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 10);
}

#[test]
fn a_signature_made_by_sparkwasm_verifies_with_the_minisign_cli() {
    let Some(_) = minisign() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let plugin = d.join("p.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &plugin).unwrap();
    let (pk, _) = cli_keypair(d, "k");
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

/// Debian's `docker-registry` (the CNCF distribution registry) on 127.0.0.1, its storage in a temp
/// dir, over plain http or TLS; stopped when dropped.
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts one; `tls`: (certificate PEM, key PEM). `None` where the package is missing and a
    /// skip is allowed.
    fn start(tls: Option<(&str, &str)>) -> Option<Registry> {
        Registry::start_with(tls, None)
    }

    /// Starts one that asks for Basic credentials checked against `htpasswd` (bcrypt lines).
    fn start_with(tls: Option<(&str, &str)>, htpasswd: Option<&str>) -> Option<Registry> {
        let exists = Command::new("docker-registry")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            skip_allowed("Debian's docker-registry (an OCI registry)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let tls_block = match tls {
            Some((cert, key)) => {
                std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
                std::fs::write(dir.path().join("key.pem"), key).unwrap();
                format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    dir.path().join("cert.pem").display(),
                    dir.path().join("key.pem").display()
                )
            }
            None => String::new(),
        };
        let auth_block = match htpasswd {
            Some(lines) => {
                std::fs::write(dir.path().join("htpasswd"), lines).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n{tls_block}{auth_block}",
            dir.path().join("storage").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            addr,
            _dir: dir,
        };
        let up = wait_until(std::time::Duration::from_secs(20), || {
            std::net::TcpStream::connect(&registry.addr).is_ok()
        });
        assert!(up, "the registry did not start on {}", registry.addr);
        Some(registry)
    }
}

/// sparkwasm with the registry settings of a test: plain http to `plain` (loopback), a CA file,
/// and a cache folder of its own.
fn with_registry(dir: &Path, plain: Option<&str>, ca: Option<&Path>, cache: &Path) -> Command {
    let mut c = sparkwasm(dir);
    c.env("SPARKWASM_PLUGIN_CACHE", cache)
        .env_remove("SPARKWASM_PLAIN_HTTP_REGISTRIES")
        .env_remove("SPARKWASM_REGISTRY_CA_FILE");
    if let Some(p) = plain {
        c.env("SPARKWASM_PLAIN_HTTP_REGISTRIES", p);
    }
    if let Some(ca) = ca {
        c.env("SPARKWASM_REGISTRY_CA_FILE", ca);
    }
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_plugin_pushed_to_a_registry_runs_by_digest_and_from_the_cache_when_the_registry_is_down()
 {
    let Some(_) = minisign() else { return };
    let Some(registry) = Registry::start(None) else {
        return;
    };
    let server = ApiServer::start(0).await.unwrap();
    let case = Case::new(10, "");
    let dir = case.dir.path();
    let cache = dir.join("cache");
    let addr = registry.addr.clone();
    let plain = Some(addr.as_str());
    let plugin = dir.join("vetted.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &plugin).unwrap();
    let (_, sk) = cli_keypair(dir, "team");
    cli_sign(&sk, &plugin, "vetted by the platform team");

    // The author pushes; the registry holds the CNCF Wasm layout (read from the registry's own API).
    let reference = format!("{}/team/vetted:1.0", registry.addr);
    let out = with_registry(dir, plain, None, &cache)
        .args(["plugin", "push", "vetted.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let pinned = pinned_reference(&out);
    let digest = pinned.rsplit_once('@').unwrap().1.to_owned();
    let manifest = registry_manifest(&registry.addr, "team/vetted", "1.0");
    assert_eq!(format!("sha256:{:x}", Sha256::digest(&manifest)), digest);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256_of(&plugin))
    );
    // The signature beside it, under the tag the registry can serve without a referrers API.
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let sig_manifest = registry_manifest(&registry.addr, "team/vetted", &sig_tag);
    assert!(!sig_manifest.is_empty());

    // The data team pins the digest and requires a trusted signature.
    let entry = |source: &str| {
        pipeline(
            &server.url(),
            "/items/{id}",
            &format!(
                "plugins: {{trusted_keys: [team.pub], require_signature: true}}\nmiddleware:\n  - type: wasm\n    name: vetted\n    source: \"{source}\"\n"
            ),
        )
    };
    std::fs::write(dir.join("p.yaml"), entry(&pinned)).unwrap();
    let run = |plain: Option<&str>, cache: &Path| {
        with_registry(dir, plain, None, cache)
            .args(["run", "p.yaml"])
            .output()
            .unwrap()
    };
    let out = run(plain, &cache);
    assert_exit(&out, 0);
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 10);

    // An unpinned reference is refused before any request, then taken with --allow-unpinned, which
    // prints the digest to pin.
    std::fs::write(dir.join("p.yaml"), entry(&format!("oci://{reference}"))).unwrap();
    let out = run(plain, &dir.join("cache-2"));
    assert_exit(&out, 1);
    assert!(text(&out).contains("has no digest"), "{}", text(&out));
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), 10);
    // The notice is said whatever RUST_LOG filters.
    let out = with_registry(dir, plain, None, &dir.join("cache-2"))
        .args(["run", "p.yaml", "--allow-unpinned"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not pinned: it resolved to oci://") && stderr.contains(&digest),
        "{stderr}"
    );

    // An unsigned plugin pushed under another tag: the policy refuses it.
    let unsigned = dir.join("unsigned.wasm");
    std::fs::copy(fixture("passthrough.wasm"), &unsigned).unwrap();
    // Other bytes (the same bytes would be the same digest, and the signature beside it would hold).
    std::fs::write(dir.join("m.json"), r#"{"name": "unsigned"}"#).unwrap();
    let out = sparkwasm(dir)
        .args(["plugin", "manifest", "unsigned.wasm", "--set", "m.json"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let out = with_registry(dir, plain, None, &cache)
        .args([
            "plugin",
            "push",
            "unsigned.wasm",
            &format!("{}/team/unsigned:1.0", registry.addr),
        ])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let unsigned_ref = pinned_reference(&out);
    std::fs::write(dir.join("p.yaml"), entry(&unsigned_ref)).unwrap();
    let before = server.counters.row_requests.load(Ordering::SeqCst);
    let out = run(plain, &cache);
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("unsigned") && text(&out).contains("plugin `vetted`"),
        "{}",
        text(&out)
    );
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), before);

    // The registry goes away: the pinned plugin runs from the cache; without a cache the run stops
    // before any request, naming the reference.
    drop(registry);
    std::fs::write(dir.join("p.yaml"), entry(&pinned)).unwrap();
    let out = run(plain, &cache);
    assert_exit(&out, 0);
    let after = server.counters.row_requests.load(Ordering::SeqCst);
    let out = run(plain, &dir.join("empty-cache"));
    assert_exit(&out, 1);
    assert!(
        text(&out).contains(&pinned.replace("oci://", "")) || text(&out).contains(&pinned),
        "{}",
        text(&out)
    );
    assert_eq!(server.counters.row_requests.load(Ordering::SeqCst), after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_over_tls_with_a_generated_ca_serves_pull_and_an_unknown_ca_is_refused() {
    let certs = testkit::test_certs();
    let Some(registry) = Registry::start(Some((&certs.server_cert_pem, &certs.server_key_pem)))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), &certs.ca_pem).unwrap();
    std::fs::copy(fixture("passthrough.wasm"), d.join("p.wasm")).unwrap();
    let reference = format!("{}/team/p:2", registry.addr);
    // Without the CA the registry's certificate is not trusted.
    let out = with_registry(d, None, None, &d.join("cache"))
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let out = with_registry(d, None, Some(&d.join("ca.pem")), &d.join("cache"))
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let pinned = pinned_reference(&out);
    let out = with_registry(d, None, Some(&d.join("ca.pem")), &d.join("cache"))
        .args(["plugin", "pull", &pinned, "-o", "pulled.wasm"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    assert_eq!(
        sha256_of(&d.join("pulled.wasm")),
        sha256_of(&d.join("p.wasm"))
    );
    // Someone with write access to the registry's storage changes one byte of the component: a
    // pull (not from the cache) refuses what it was served.
    let layer = sha256_of(&d.join("p.wasm"));
    let blob = registry
        ._dir
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let out = with_registry(d, None, Some(&d.join("ca.pem")), &d.join("fresh-cache"))
        .args(["plugin", "pull", &pinned])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(text(&out).contains("digest"), "{}", text(&out));
    // Plain http is for loopback registries only.
    let out = with_registry(d, Some("registry.example.com:5000"), None, &d.join("c2"))
        .args([
            "plugin",
            "pull",
            "oci://registry.example.com:5000/a/b:1",
            "--allow-unpinned",
        ])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("loopback registries only"),
        "{}",
        text(&out)
    );
}

/// A manifest as the registry's own API serves it (the test reads the registry, not sparkwasm).
fn registry_manifest(addr: &str, repository: &str, reference: &str) -> Vec<u8> {
    let (status, body) = http_get(
        addr,
        &format!("/v2/{repository}/manifests/{reference}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
    );
    assert!(status.contains(" 200"), "{status}");
    body
}

/// The `oci://…@sha256:…` reference `plugin push` printed.
fn pinned_reference(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("oci://"))
        .unwrap_or_else(|| panic!("no oci:// line in: {}", text(out)))
        .trim()
        .to_owned()
}

/// A registry that asks for credentials: they come from the environment or the Docker config, and
/// never appear in what sparkwasm prints.
#[test]
fn registry_credentials_come_from_the_environment_or_the_docker_config_and_are_never_printed() {
    let Ok(python) = std::env::var("SPARKWASM_PYTHON") else {
        skip_allowed("SPARKWASM_PYTHON (a Python with bcrypt, for the registry's htpasswd)");
        return;
    };
    let password = "s3cret-registry-pass";
    let hash = Command::new(&python)
        .args([
            "-c",
            "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt()).decode())",
            password,
        ])
        .output()
        .unwrap();
    assert!(hash.status.success(), "{hash:?}");
    let htpasswd = format!("team:{}", String::from_utf8_lossy(&hash.stdout).trim());
    let certs = testkit::test_certs();
    let Some(registry) = Registry::start_with(
        Some((&certs.server_cert_pem, &certs.server_key_pem)),
        Some(&htpasswd),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), &certs.ca_pem).unwrap();
    std::fs::copy(fixture("passthrough.wasm"), d.join("p.wasm")).unwrap();
    let reference = format!("{}/team/p:1", registry.addr);
    let cmd = || {
        let mut c = with_registry(d, None, Some(&d.join("ca.pem")), &d.join("cache"));
        c.env_remove("SPARKWASM_REGISTRY_USERNAME")
            .env_remove("SPARKWASM_REGISTRY_PASSWORD")
            .env_remove("SPARKWASM_REGISTRY_HOST")
            .env("DOCKER_CONFIG", d.join("no-docker-config"));
        c
    };
    let never_printed = |out: &std::process::Output| {
        assert!(!text(out).contains(password), "{}", text(out));
    };
    // No credentials: refused by the registry.
    let out = cmd()
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    // Credentials in the environment without the registry they are for: refused before any
    // request; for another registry: not sent here (anonymous, refused by the registry).
    let out = cmd()
        .env("SPARKWASM_REGISTRY_USERNAME", "team")
        .env("SPARKWASM_REGISTRY_PASSWORD", password)
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("SPARKWASM_REGISTRY_HOST"),
        "{}",
        text(&out)
    );
    never_printed(&out);
    let out = cmd()
        .env("SPARKWASM_REGISTRY_USERNAME", "team")
        .env("SPARKWASM_REGISTRY_PASSWORD", password)
        .env("SPARKWASM_REGISTRY_HOST", "registry.example.com")
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    never_printed(&out);
    // A wrong password: refused, and neither password is printed.
    let out = cmd()
        .env("SPARKWASM_REGISTRY_HOST", &registry.addr)
        .env("SPARKWASM_REGISTRY_USERNAME", "team")
        .env("SPARKWASM_REGISTRY_PASSWORD", "wrong-password-xyz")
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(!text(&out).contains("wrong-password-xyz"), "{}", text(&out));
    // From the environment.
    let out = cmd()
        .env("SPARKWASM_REGISTRY_HOST", &registry.addr)
        .env("SPARKWASM_REGISTRY_USERNAME", "team")
        .env("SPARKWASM_REGISTRY_PASSWORD", password)
        .env("RUST_LOG", "debug")
        .args(["plugin", "push", "p.wasm", &reference])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    never_printed(&out);
    let pinned = pinned_reference(&out);
    // From the Docker config (`auths.<registry>.auth` = base64 of user:password).
    use base64::Engine;
    let docker = d.join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {registry.addr.clone(): {"auth": base64::engine::general_purpose::STANDARD.encode(format!("team:{password}"))}}}).to_string(),
    )
    .unwrap();
    let out = cmd()
        .env("DOCKER_CONFIG", &docker)
        .env("RUST_LOG", "debug")
        .args(["plugin", "pull", &pinned, "-o", "pulled.wasm"])
        .output()
        .unwrap();
    assert_exit(&out, 0);
    never_printed(&out);
    assert_eq!(
        sha256_of(&d.join("pulled.wasm")),
        sha256_of(&d.join("p.wasm"))
    );
}
