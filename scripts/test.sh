#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests (cargo test).
# Installs what it needs: minisign, docker-registry and prometheus (apt), a Python venv with `deltalake` (the independent second reader of the tests) and moto (S3), Azurite (npm)
# and componentize-py, componentize-js from npm; host/build.rs adds the wasm32-wasip2 target for the
# guest plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-protoc.sh
# Debian packages the tests run: the minisign CLI (signature interop), docker-registry (the CNCF
# distribution registry) and prometheus (scrapes a run), each started on 127.0.0.1 by its test.
need=""
command -v minisign >/dev/null || need="$need minisign"
command -v docker-registry >/dev/null || need="$need docker-registry"
command -v prometheus >/dev/null || need="$need prometheus"
if [ -n "$need" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq $need >/dev/null 2>&1 ||
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $need >/dev/null; }
fi
VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import deltalake, pyarrow, jsonschema, yaml, bcrypt, moto, flask" 2>/dev/null ||
  "$VENV/bin/pip" install -q "deltalake>=1.1" pyarrow jsonschema pyyaml bcrypt "moto[server]>=5.1"
export SPARKWASM_PYTHON="$VENV/bin/python"
# moto 4.2 in a venv of its own: an S3 emulator that ignores If-None-Match, as older S3-compatible
# stores do (the test of the sink's check for concurrent writers).
OLD_MOTO="${SPARKWASM_OLD_MOTO_VENV:-$HOME/.cache/sparkwasm/moto4}"
[ -x "$OLD_MOTO/bin/moto_server" ] || {
  python3 -m venv "$OLD_MOTO" && "$OLD_MOTO/bin/pip" install -q "moto[s3,server]==4.2.14"
}
export SPARKWASM_OLD_MOTO="$OLD_MOTO/bin/moto_server"
# Object stores in the tests: moto's server (S3, DynamoDB; from PyPI, above) and Azurite, Azure's
# official storage emulator (npm; 3.35 runs on Node 20), each started on 127.0.0.1 by its test.
AZURITE_DIR="${SPARKWASM_AZURITE_DIR:-$HOME/.cache/sparkwasm/azurite}"
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ]; then
  mkdir -p "$AZURITE_DIR"
  (cd "$AZURITE_DIR" && npm install --silent --no-audit --no-fund azurite@3.35 >&2)
fi
export SPARKWASM_AZURITE="$AZURITE_DIR/node_modules/.bin/azurite-blob"
# The polyglot examples: middleware written in Python (componentize-py) and JavaScript
# (componentize-js), built from source. A failed build stops the suite here.
# (Plain assignments, exported after: `export X="$(...)"` would hide a failed build from set -e.)
SPARKWASM_PYTHON_PLUGIN="$(bash scripts/build-python-plugin.sh)"
SPARKWASM_JS_PLUGIN="$(bash scripts/build-js-plugin.sh)"
for built in "$SPARKWASM_PYTHON_PLUGIN" "$SPARKWASM_JS_PLUGIN"; do
  [ -s "$built" ] || { echo "test.sh: the example plugin build did not produce $built" >&2; exit 1; }
done
export SPARKWASM_PYTHON_PLUGIN SPARKWASM_JS_PLUGIN
cargo fmt --all --check
cargo fmt --all --check --manifest-path plugins/Cargo.toml
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}/plugins" -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# The optional DynamoDB locking provider for S3 (`--features dynamodb`: delta-rs's AWS SDK client),
# linted and tested against moto's DynamoDB.
cargo clippy -p sparkwasm --features dynamodb --all-targets -- -D warnings
cargo test -p sparkwasm --features dynamodb --test e2e stores::the_dynamodb 2>&1 | tee -a "$log"
# The guest plugins' own unit tests (retry's backoff, the SDK's docs), natively: they call no host import.
cargo test --workspace --manifest-path plugins/Cargo.toml \
  --target-dir "${CARGO_TARGET_DIR:-target}/plugins-native" 2>&1 | tee -a "$log"
# One closing line for the whole suite (cargo's last block is the doc tests, often empty).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
