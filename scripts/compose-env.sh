# Sourced by scripts/up.sh and scripts/down.sh: where the stack's state lives and how to call
# Compose (v2 `docker compose` when present, else v1 `docker-compose`).
# shellcheck shell=bash

HOME_DIR=${AIRLOCK_HOME:-$ROOT/.airlock}
STATE=$HOME_DIR/compose.state
# The operator's settings: compose/.env.example, copied here by the first `make up`.
ENV_FILE=$HOME_DIR/.env

# load_env_file: exports each `AIRLOCK_*=value` (and RUST_LOG) line of $ENV_FILE that the
# environment does not already set, so a variable in the shell wins over the file. A value may
# be quoted ('…' or "…", taken as written); an unquoted one ends at ` #` (a trailing comment).
load_env_file() {
	[[ -r "$ENV_FILE" ]] || return 0
	local line key value
	while IFS= read -r line || [[ -n "$line" ]]; do
		[[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?((AIRLOCK_[A-Z0-9_]+)|RUST_LOG)=(.*)$ ]] || continue
		key=${BASH_REMATCH[2]}
		value=${BASH_REMATCH[4]}
		if [[ "$value" =~ ^\'([^\']*)\'[[:space:]]*(#.*)?$ || "$value" =~ ^\"([^\"]*)\"[[:space:]]*(#.*)?$ ]]; then
			value=${BASH_REMATCH[1]}
		else
			value=${value%%[[:space:]]#*}
			value=${value%"${value##*[![:space:]]}"}
		fi
		[[ -n "${!key+set}" ]] || export "$key=$value"
	done <"$ENV_FILE"
}
load_env_file
# A previous `make up` fixed the project, port and files; keep them unless overridden.
if [[ -r "$STATE" ]]; then
	# shellcheck source=/dev/null
	source "$STATE"
fi
PROJECT=${AIRLOCK_PROJECT:-${SAVED_PROJECT:-airlock}}
PORT=${AIRLOCK_PORT:-${SAVED_PORT:-8080}}
BIND=${AIRLOCK_BIND:-${SAVED_BIND:-127.0.0.1}}
# The API serves HTTPS with the stack's API certificate unless AIRLOCK_API_TLS=off (behind a
# reverse proxy): then the controller gets AIRLOCK_TLS_CERT/KEY set but empty, plain HTTP.
# Clients trust CA_FILE, the stack CA's certificate, copied out by `make up`. The choice is kept
# in compose.state like the port, so a later `make up` or scripts/stack.sh keeps it.
CA_FILE=$HOME_DIR/ca.pem
API_HOST=$BIND
case "$BIND" in
127.0.0.1 | 0.0.0.0) API_HOST=127.0.0.1 ;;
*) export AIRLOCK_API_SAN=${AIRLOCK_API_SAN:-$BIND} ;;
esac
case "${AIRLOCK_API_TLS:-${SAVED_API_TLS:-on}}" in
off | 0 | false)
	API_TLS=0
	export AIRLOCK_TLS_CERT= AIRLOCK_TLS_KEY=
	URL=http://$API_HOST:$PORT
	;;
*)
	API_TLS=1
	URL=https://$API_HOST:$PORT
	;;
esac
BUNDLES=$HOME_DIR/bundles
CONFIG_DIR=$HOME_DIR/config
# Host folders: the operator's directory, else an empty one in the state folder.
FOLDERS_DIR=${AIRLOCK_FOLDERS_HOST_ROOT:-$HOME_DIR/folders}
ADMIN_FILE=$HOME_DIR/initial-admin.json
FILES=(-f "$ROOT/compose/docker-compose.yml")
if [[ -n "${SAVED_FILES:-}" ]]; then
	read -r -a FILES <<<"$SAVED_FILES"
fi
COMPOSE_CMD=()
COMPOSE_KIND=

# Compose v1 talks TLS through python-requests, which these variables would misdirect.
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE

compose_detect() {
	if docker compose version >/dev/null 2>&1; then
		COMPOSE_CMD=(docker compose)
		COMPOSE_KIND="compose v2"
	elif command -v docker-compose >/dev/null; then
		COMPOSE_CMD=(docker-compose)
		COMPOSE_KIND="docker-compose $(docker-compose version --short 2>/dev/null || echo v1)"
	else
		echo "neither 'docker compose' nor 'docker-compose' is installed (apt-get install docker-compose)" >&2
		exit 1
	fi
}

compose() {
	AIRLOCK_BUNDLE_HOST_DIR=$BUNDLES AIRLOCK_CONFIG_HOST_DIR=$CONFIG_DIR AIRLOCK_PORT=$PORT AIRLOCK_BIND=$BIND \
		AIRLOCK_FOLDERS_HOST_ROOT=$FOLDERS_DIR \
		"${COMPOSE_CMD[@]}" -p "$PROJECT" "${FILES[@]}" "$@"
}

compose_save() {
	mkdir -p "$HOME_DIR"
	{
		printf 'SAVED_PROJECT=%q\n' "$PROJECT"
		printf 'SAVED_PORT=%q\n' "$PORT"
		printf 'SAVED_BIND=%q\n' "$BIND"
		printf 'SAVED_FILES=%q\n' "${FILES[*]}"
		if ((API_TLS)); then echo SAVED_API_TLS=on; else echo SAVED_API_TLS=off; fi
	} >"$STATE"
}
