#!/usr/bin/env bash
# Files benchmark: the files API against Docker's archive endpoint (what `docker cp` uses) on
# one real DinD over mTLS, in one run: upload and download of a 100 MiB tar into a volume, and
# a listing of 10k files. Prints figures; asserts nothing.
# See tests/e2e/src/bin/files_bench.rs for what is measured.
#
# Needs: a Docker daemon (scripts/dockerd.sh) and the images (images/build.sh dind testbox).
#
# Knobs (environment):
#   BENCH_PROFILE=release   cargo profile (`dev` builds faster, measures slower)
#   BENCH_ITERATIONS=3      rounds (API and direct interleaved)
#   BENCH_MEGABYTES=100     size of the tar
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROFILE=${BENCH_PROFILE:-release}
ITERATIONS=${BENCH_ITERATIONS:-3}
MEGABYTES=${BENCH_MEGABYTES:-100}

cd "$ROOT"
docker info >/dev/null 2>&1 || { echo "no Docker daemon: run scripts/dockerd.sh" >&2; exit 2; }
for image in airlock/dind:dev airlock/testbox:dev; do
    docker image inspect "$image" >/dev/null 2>&1 \
        || { echo "missing image $image: run images/build.sh dind testbox" >&2; exit 2; }
done
echo "profile=$PROFILE iterations=$ITERATIONS megabytes=$MEGABYTES cpus=$(nproc) load=$(cut -d' ' -f1-3 /proc/loadavg)"
exec cargo run --quiet --profile "$PROFILE" -p e2e --bin files_bench -- \
    --iterations "$ITERATIONS" --megabytes "$MEGABYTES"
