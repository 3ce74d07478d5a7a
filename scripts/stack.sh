#!/usr/bin/env bash
# Runs Compose on the stack `make up` started (same project, files and port), e.g.
#   scripts/stack.sh ps
#   scripts/stack.sh logs --tail 50 airlock
#   scripts/stack.sh run --rm --no-deps airlock doctor
#   scripts/stack.sh run --rm --no-deps airlock images load /bundles/more.tar
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/compose-env.sh
source "$ROOT/scripts/compose-env.sh"
compose_detect
compose "$@"
