#!/usr/bin/env bash
# Warm pool benchmark: claims from a pool of the real `airlock serve` against cold creates of
# the same controller, on one real DinD over mTLS, in one run. Prints figures; asserts nothing.
# See tests/e2e/src/bin/pool_bench.rs for what is measured.
#
# Needs: a Docker daemon (scripts/dockerd.sh) and the images (images/build.sh dind testbox).
#
# Knobs (environment):
#   BENCH_PROFILE=release   cargo profile for both binaries (`dev` builds faster, measures slower)
#   BENCH_SIZE=10           the pool's size
#   BENCH_ITERATIONS=20     sequential warm and cold creates each (interleaved)
#   BENCH_BURST=50          concurrent creates in the burst
#   BENCH_SUSTAIN_S=20      seconds of sustained sequential creates
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROFILE=${BENCH_PROFILE:-release}
SIZE=${BENCH_SIZE:-10}
ITERATIONS=${BENCH_ITERATIONS:-20}
BURST=${BENCH_BURST:-50}
SUSTAIN_S=${BENCH_SUSTAIN_S:-20}

cd "$ROOT"
docker info >/dev/null 2>&1 || { echo "no Docker daemon: run scripts/dockerd.sh" >&2; exit 2; }
for image in airlock/dind:dev airlock/testbox:dev; do
    docker image inspect "$image" >/dev/null 2>&1 \
        || { echo "missing image $image: run images/build.sh dind testbox" >&2; exit 2; }
done

json=$(cargo build --profile "$PROFILE" -p airlock --bin airlock -p e2e --bin pool_bench \
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
BENCH=$(exe pool_bench)
echo "profile=$PROFILE size=$SIZE iterations=$ITERATIONS burst=$BURST sustain=${SUSTAIN_S}s cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
exec "$BENCH" --airlock "$AIRLOCK" --size "$SIZE" --iterations "$ITERATIONS" --burst "$BURST" \
    --sustain-s "$SUSTAIN_S"
