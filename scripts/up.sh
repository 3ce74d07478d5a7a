#!/usr/bin/env bash
# `make up`: one TLS-only DinD node with fresh certificates, reachable from this host over mTLS.
# Idempotent: a running node is left alone; certificates are kept while valid.
#
#   AIRLOCK_HOME=DIR            state folder (default: .airlock in the repository)
#   AIRLOCK_DIND_PORT=N         host port on 127.0.0.1 for the DinD's 2376 (default 23760)
#   AIRLOCK_DIND_PRIVILEGED=auto|1|0
#       auto (default) uses --privileged when this host allows it (CAP_SYS_RESOURCE in the
#       bounding set) and otherwise the capability set that works without it (DESIGN.md).
set -euo pipefail
shopt -s inherit_errexit # a failing step inside $(...) stops the build too

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOME_DIR=${AIRLOCK_HOME:-$ROOT/.airlock}
PORT=${AIRLOCK_DIND_PORT:-23760}
NAME=airlock-up-dind
NETWORK=airlock-up
VOLUME=airlock-up-docker
CERTS=$HOME_DIR/certs

say() { printf '[up %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

privileged_flags() {
	local mode=${AIRLOCK_DIND_PRIVILEGED:-auto}
	if [[ "$mode" == auto ]]; then
		# Bit 24 of CapBnd is CAP_SYS_RESOURCE, which --privileged needs.
		local bnd
		bnd=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
		if (((16#$bnd >> 24) & 1)); then mode=1; else mode=0; fi
	fi
	if [[ "$mode" == 1 ]]; then
		echo "--privileged"
	else
		echo "--cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --security-opt seccomp=unconfined"
	fi
}

say "certificates in $CERTS"
mkdir -p "$HOME_DIR"
(cd "$ROOT" && cargo run -q -p airlock -- certs init --out "$CERTS" --san "$NAME")

if [[ "$(docker inspect -f '{{.State.Running}}' "$NAME" 2>/dev/null)" != true ]]; then
	docker rm -f "$NAME" >/dev/null 2>&1 || true
	docker network inspect "$NETWORK" >/dev/null 2>&1 ||
		docker network create --label airlock.up=1 "$NETWORK" >/dev/null
	flags=$(privileged_flags)
	say "starting $NAME ($flags)"
	# shellcheck disable=SC2086 # flags is a list of words on purpose
	docker run -d --name "$NAME" --hostname "$NAME" --network "$NETWORK" --pull=never \
		--label airlock.up=1 $flags \
		-v "$CERTS/server:/certs/server:ro" -v "$VOLUME:/var/lib/docker" \
		-p "127.0.0.1:$PORT:2376" --restart unless-stopped \
		airlock/dind:dev --storage-driver=overlay2 >/dev/null
fi

export DOCKER_HOST=tcp://127.0.0.1:$PORT DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$CERTS/client
deadline=$((SECONDS + 60))
until docker version --format '{{.Server.Version}}' >/dev/null 2>&1; do
	if ((SECONDS > deadline)); then
		say "the DinD did not answer over mTLS within 60s; its log:"
		docker -H unix:///var/run/docker.sock logs --tail 40 "$NAME" >&2 || true
		exit 1
	fi
	sleep 0.5
done
say "DinD $(docker version --format '{{.Server.Version}}') is up, TLS only, client certificate required."
cat <<MSG

Reach it from this host:
  export DOCKER_HOST=$DOCKER_HOST DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$CERTS/client
  docker info

Certificates: $CERTS (the client key in client/ is the only key that opens the daemon).
Stop it with: make down
MSG
