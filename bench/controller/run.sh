#!/usr/bin/env bash
# Controller benchmark: the airlock API against the same Docker requests sent directly with
# bollard, on one real DinD over mTLS, in one run. Prints figures; asserts nothing.
# See tests/e2e/src/bin/controller_bench.rs for what is measured.
#
# Needs: a Docker daemon (scripts/dockerd.sh) and the images (images/build.sh dind testbox).
#
# Knobs (environment):
#   BENCH_PROFILE=release   cargo profile for both binaries (`dev` builds faster, measures slower)
#   BENCH_ITERATIONS=20     sequential API and direct runs each (interleaved)
#   BENCH_CONCURRENT=50     concurrent creates through the API
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROFILE=${BENCH_PROFILE:-release}
ITERATIONS=${BENCH_ITERATIONS:-20}
CONCURRENT=${BENCH_CONCURRENT:-50}

cd "$ROOT"
docker info >/dev/null 2>&1 || { echo "no Docker daemon: run scripts/dockerd.sh" >&2; exit 2; }
for image in airlock/dind:dev airlock/testbox:dev; do
    docker image inspect "$image" >/dev/null 2>&1 \
        || { echo "missing image $image: run images/build.sh dind testbox" >&2; exit 2; }
done

json=$(cargo build --profile "$PROFILE" -p airlock --bin airlock -p e2e --bin controller_bench \
    --message-format=json-render-diagnostics)
exe() {
    printf '%s\n' "$json" | python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name and msg.get("executable"):
        print(msg["executable"])
' "$1" | tail -n1
}
AIRLOCK=$(exe airlock)
BENCH=$(exe controller_bench)
echo "profile=$PROFILE iterations=$ITERATIONS concurrent=$CONCURRENT cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
exec "$BENCH" --airlock "$AIRLOCK" --iterations "$ITERATIONS" --concurrent "$CONCURRENT"
