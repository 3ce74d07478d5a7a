#!/usr/bin/env bash
# Inspected (terminated) egress against a plain CONNECT tunnel and direct TLS, in one run, on
# loopback only (127.0.0.0/8). See bench/egress-credentials/README.md.
#   BENCH_QUICK=1        smoke run: 2 s load step, 128 MiB stream, 200 idle connections
#   AIRLOCK_EGRESS_BIN   use this proxy binary instead of the release build
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
unset http_proxy https_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY
# Each idle connection holds a client socket, two proxy sockets and an upstream socket.
ulimit -n 65536 2>/dev/null || true
cargo build --release -p airlock-egress --bin airlock-egress --example credentials_bench
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
exec "$TARGET/release/examples/credentials_bench"
