#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and end-to-end tests (cargo test).
# Installs what it needs: a Python venv with `deltalake`, the independent second reader of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import deltalake, pyarrow" 2>/dev/null || "$VENV/bin/pip" install -q "deltalake>=1.1" pyarrow
export SPARKWASM_PYTHON="$VENV/bin/python"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line for the whole suite (cargo's last block is the doc tests, often empty).
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
