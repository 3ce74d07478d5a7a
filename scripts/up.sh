#!/usr/bin/env bash
# `make up`: the whole single-host stack (compose/docker-compose.yml) from nothing, offline.
#
#   1. builds the images the stack runs, offline (images/build.sh; unchanged ones are skipped;
#      the agent image is `make images-agents`);
#   2. bundles the testbox and egress images into $AIRLOCK_HOME/bundles (`airlock images
#      bundle`), the folder the controller's start-up pre-pull and network plane load from
#      (the air-gapped path);
#   3. brings the stack up with Compose (v2 `docker compose` or v1 `docker-compose`), adding
#      the no-privileged override on hosts where `privileged: true` fails;
#   4. copies the first-boot admin credentials out of the data volume (0600);
#   5. runs one sandbox end to end through the egress proxy as a smoke test (a refused
#      request, then its line in the ledger);
#   6. prints the URL, where the credentials and the CA are, and curl examples.
# The API serves HTTPS with a certificate the `certs` service issues from the stack CA (names:
# localhost, 127.0.0.1, ::1, `airlock`, and AIRLOCK_API_SAN); the CA's certificate is copied to
# $AIRLOCK_HOME/ca.pem for clients (`curl --cacert`).
# Idempotent: a second run rebuilds nothing unchanged, keeps the volumes and the admin, and
# runs the smoke test again.
#
#   AIRLOCK_HOME=DIR            state folder (default: .airlock in the repository); its .env
#                               holds the operator's settings (from compose/.env.example)
#   AIRLOCK_PROJECT=NAME        Compose project name (default: airlock)
#   AIRLOCK_PORT=N              API port on $AIRLOCK_BIND (default 8080)
#   AIRLOCK_BIND=IP             API address on the host (default 127.0.0.1)
#   AIRLOCK_API_TLS=on|off      HTTPS on the API (default on); off: plain HTTP, for operators
#                               who terminate TLS in a reverse proxy in front of it (kept in
#                               compose.state, like the port: a later run keeps the choice)
#   AIRLOCK_API_SAN=NAME|IP     one more name in the API certificate (default: a non-loopback
#                               AIRLOCK_BIND)
#   AIRLOCK_IMAGES=LIST         allowed images (default: airlock/testbox:dev, pinned by import)
#   AIRLOCK_DIND_PRIVILEGED=auto|1|0
#       auto (default) keeps `privileged: true` when this host allows it (CAP_SYS_RESOURCE in
#       the bounding set) and otherwise adds compose/docker-compose.nopriv.yml.
#   AIRLOCK_COMPOSE_SEALED=1    also add compose/docker-compose.sealed.yml (tests)
#   AIRLOCK_SKIP_IMAGES=1       do not run images/build.sh (the images exist already)
#   AIRLOCK_EGRESS_DNS=LIST     the egress proxy's resolvers, IP[:PORT],... (default: this host's
#                               upstream nameservers; never Docker's embedded DNS)
#   AIRLOCK_POLICY_FILE=PATH    the operator's policy ceilings (JSON) on this host; copied to
#                               $AIRLOCK_HOME/config and read by the controller at start
#   AIRLOCK_UP_TIMEOUT=S        how long to wait for readiness (default 180)
set -euo pipefail
shopt -s inherit_errexit # a failing step inside $(...) stops the script too

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/compose-env.sh
source "$ROOT/scripts/compose-env.sh"
TIMEOUT=${AIRLOCK_UP_TIMEOUT:-180}
started=$(date +%s)

say() { printf '[up +%ss] %s\n' "$(($(date +%s) - started))" "$*"; }
die() {
	say "FAILED: $*" >&2
	compose ps >&2 || true
	compose logs --tail 30 >&2 || true
	exit 1
}

# settings_file: the first run writes the operator's settings file from compose/.env.example
# (every variable, commented out at its default); later runs read it (scripts/compose-env.sh).
settings_file() {
	if [[ -e "$ENV_FILE" ]]; then
		say "settings: $ENV_FILE"
		return
	fi
	mkdir -p "$HOME_DIR"
	chmod 700 "$HOME_DIR"
	install -m 0600 "$ROOT/compose/.env.example" "$ENV_FILE"
	say "settings: wrote $ENV_FILE from compose/.env.example (edit it and run make up again to change any)"
}

host_allows_privileged() {
	# Bit 24 of CapBnd is CAP_SYS_RESOURCE, which --privileged needs.
	local bnd
	bnd=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
	(((16#$bnd >> 24) & 1))
}

# bundle NAME IMAGE: saves IMAGE into the bundle folder as NAME.tar unless the bundle there
# already holds that image id. The testbox goes through the pre-pull; the egress proxy is
# loaded into the node by the controller's network plane (AIRLOCK_EGRESS_BUNDLE).
bundle() {
	local name=$1 image=$2 id bundle=$BUNDLES/$1.tar airlock_bin
	id=$(docker image inspect -f '{{.Id}}' "$image")
	if [[ -s "$bundle" && "$(cat "$BUNDLES/$name.id" 2>/dev/null)" == "$id" ]]; then
		say "bundle $bundle is current ($id)"
		return
	fi
	airlock_bin=$(controller_binary)
	say "bundling $image into $bundle"
	"$airlock_bin" images bundle --out "$bundle" "$image"
	echo "$id" >"$BUNDLES/$name.id"
}

# The controller runs as UID 65532 and reads the bundle folder through a read-only mount:
# archives must be readable by others (`docker save -o` writes 0600).
readable_bundles() {
	chmod a+rx "$BUNDLES"
	find "$BUNDLES" -maxdepth 1 -type f \( -name '*.tar' -o -name '*.tar.gz' -o -name '*.tgz' \
		-o -name SHA256SUMS \) -exec chmod a+r {} +
}

# controller_binary: the airlock binary inside the controller image (static; runs on the host).
controller_binary() {
	local image=${AIRLOCK_CONTROLLER_IMAGE:-airlock/controller:dev} container path=$HOME_DIR/bin/airlock
	mkdir -p "$HOME_DIR/bin"
	container=$(docker create "$image")
	docker cp "$container:/airlock" "$path" >/dev/null
	docker rm "$container" >/dev/null
	echo "$path"
}

# host_resolvers: this host's upstream nameservers, comma-separated, loopback ones left out
# (a stub such as systemd-resolved's 127.0.0.53 is unreachable from the node); the real
# upstreams of systemd-resolved are in /run/systemd/resolve/resolv.conf.
host_resolvers() {
	local file=/etc/resolv.conf
	[[ -r /run/systemd/resolve/resolv.conf ]] && file=/run/systemd/resolve/resolv.conf
	awk '$1 == "nameserver" && $2 !~ /^(127\.|::1$)/ { print $2 }' "$file" 2>/dev/null | paste -sd, -
}

# egress_dns: AIRLOCK_EGRESS_DNS for the controller, which hands it to the proxy.
egress_dns() {
	if [[ -z "${AIRLOCK_EGRESS_DNS:-}" ]]; then
		AIRLOCK_EGRESS_DNS=$(host_resolvers)
	fi
	if [[ -n "$AIRLOCK_EGRESS_DNS" ]]; then
		say "egress proxy resolvers: $AIRLOCK_EGRESS_DNS"
	else
		say "WARNING: no upstream nameserver found for the egress proxy: names will not resolve (set AIRLOCK_EGRESS_DNS)"
	fi
	export AIRLOCK_EGRESS_DNS
}

# policy_file: the operator's ceilings file goes into the config folder the controller mounts
# read-only at /etc/airlock; the controller reads it there.
policy_file() {
	mkdir -p "$CONFIG_DIR"
	chmod a+rx "$CONFIG_DIR"
	if [[ -n "${AIRLOCK_POLICY_FILE:-}" ]]; then
		[[ -r "$AIRLOCK_POLICY_FILE" ]] || die "AIRLOCK_POLICY_FILE=$AIRLOCK_POLICY_FILE is not readable"
		install -m 0644 "$AIRLOCK_POLICY_FILE" "$CONFIG_DIR/policy.json"
		say "policy ceilings: $AIRLOCK_POLICY_FILE (as /etc/airlock/policy.json)"
		export AIRLOCK_POLICY_FILE=/etc/airlock/policy.json
	fi
}

# fetch_ca: copies the stack CA's certificate (the API certificate's issuer) out of the
# controller, for every client of the HTTPS API.
fetch_ca() {
	local container deadline=$((SECONDS + 30))
	CURL_TLS=()
	((API_TLS)) || return 0
	container=$(compose ps -q airlock)
	until [[ -n "$container" ]] && docker cp "$container:/var/lib/airlock/certs/api/ca.pem" "$CA_FILE.partial" 2>/dev/null; do
		((SECONDS < deadline)) || die "no API certificate in the controller (/var/lib/airlock/certs/api/ca.pem)"
		sleep 1
		container=$(compose ps -q airlock)
	done
	chmod 644 "$CA_FILE.partial"
	mv "$CA_FILE.partial" "$CA_FILE"
	CURL_TLS=(--cacert "$CA_FILE")
	say "API CA: $CA_FILE"
}

wait_ready() {
	local deadline=$((SECONDS + TIMEOUT))
	until curl -fsS "${CURL_TLS[@]}" "$URL/readyz" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "the API at $URL did not become ready within ${TIMEOUT}s"
		sleep 1
	done
	say "API ready at $URL"
}

# fetch_admin: copies the first-boot credentials out of the data volume.
fetch_admin() {
	local container deadline=$((SECONDS + 30))
	container=$(compose ps -q airlock)
	until docker cp "$container:/var/lib/airlock/initial-admin.json" "$ADMIN_FILE.partial" 2>/dev/null; do
		((SECONDS < deadline)) || die "no /var/lib/airlock/initial-admin.json in the controller (an admin was configured some other way?)"
		sleep 1
	done
	chmod 600 "$ADMIN_FILE.partial"
	mv "$ADMIN_FILE.partial" "$ADMIN_FILE"
	TOKEN=$(jq -r .token "$ADMIN_FILE")
}

api() {
	local method=$1 path=$2
	shift 2
	curl -sS "${CURL_TLS[@]}" -X "$method" -H "Authorization: Bearer $TOKEN" \
		-H 'Content-Type: application/json' "$@" "$URL$path"
}

# smoke: waits for the pre-pull to have the testbox, runs one sandbox and waits for its exit.
smoke() {
	local deadline=$((SECONDS + TIMEOUT)) status created id ended code
	until status=$(api GET /v1/images | jq -r '.images[] | select(.image == "airlock/testbox:dev") | .status') &&
		[[ "$status" == ready || "$status" == present || -z "$status" ]]; do
		[[ "$status" != failed && "$status" != missing ]] || die "pre-pull: $(api GET /v1/images)"
		((SECONDS < deadline)) || die "the testbox image did not load within ${TIMEOUT}s"
		sleep 1
	done
	say "testbox image on the node (pre-pull: ${status:-not listed})"
	# The sandbox asks the egress proxy (its only way out, from HTTP_PROXY with its own
	# credential) for http://localhost/, which the proxy must refuse by name with a JSON 403;
	# the refusal must then show in the sandbox's ledger.
	# (busybox nc half-closes when its input ends; the proxy still answers.)
	local script='p=${HTTP_PROXY#http://}; auth=$(printf %s "${p%@*}" | base64 | tr -d "\\n"); hp=${p##*@}
printf "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\nProxy-Authorization: Basic %s\r\nConnection: close\r\n\r\n" "$auth" |
nc -w 10 "${hp%:*}" "${hp##*:}" >/tmp/reply; cat /tmp/reply; grep -q "\"error\"" /tmp/reply'
	created=$(api POST /v1/sandboxes -d "$(jq -n --arg s "$script" '{image:"airlock/testbox:dev",cmd:["sh","-c",$s],timeout_s:120}')")
	id=$(jq -r '.id // empty' <<<"$created")
	[[ -n "$id" ]] || die "create refused: $created"
	ended=$(api GET "/v1/sandboxes/$id/wait?timeout_s=120")
	code=$(jq -r '.exit_code' <<<"$ended")
	if [[ "$code" != 0 ]]; then
		api GET "/v1/sandboxes/$id/logs" --max-time 5 >&2 || true
		api DELETE "/v1/sandboxes/$id" -o /dev/null
		die "smoke sandbox $id did not get the proxy's refusal: $ended"
	fi
	local events
	until events=$(api GET "/v1/sandboxes/$id/egress") &&
		[[ "$(jq -r '[.items[] | select(.decision == "deny")] | length' <<<"$events")" -gt 0 ]]; do
		((SECONDS < deadline)) || die "the proxy's refusal never reached the ledger: $events"
		sleep 1
	done
	api DELETE "/v1/sandboxes/$id" -o /dev/null
	say "through the proxy: $(jq -c '.items[0] | {host, decision, reason}' <<<"$events")"
	say "smoke test passed: sandbox $id exited 0"
}

main() {
	compose_detect
	[[ "${AIRLOCK_SKIP_IMAGES:-0}" == 1 ]] || "$ROOT/images/build.sh" dind testbox egress probe controller
	mkdir -p "$HOME_DIR" "$BUNDLES" "$FOLDERS_DIR"
	chmod 700 "$HOME_DIR"
	settings_file
	bundle testbox airlock/testbox:dev
	bundle egress airlock/egress:dev
	readable_bundles
	local mode=${AIRLOCK_DIND_PRIVILEGED:-auto}
	if [[ "$mode" == auto ]]; then
		if host_allows_privileged; then mode=1; else mode=0; fi
	fi
	[[ "$mode" == 1 ]] || FILES+=(-f "$ROOT/compose/docker-compose.nopriv.yml")
	[[ "${AIRLOCK_COMPOSE_SEALED:-0}" != 1 ]] || FILES+=(-f "$ROOT/compose/docker-compose.sealed.yml")
	compose_save
	egress_dns
	policy_file
	export AIRLOCK_IMAGES=${AIRLOCK_IMAGES:-airlock/testbox:dev}
	say "compose up (project $PROJECT, ${COMPOSE_KIND})"
	compose up -d --remove-orphans
	fetch_ca
	wait_ready
	fetch_admin
	smoke
	local cacert= tls_note="plain HTTP (AIRLOCK_API_TLS=off): put TLS in front of it"
	if ((API_TLS)); then
		cacert="--cacert $CA_FILE "
		tls_note="HTTPS; clients trust the stack CA: $CA_FILE"
	fi
	cat <<MSG

Airlock is up: $URL  (took $(($(date +%s) - started))s)
API: $tls_note
Admin credentials: $ADMIN_FILE  (mode 0600; also in the data volume as initial-admin.json)
Try:
  curl ${cacert}$URL/healthz
  curl ${cacert}-H "Authorization: Bearer \$(jq -r .token $ADMIN_FILE)" $URL/v1/images
  curl ${cacert}-H "Authorization: Bearer \$(jq -r .token $ADMIN_FILE)" -H 'Content-Type: application/json' \\
       -d '{"image":"airlock/testbox:dev","cmd":["echo","hello"]}' $URL/v1/sandboxes
Stop with: make down    (make down-volumes also wipes the data)
MSG
}

main "$@"
