#!/usr/bin/env bash
# The demo: builds sparkwasm and one custom plugin from source (plugins/examples/mask-fields, Rust ->
# a WebAssembly component), starts a local API (it stands for the remote one), shows the plugin chain
# as `validate` loads it, runs configs/quickstart.yaml, and prints rows of the Delta table it landed
# (read back with the Python deltalake package): the answer as landed, personal data masked by the
# plugin, and the metadata the plugins recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-protoc.sh
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build -q -p sparkwasm -p testkit
BIN="$TARGET/debug"

# The custom plugin, as its author would build it: a cdylib for wasm32-wasip2 is a component.
echo "building plugins/examples/mask-fields for wasm32-wasip2"
cargo build -q --release --target wasm32-wasip2 -p mask-fields \
  --manifest-path plugins/Cargo.toml --target-dir "$TARGET/plugins"
DEMO_PLUGIN="$(realpath "$TARGET/plugins/wasm32-wasip2/release/mask_fields.wasm")"
DEMO_PLUGIN_SHA256="$(sha256sum "$DEMO_PLUGIN" | cut -d' ' -f1)"
export DEMO_PLUGIN DEMO_PLUGIN_SHA256

VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import deltalake, pyarrow" 2>/dev/null || "$VENV/bin/pip" install -q "deltalake>=1.1" pyarrow

url_file=$(mktemp)
"$BIN/testkit" serve > "$url_file" &
api=$!
trap 'kill $api 2>/dev/null; rm -f "$url_file"' EXIT
for _ in $(seq 100); do [ -s "$url_file" ] && break; sleep 0.05; done
DEMO_API=$(cat "$url_file")
export DEMO_API
echo "local API at $DEMO_API"
echo
echo "\$ sparkwasm validate configs/quickstart.yaml"
RUST_LOG=warn "$BIN/sparkwasm" validate configs/quickstart.yaml
echo
echo "\$ sparkwasm run configs/quickstart.yaml"
status=0
"$BIN/sparkwasm" run configs/quickstart.yaml || status=$?
"$VENV/bin/python" - <<'PY'
import json, os, sys
from deltalake import DeltaTable
t = DeltaTable("warehouse/demo/quickstart_bronze").to_pyarrow_table()
rows = t.sort_by("request_id").to_pylist()
print(f"\nwarehouse/demo/quickstart_bronze: {t.num_rows} rows, "
      f"{sum(r['success'] for r in rows)} successful; the first 3:")
for row in rows[:3]:
    print(f"  {row['request_id']}  {row['method']} {row['url']}  -> {row['status_code']} success={row['success']}")
    print(f"    body_text          {row['body_text']}")
print("  response_metadata of the first row (each key written by a plugin or the transport):")
for key, value in sorted(json.loads(rows[0]["response_metadata"]).items()):
    print(f"    {key:<34} {value}")
sys.stdout.flush()
os._exit(0)  # see tests/read_delta.py: the deltalake wheel may abort in interpreter teardown
PY
exit $status
