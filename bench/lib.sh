# shellcheck shell=bash
# Helpers shared by bench/run and bench/instructions; sourced, not run.
# The sourcing script sets LOG_NAME and ROOT first.

log() { echo "$LOG_NAME: $*" >&2; }
die() { log "error: $*"; exit 1; }

need() { # need COMMAND DEBIAN_PACKAGE
  command -v "$1" >/dev/null && return
  log "installing $2"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The telemetry destinations' stand-in (bench/stand_in.rs, built by the
# sourcing script): OTLP/HTTP, X-Ray's UDP and CloudWatch Logs on one port.
STAND_IN=$ROOT/target/release/examples/stand_in
start_sink() { # start_sink PORT LOG: starts the stand-in; sets SINK_PID
  # It shares core 1 with wrk so the server's CPU numbers stay its own.
  local i
  taskset -c 1 "$STAND_IN" "$1" >"$2" 2>&1 &
  # shellcheck disable=SC2034  # read by the sourcing script
  SINK_PID=$!
  for ((i = 0; i < 100; i++)); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return; sleep 0.1  # GET: not counted
  done
  die "the stand-in did not start (log: $2)"
}
