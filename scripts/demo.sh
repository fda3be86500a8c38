#!/usr/bin/env bash
# The demo: starts a local API (it stands for the remote one), runs configs/quickstart.yaml against it,
# and prints a few rows of the Delta table it landed (read back with the Python deltalake package).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/ensure-protoc.sh
cargo build -q -p sparkwasm -p testkit
BIN="${CARGO_TARGET_DIR:-target}/debug"
VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import deltalake, pyarrow" 2>/dev/null || "$VENV/bin/pip" install -q "deltalake>=1.1" pyarrow
url_file=$(mktemp)
"$BIN/testkit" serve > "$url_file" &
api=$!
trap 'kill $api 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$url_file" ] && break; sleep 0.05; done
export DEMO_API=$(cat "$url_file")
echo "local API at $DEMO_API"
status=0
"$BIN/sparkwasm" run configs/quickstart.yaml || status=$?
"$VENV/bin/python" - <<'PY'
import os, sys
from deltalake import DeltaTable
t = DeltaTable("warehouse/demo/quickstart_bronze").to_pyarrow_table()
print(f"\nwarehouse/demo/quickstart_bronze: {t.num_rows} rows; first 3:")
for row in t.sort_by("request_id").slice(0, 3).to_pylist():
    print(f"  {row['request_id']}  {row['method']} {row['url']}  -> {row['status_code']} success={row['success']} body={row['body_text'][:60]}")
sys.stdout.flush()
os._exit(0)  # see tests/read_delta.py: the deltalake wheel may abort in interpreter teardown
PY
exit $status
