#!/usr/bin/env bash
# `just bench`: sparkwasm end to end on 200k rows beside wrk and the Python asyncio+aiohttp reference,
# all against one loopback endpoint in the same run (bench/run.py). Not a test: nothing is asserted.
# Installs what it needs: wrk (apt), a venv with aiohttp + deltalake + pyarrow; builds the release binaries.
# Arguments go to bench/run.py (e.g. --rows 50000 --memory-rows 0).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-protoc.sh
if ! command -v wrk >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get install -y -q wrk >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q wrk >/dev/null; }
fi
VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import deltalake, pyarrow, aiohttp" 2>/dev/null \
  || "$VENV/bin/pip" install -q "deltalake>=1.1" pyarrow aiohttp
# Azurite (npm), for the run that lands in Delta on an object store.
AZURITE_DIR="${SPARKWASM_AZURITE_DIR:-$HOME/.cache/sparkwasm/azurite}"
if [ ! -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] && command -v npm >/dev/null; then
  mkdir -p "$AZURITE_DIR"
  (cd "$AZURITE_DIR" && npm install --silent --no-audit --no-fund azurite@3.35 >&2)
fi
[ -x "$AZURITE_DIR/node_modules/.bin/azurite-blob" ] && export SPARKWASM_AZURITE="$AZURITE_DIR/node_modules/.bin/azurite-blob"
cargo build -q --release -p sparkwasm -p testkit
cargo build -q --release -p sparkwasm --example hop
exec "$VENV/bin/python" bench/run.py "${CARGO_TARGET_DIR:-target}/release" "$@"
