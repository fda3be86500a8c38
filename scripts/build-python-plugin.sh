#!/usr/bin/env bash
# Builds the Python example plugin (plugins/python/require_fields) into a component with componentize-py
# (installed from PyPI into the project venv). Prints the .wasm path. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
[ -x "$VENV/bin/componentize-py" ] || "$VENV/bin/pip" install -q "componentize-py==0.25.1"
out="$(realpath -m "${CARGO_TARGET_DIR:-target}")/plugins/python"
mkdir -p "$out"
wasm="$out/require_fields.wasm"
src=plugins/python/require_fields/app.py
if [ ! -f "$wasm" ] || [ "$src" -nt "$wasm" ] || [ wit/plugin.wit -nt "$wasm" ]; then
  (cd plugins/python/require_fields && "$VENV/bin/componentize-py" -d ../../../wit -w middleware \
    componentize app -o "$wasm" >/dev/null)
fi
echo "$wasm"
