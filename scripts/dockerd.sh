#!/usr/bin/env bash
# Makes sure a Docker daemon answers on the default socket. When none does, starts Debian's
# dockerd with its own data-root and exec-root (never `--bridge none`: that deletes the host's
# docker0) and waits for it with a deadline. Fails loudly when Docker cannot run: the e2e tests
# are never skipped.
#
#   scripts/dockerd.sh            start if needed
#   AIRLOCK_DOCKERD_ROOT=DIR      data-root (default /var/lib/airlock-ci/docker)
set -euo pipefail

DATA_ROOT=${AIRLOCK_DOCKERD_ROOT:-/var/lib/airlock-ci/docker}
EXEC_ROOT=${AIRLOCK_DOCKERD_EXEC_ROOT:-/run/airlock-ci/exec}
LOG=${AIRLOCK_DOCKERD_LOG:-/var/log/airlock-ci-dockerd.log}

if docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
	echo "dockerd: a daemon already answers ($(docker version --format '{{.Server.Version}}'))"
	exit 0
fi
command -v dockerd >/dev/null || {
	echo "dockerd: not installed (apt-get install docker.io)" >&2
	exit 1
}
mkdir -p "$DATA_ROOT" "$EXEC_ROOT" "$(dirname "$LOG")"
echo "dockerd: starting (data-root $DATA_ROOT, log $LOG)"
nohup dockerd --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
	--pidfile "$EXEC_ROOT/dockerd.pid" -H unix:///var/run/docker.sock >"$LOG" 2>&1 &
deadline=$((SECONDS + 60))
until docker version --format '{{.Server.Version}}' >/dev/null 2>&1; do
	if ((SECONDS > deadline)) || ! kill -0 $! 2>/dev/null; then
		echo "dockerd: did not become ready; last log lines:" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
	sleep 0.5
done
echo "dockerd: ready ($(docker version --format '{{.Server.Version}}'))"
