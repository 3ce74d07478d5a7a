#!/usr/bin/env bash
# `make down`: stops and removes what `make up` started. Keeps the certificates and, unless
# AIRLOCK_DOWN_VOLUMES=1, the DinD's image store.
set -euo pipefail
docker rm -f airlock-up-dind >/dev/null 2>&1 && echo "removed airlock-up-dind" || echo "airlock-up-dind was not running"
docker network rm airlock-up >/dev/null 2>&1 || true
if [[ "${AIRLOCK_DOWN_VOLUMES:-0}" == 1 ]]; then
	docker volume rm airlock-up-docker >/dev/null 2>&1 || true
	echo "removed volume airlock-up-docker"
fi
