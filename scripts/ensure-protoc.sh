# Sourced by the build scripts: makes `protoc` available for the Spark Connect client's build
# (apache-spark-connect-proto compiles Spark's .proto files). apt's protobuf-compiler if it can be
# installed, else protoc from the grpcio-tools wheel (PyPI) in the venv, behind a small wrapper.
if ! command -v protoc >/dev/null && [ -z "${PROTOC:-}" ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  if ! { $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q protobuf-compiler >/dev/null 2>&1; }; }; then
    VENV="${SPARKWASM_VENV:-$HOME/.cache/sparkwasm/venv}"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -c "import grpc_tools" 2>/dev/null || "$VENV/bin/pip" install -q grpcio-tools
    mkdir -p "$VENV/protoc"
    printf '#!/bin/sh\nexec "%s" -m grpc_tools.protoc "$@"\n' "$VENV/bin/python" > "$VENV/protoc/protoc"
    chmod +x "$VENV/protoc/protoc"
    export PROTOC="$VENV/protoc/protoc"
  fi
fi
