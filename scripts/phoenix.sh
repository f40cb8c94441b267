#!/usr/bin/env bash
# Arize Phoenix as a local OpenTelemetry (OTLP) tracing backend for integration tests.
#
#   scripts/phoenix.sh install
#       Create .venv-phoenix with the pinned arize-phoenix (plus the OTel Python SDK and OTLP/gRPC
#       exporter, for test senders) if it is missing. Idempotent, quiet, safe to run concurrently.
#       About 850 MB, 70-90 s the first time; a no-op afterwards.
#
#   scripts/phoenix.sh serve HTTP_PORT GRPC_PORT WORKDIR
#       exec Phoenix in the foreground: OTLP/gRPC on 127.0.0.1:GRPC_PORT, UI + REST API + OTLP/HTTP
#       (POST /v1/traces) on 127.0.0.1:HTTP_PORT, SQLite database and temp files under WORKDIR
#       (created if missing; the caller deletes it). Telemetry, external fetches, the agent
#       assistant and the MCP server are off. Ready when GET http://127.0.0.1:HTTP_PORT/healthz
#       answers 200 (about 10-15 s: it runs its DB migrations at every start). Stop it with
#       SIGTERM (exits in about 2 s).
#
# Spans come back from GET /v1/projects/{project}/spans?trace_id=<32 lowercase hex>; see
# scripts/phoenix_spans.py. Env: PHOENIX_VENV overrides the venv path, PYTHON the interpreter
# used to create it (default python3, needs >= 3.10).
set -euo pipefail

PHOENIX_VERSION=20.26.1
OTEL_VERSION=1.45.2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${PHOENIX_VENV:-$ROOT/.venv-phoenix}
STAMP=$VENV/.installed-arize-phoenix-$PHOENIX_VERSION

usage() {
    echo "usage: $0 install | serve HTTP_PORT GRPC_PORT WORKDIR" >&2
    exit 2
}

do_install() {
    [[ -f $STAMP ]] && return 0
    mkdir -p "$VENV"
    # Serialize concurrent installs (parallel tests).
    exec 9>"$VENV/.install.lock"
    flock 9
    [[ -f $STAMP ]] && return 0
    local log=$VENV/.install.log
    {
        [[ -x $VENV/bin/python ]] || "${PYTHON:-python3}" -m venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            "arize-phoenix==$PHOENIX_VERSION" \
            "opentelemetry-sdk==$OTEL_VERSION" \
            "opentelemetry-exporter-otlp-proto-grpc==$OTEL_VERSION"
        "$VENV/bin/python" -c 'import phoenix.server.main, opentelemetry.exporter.otlp.proto.grpc.trace_exporter'
    } >"$log" 2>&1 || {
        echo "phoenix.sh: install into $VENV failed; log follows" >&2
        cat "$log" >&2
        exit 1
    }
    touch "$STAMP"
}

# Phoenix hard-codes the OTLP/gRPC listener to "[::]:PORT" (all interfaces; PHOENIX_HOST only
# affects the HTTP server). Rewrite that bind address to PHOENIX_HOST before starting it.
LAUNCHER='
import os, sys
import grpc.aio._server as _s
_host = os.environ["PHOENIX_HOST"]
def _local(address):
    return _host + address[4:] if address.startswith("[::]:") else address
_insecure, _secure = _s.Server.add_insecure_port, _s.Server.add_secure_port
_s.Server.add_insecure_port = lambda self, address: _insecure(self, _local(address))
_s.Server.add_secure_port = lambda self, address, creds: _secure(self, _local(address), creds)
from phoenix.server.main import main
sys.argv[0] = "phoenix"
main()
'

do_serve() {
    [[ $# -eq 3 ]] || usage
    local http_port=$1 grpc_port=$2 workdir=$3
    [[ $http_port =~ ^[0-9]+$ && $grpc_port =~ ^[0-9]+$ ]] || usage
    [[ -f $STAMP ]] || { echo "phoenix.sh: not installed; run: $0 install" >&2; exit 1; }
    mkdir -p "$workdir/tmp"
    workdir=$(cd "$workdir" && pwd)
    # Drop inherited settings that would point it at another database, collector or config.
    local v
    for v in $(compgen -e); do
        case $v in PHOENIX_* | OTEL_*) unset "$v" ;; esac
    done
    export PHOENIX_HOST=127.0.0.1
    export PHOENIX_PORT=$http_port
    export PHOENIX_GRPC_PORT=$grpc_port
    export PHOENIX_WORKING_DIR=$workdir                     # phoenix.db (SQLite) lives here
    export TMPDIR=$workdir/tmp                              # its pid files (else /tmp/.arize-phoenix)
    export PHOENIX_TELEMETRY_ENABLED=false                  # FullStory / Scarf pixels
    export PHOENIX_ALLOW_EXTERNAL_RESOURCES=false           # no fonts, pixels, WASM downloads
    export PHOENIX_DISABLE_AGENT_ASSISTANT=true             # /chat agent
    export PHOENIX_AGENTS_DISABLE_BASH=true
    export PHOENIX_AGENTS_DISABLE_WEB_ACCESS=true
    export PHOENIX_AGENTS_DISABLE_GITHUB=true
    export PHOENIX_ENABLE_MCP_SERVER=false                  # /mcp
    export PHOENIX_LOG_MIGRATIONS=false                     # else ~3000 lines of SQL per start
    exec "$VENV/bin/python" -c "$LAUNCHER" serve
}

case ${1:-} in
    install) [[ $# -eq 1 ]] || usage; do_install ;;
    serve) shift; do_serve "$@" ;;
    *) usage ;;
esac
