#!/usr/bin/env bash
# `make down`: stops and removes the stack `make up` started (same project and files), keeping
# its volumes: the data, the certificates and the node's images.
# `make down-volumes` (AIRLOCK_DOWN_VOLUMES=1) also removes the volumes, the copied admin
# credentials and the compose state, leaving nothing behind.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/compose-env.sh
source "$ROOT/scripts/compose-env.sh"
compose_detect
if [[ "${AIRLOCK_DOWN_VOLUMES:-0}" == 1 ]]; then
	compose down --volumes --remove-orphans --timeout 20
	rm -f "$ADMIN_FILE" "$STATE"
	echo "stack $PROJECT removed with its volumes"
else
	compose down --remove-orphans --timeout 20
	echo "stack $PROJECT stopped; volumes kept (make down-volumes wipes them)"
fi
