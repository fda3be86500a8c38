#!/usr/bin/env bash
# A local Spark Connect server for the Spark source/sink and its end-to-end tests.
#
#   bash scripts/spark.sh up       start it (idempotent), print "spark connect ready at sc://127.0.0.1:PORT";
#                                  refuses (exit 1) a port where a server it did not start listens
#   bash scripts/spark.sh down     stop it and wait until the port is closed
#   bash scripts/spark.sh status   say whether it is running (exit 0 if it is, 1 if not)
#
# Everything lives under SPARKWASM_SPARK_HOME (default ~/.cache/sparkwasm/spark):
#   venv/   pyspark (the server's jars + sbin scripts) and the Python Spark Connect client
#           (grpcio, pandas, pyarrow, ...), so tests can use "$SPARKWASM_SPARK_HOME/venv/bin/python"
#   state/  (SPARKWASM_SPARK_STATE) warehouse/, metastore_db/ (Derby, hive catalog), logs/, the pid file:
#           tables survive restarts; delete the folder for a clean slate.
# The server listens on 127.0.0.1:SPARKWASM_SPARK_PORT (default 15002) only; the Spark UI is off and the
# driver binds to loopback, so nothing is exposed beyond this machine.
# SPARKWASM_SPARK_EXTRA_CONF="k=v k2=v2" adds --conf pairs (e.g. for a test that needs a short
# spark.connect.execute.reattachable.senderMaxStreamDuration).
set -euo pipefail

PYSPARK_VERSION="4.3.0" # newest 4.x on PyPI (2026-11); Connect servers accept older 4.x clients (Rust crate 4.2)
SPARK_HOME_DIR="${SPARKWASM_SPARK_HOME:-$HOME/.cache/sparkwasm/spark}"
VENV="${SPARKWASM_SPARK_VENV:-$SPARK_HOME_DIR/venv}"
STATE="${SPARKWASM_SPARK_STATE:-$SPARK_HOME_DIR/state}"
PORT="${SPARKWASM_SPARK_PORT:-15002}"
DRIVER_MEMORY="${SPARKWASM_SPARK_DRIVER_MEMORY:-2g}"
START_TIMEOUT="${SPARKWASM_SPARK_TIMEOUT:-120}"
PIDFILE="$STATE/spark-connect-$PORT.pid"
LOG_DIR="$STATE/logs"
LOG="$LOG_DIR/spark-connect-$PORT.out"

log() { echo "spark.sh: $*" >&2; }

port_open() { (: <"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

# The recorded pid, if that process is still alive and still our server (not a recycled pid).
running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q SparkConnectServer || return 1
  echo "$pid"
}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_java() {
  if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
    log "java not found; installing openjdk-17-jre-headless"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless
  fi
  local java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java" major
  major=$("$java_bin" -version 2>&1 | sed -n 's/.* version "\([0-9]*\).*/\1/p' | head -1)
  if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    log "Spark 4 needs Java 17 or newer; found: $("$java_bin" -version 2>&1 | head -1)"
    exit 1
  fi
}

ensure_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # pyspark[connect] = pandas, pyarrow, grpcio, grpcio-status, googleapis-common-protos, zstandard, ...
  # pandas < 3: pyspark 4.3 warns (FutureWarning on every session) that it does not fully support pandas 3.
  if ! "$VENV/bin/python" - "$PYSPARK_VERSION" 2>/dev/null <<'PY'; then
import sys, pyspark
import grpc, grpc_status, google.rpc, pandas, pyarrow, zstandard  # the connect client's needs
sys.exit(pyspark.__version__ != sys.argv[1] or int(pandas.__version__.split(".")[0]) >= 3)
PY
    log "installing pyspark[connect]==$PYSPARK_VERSION into $VENV (~500 MB, once)"
    "$VENV/bin/pip" install -q --disable-pip-version-check "pyspark[connect]==$PYSPARK_VERSION" "pandas<3"
  fi
  PYSPARK_DIR=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
}

# Wait until the server (pid $1, started at $SECONDS=$2) accepts connections; on death or timeout, show
# the log tail and fail.
wait_until_listening() {
  local pid=$1 started=$2
  until port_open; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the server exited during start-up; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if [ $((SECONDS - started)) -ge "$START_TIMEOUT" ]; then
      log "not listening on 127.0.0.1:$PORT after ${START_TIMEOUT}s; last lines of $LOG:"
      tail -n 40 "$LOG" >&2
      kill "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      exit 1
    fi
    sleep 1
  done
  log "up in $((SECONDS - started))s"
  echo "spark connect ready at sc://127.0.0.1:$PORT"
}

cmd_up() {
  local pid
  if port_open; then
    if pid=$(running_pid); then
      echo "spark connect already running at sc://127.0.0.1:$PORT (pid $pid)"
      return 0
    fi
    # Not ours (or started with another state folder: its catalog is not this one's). Using it would
    # let tests pass against tables they did not create; refuse.
    log "127.0.0.1:$PORT is in use by a process this script did not start with state $STATE;" \
      "stop it (find it: ss -ltnp 'sport = :$PORT'; a killed test run may have left a server behind)" \
      "or choose another SPARKWASM_SPARK_PORT"
    exit 1
  fi
  if pid=$(running_pid); then # a concurrent `up` is still starting it: wait, never start a second JVM
    log "already starting (pid $pid); waiting for it"
    wait_until_listening "$pid" "$SECONDS"
    return 0
  fi
  ensure_java
  ensure_venv
  mkdir -p "$STATE/warehouse" "$LOG_DIR"
  rm -f "$PIDFILE"
  : >"$LOG"
  local started=$SECONDS extra_conf=() kv
  for kv in ${SPARKWASM_SPARK_EXTRA_CONF:-}; do extra_conf+=(--conf "$kv"); done
  # What sbin/start-connect-server.sh runs, minus spark-daemon.sh (which would leave a bash parent between
  # us and the JVM when kept in the foreground): spark-submit -> spark-class -> exec java, so $! is the
  # server's own pid. setsid: it outlives this shell and a Ctrl-C in the terminal that started it.
  (
    cd "$STATE" # stray files (derby.log, spark-warehouse) land in the state dir, never in the repo
    export SPARK_HOME="$PYSPARK_DIR" SPARK_CONNECT_MODE=0 SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=localhost
    exec setsid "$PYSPARK_DIR/bin/spark-submit" \
      --class org.apache.spark.sql.connect.service.SparkConnectServer \
      --name "Spark Connect server" \
      --master "local[2]" \
      --driver-memory "$DRIVER_MEMORY" \
      --conf "spark.connect.grpc.binding.address=127.0.0.1" \
      --conf "spark.connect.grpc.binding.port=$PORT" \
      --conf "spark.driver.host=127.0.0.1" \
      --conf "spark.driver.bindAddress=127.0.0.1" \
      --conf "spark.ui.enabled=false" \
      --conf "spark.sql.catalogImplementation=hive" \
      --conf "spark.sql.warehouse.dir=$STATE/warehouse" \
      --conf "spark.hadoop.javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=$STATE/metastore_db;create=true" \
      --conf "spark.driver.extraJavaOptions=-Dderby.system.home=$STATE -Dderby.stream.error.file=$LOG_DIR/derby.log" \
      --conf "spark.sql.shuffle.partitions=4" \
      "${extra_conf[@]}" \
      >>"$LOG" 2>&1 </dev/null
  ) &
  pid=$!
  echo "$pid" >"$PIDFILE"
  disown "$pid" 2>/dev/null || true
  log "starting Spark Connect $PYSPARK_VERSION (pid $pid), log: $LOG"
  wait_until_listening "$pid" "$started"
}

cmd_down() {
  local pid
  if pid=$(running_pid); then
    log "stopping Spark Connect (pid $pid)"
    kill "$pid" 2>/dev/null || true # SIGTERM: the JVM's shutdown hooks close the metastore cleanly
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$waited" -ge 60 ]; then
        log "still alive after 60s; sending SIGKILL"
        kill -9 "$pid" 2>/dev/null || true
      fi
      sleep 1
      waited=$((waited + 1))
    done
  elif port_open; then
    log "127.0.0.1:$PORT is open but no server recorded in $PIDFILE; not touching it"
    exit 1
  else
    echo "spark connect is not running"
  fi
  rm -f "$PIDFILE"
  local waited=0
  while port_open; do
    [ "$waited" -ge 30 ] && { log "port $PORT still open after 30s"; exit 1; }
    sleep 1
    waited=$((waited + 1))
  done
  [ -n "${pid:-}" ] && echo "spark connect stopped"
  return 0
}

cmd_status() {
  local pid
  if port_open; then
    if pid=$(running_pid); then
      echo "running at sc://127.0.0.1:$PORT (pid $pid, state $STATE)"
    else
      echo "something listens on 127.0.0.1:$PORT, but not a server started by this script"
    fi
    return 0
  fi
  if pid=$(running_pid); then
    echo "starting (pid $pid), not yet listening on 127.0.0.1:$PORT"
    return 0
  fi
  echo "not running"
  return 1
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
