//! Builds the guest components in plugins/ (their own cargo workspace) for wasm32-wasip2, so that the
//! built-in middleware are embedded in the binary and the test fixtures exist for the tests.
//!
//! The guests land in `<target dir>/plugins/wasm32-wasip2/release/`, exported to the crate as
//! `SPARKWASM_PLUGIN_DIR`. The nested cargo gets its own target dir (no lock on ours) and a clean
//! environment (no wrapper such as clippy-driver, no host RUSTFLAGS).

use std::path::PathBuf;
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().expect("repo root");
    let plugins = root.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = out.ancestors().nth(4).expect("target dir").join("plugins");
    ensure_target_installed();

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--locked",
        "--release",
        "--target",
        TARGET,
        "--manifest-path",
    ])
    .arg(plugins.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // What the outer build set for the host (wrappers such as clippy-driver, host rustflags, the
    // target dir, per-package variables) must not reach the guests' build; registry, proxy and network
    // settings (CARGO_HTTP_*, CARGO_NET_*, CARGO_REGISTRIES_*) and RUSTC itself do.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let strip = key.starts_with("RUSTC_")
            || key.contains("RUSTFLAGS")
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_MANIFEST_")
            || key == "CARGO_PRIMARY_PACKAGE";
        if strip {
            cmd.env_remove(key.as_ref());
        }
    }
    // Its output goes to stderr: this script's stdout is read by cargo for directives.
    cmd.stdout(std::process::Stdio::from(std::io::stderr()));
    let status = cmd.status().expect("run cargo for the plugins");
    if !status.success() {
        panic!("building the guest plugins in plugins/ failed (see the cargo output above)");
    }
    let built = target_dir.join(TARGET).join("release");
    println!("cargo:rustc-env=SPARKWASM_PLUGIN_DIR={}", built.display());
    assert!(
        built.join("retry.wasm").is_file(),
        "plugins built, but retry.wasm is missing"
    );
}

/// Adds the wasm32-wasip2 target through rustup when it is missing (a fresh machine).
fn ensure_target_installed() {
    let sysroot = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.is_some_and(|s| s.join("lib/rustlib").join(TARGET).is_dir());
    if !installed {
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed"
        );
    }
}
