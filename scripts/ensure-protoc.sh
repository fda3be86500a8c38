# Sourced by the build scripts: makes `protoc` available for the Spark Connect client's build
# (apache-spark-connect-proto compiles Spark's .proto files). apt's protobuf-compiler if it can be
# installed, else protoc from the grpcio-tools wheel (PyPI) in the venv, behind a small wrapper.
_venv="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
if ! command -v protoc >/dev/null && [ -z "${PROTOC:-}" ] && [ -x "$_venv/protoc/protoc" ]; then
  export PROTOC="$_venv/protoc/protoc" # made by an earlier run (below)
fi
if ! command -v protoc >/dev/null && [ -z "${PROTOC:-}" ]; then
  # Non-interactive sudo: never stops for a password; without root the PyPI fallback is used.
  SUDO=$([ "$(id -u)" = 0 ] || echo "sudo -n")
  if ! { $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1; }; }; then
    echo "protoc: apt is not available here; using protoc from PyPI's grpcio-tools" >&2
    [ -x "$_venv/bin/python" ] || python3 -m venv "$_venv"
    "$_venv/bin/python" -c "import grpc_tools" 2>/dev/null || "$_venv/bin/pip" install -q grpcio-tools
    mkdir -p "$_venv/protoc"
    printf '#!/bin/sh\nexec "%s" -m grpc_tools.protoc "$@"\n' "$_venv/bin/python" > "$_venv/protoc/protoc"
    chmod +x "$_venv/protoc/protoc"
    export PROTOC="$_venv/protoc/protoc"
  fi
fi
