#!/usr/bin/env bash
# Builds every Airlock image into the local Docker daemon, offline: no registry is contacted.
#
#   images/build.sh [IMAGE...]      IMAGE: dind testbox egress probe init controller agent (default: all)
#
# Each image is labelled with the sha256 of its inputs (io.airlock.input-hash). An image whose
# inputs are unchanged is skipped, so a rerun costs seconds. The debootstrap rootfs behind the
# dind and agent images is cached as a tarball under $AIRLOCK_IMAGE_CACHE, keyed by its own
# inputs, so a change to the entrypoint does not rerun debootstrap. The agent image's npm
# packages (images/agent/package-lock.json) are installed on the host, where the registry is
# reachable, and cached as a tarball keyed by the lockfile: nothing inside `docker build` needs
# a network.
#
# Environment:
#   AIRLOCK_IMAGE_CACHE   cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/airlock/images)
#   AIRLOCK_IMAGE_TAG     tag for every image (default: dev)
#   AIRLOCK_DEBIAN_MIRROR Debian mirror for debootstrap (default: the first bookworm source in
#                         this machine's APT configuration)
#   npm's own settings (registry, proxy, ~/.npmrc) apply to the agent image's `npm ci`.
set -euo pipefail
shopt -s inherit_errexit # a failing step inside $(...) stops the build too

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${AIRLOCK_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/images}
TAG=${AIRLOCK_IMAGE_TAG:-dev}
TARGET=x86_64-unknown-linux-gnu
SUITE=bookworm
DIND_PACKAGES=docker.io,iptables,ca-certificates,busybox
# What the agent CLIs shell out to, plus Debian's node and npm for the repositories they work on.
# python3-requests and python3-httpx are the two HTTP clients agent-written scripts reach for.
# Debian's npm depends on virtual packages, so apt-get installs these (see rootfs).
AGENT_PACKAGES=git,curl,ca-certificates,python3,python3-requests,python3-httpx,nodejs,npm
AGENT_PACKAGES+=,ripgrep,jq,less,openssh-client
# The platform npm installs optional (native) dependencies for: the image's, not the host's, so
# the Codex binary is the x86_64 Linux one wherever this runs.
AGENT_NPM_PLATFORM=(--os=linux --cpu=x64 --libc=glibc)
HASH_LABEL=io.airlock.input-hash
export DOCKER_BUILDKIT=0 # the classic builder is the one every daemon here has

mkdir -p "$CACHE"
step_start=0
say() { printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
begin() { step_start=$(date +%s); say "$*"; }
done_step() { say "$1 done in $(($(date +%s) - step_start))s"; }

hash_of() { sha256sum "$@" | sha256sum | cut -c1-16; }
hash_str() { printf '%s' "$*" | sha256sum | cut -c1-16; }

current_hash() {
	docker image inspect --format "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$1" 2>/dev/null || true
}

# up_to_date IMAGE HASH: true when IMAGE exists with that input hash.
up_to_date() {
	if [[ "$(current_hash "$1")" == "$2" ]]; then
		say "$1 is up to date (inputs $2)"
		return 0
	fi
	return 1
}

debian_mirror() {
	if [[ -n "${AIRLOCK_DEBIAN_MIRROR:-}" ]]; then
		echo "$AIRLOCK_DEBIAN_MIRROR"
		return
	fi
	local uri
	uri=$(awk '/^URIs:/ { u = $2 } /^Suites:/ && u != "" && / bookworm( |$)/ { print u; exit }' \
		/etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	if [[ -z "$uri" ]]; then
		uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
	fi
	[[ -n "$uri" ]] || {
		echo "no bookworm APT source found; set AIRLOCK_DEBIAN_MIRROR" >&2
		exit 1
	}
	echo "$uri"
}

# rootfs_tarball NAME PACKAGES [apt]: the cache path of a debootstrap rootfs, keyed by everything
# that decides its content (suite, variant, packages, installer, mirror). Computing it runs
# nothing, so an up-to-date image is recognised without the tarball.
rootfs_tarball() {
	local name=$1 packages=$2 installer=${3:-} mirror key
	mirror=$(debian_mirror)
	# The apt recipe's own text is part of the key: editing chroot_install rebuilds the rootfs.
	[[ "$installer" != apt ]] || installer="apt:$(declare -f chroot_install | sha256sum | cut -c1-16)"
	key=$(hash_str "$SUITE minbase $packages $mirror${installer:+ $installer}")
	echo "$CACHE/rootfs-$name-$key.tar"
}

# rootfs NAME PACKAGES [apt]: prints the path of a cached rootfs tarball, running debootstrap when
# missing. debootstrap --include resolves Depends only, never Recommends, which keeps the rootfs
# lean, but it ignores virtual packages (Provides); with `apt`, a bare minbase is bootstrapped and
# apt-get installs PACKAGES inside it, still without Recommends.
rootfs() {
	command -v debootstrap >/dev/null || {
		echo "debootstrap is not installed (apt-get install debootstrap)" >&2
		exit 1
	}
	local name=$1 packages=$2 installer=${3:-} mirror tarball work include
	mirror=$(debian_mirror)
	tarball=$(rootfs_tarball "$name" "$packages" "$installer")
	if [[ -s "$tarball" ]]; then
		say "$name rootfs cached: $tarball" >&2
		echo "$tarball"
		return
	fi
	begin "debootstrap --variant=minbase $SUITE (+ $packages)" >&2
	work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
	# RETURN on success; EXIT (of the $(...) subshell this runs in) when a failure exits early.
	trap 'rm -rf "${work:-}"' RETURN EXIT
	[[ "$installer" == apt ]] || include=--include="$packages"
	if ! debootstrap --variant=minbase ${include:+"$include"} "$SUITE" "$work/root" "$mirror" \
		>"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log" >&2
		echo "debootstrap failed (log above)" >&2
		exit 1
	fi
	[[ "$installer" != apt ]] || chroot_install "$work/root" "$packages" "$work/apt.log"
	rm -rf "$work/root"/var/cache/apt/*.bin "$work/root"/var/cache/apt/archives/*.deb \
		"$work/root"/var/lib/apt/lists/*
	tar -C "$work/root" -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	done_step "debootstrap $name" >&2
	echo "$tarball"
}

# chroot_install ROOT PACKAGES LOG: apt-get install, without Recommends, inside a fresh minbase,
# with the host's network (the chroot shares it; debootstrap copied resolv.conf and wrote
# sources.list for the mirror). Documentation, man pages and translations are never unpacked,
# as in Debian's own -slim images: nobody reads them in a sandbox. Copyright files stay.
chroot_install() {
	local root=$1 packages=$2 log=$3
	cat >"$root/etc/dpkg/dpkg.cfg.d/airlock-slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	EOF
	# shellcheck disable=SC2046 # one word per package
	if ! { chroot "$root" apt-get update -q &&
		DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends \
			$(tr , ' ' <<<"$packages"); } >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		echo "apt-get install in the $SUITE chroot failed (log above)" >&2
		exit 1
	fi
	# The same paths from the minbase packages, which debootstrap unpacked before the excludes.
	find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/*
}

# import_base ROOTFS IMAGE: `docker import` of a rootfs tarball, once per tarball.
import_base() {
	local rootfs=$1 base=$2
	docker image inspect "$base" >/dev/null 2>&1 && return
	begin "docker import $base"
	docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		"$rootfs" "$base" >/dev/null
	done_step "import"
}

build_dind() {
	local image="airlock/dind:$TAG" rootfs base hash
	rootfs=$(rootfs dind "$DIND_PACKAGES")
	base="airlock/dind-base:$(basename "$rootfs" .tar | sed 's/^rootfs-dind-//')"
	hash=$(hash_str "$(basename "$rootfs") $(hash_of "$ROOT"/images/dind/*)")
	up_to_date "$image" "$hash" && return
	import_base "$rootfs" "$base"
	begin "build $image"
	docker build -q --build-arg "BASE=$base" --label "$HASH_LABEL=$hash" -t "$image" \
		"$ROOT/images/dind" >/dev/null
	done_step "build $image"
}

build_testbox() {
	local image="airlock/testbox:$TAG" busybox=/bin/busybox ctx hash
	[[ -x "$busybox" ]] && file_is_static "$busybox" || {
		echo "a static busybox is needed at /bin/busybox (apt-get install busybox-static)" >&2
		exit 1
	}
	hash=$(hash_of "$busybox" "$ROOT"/images/testbox/*)
	up_to_date "$image" "$hash" && return
	begin "build $image"
	ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
	mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
	chmod 1777 "$ctx/rootfs/tmp"
	cp "$busybox" "$ctx/rootfs/bin/busybox"
	local applet
	for applet in $("$busybox" --list); do
		[[ "$applet" == busybox ]] || ln -sf busybox "$ctx/rootfs/bin/$applet"
	done
	printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n' >"$ctx/rootfs/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
	cp "$ROOT/images/testbox/Dockerfile" "$ctx/"
	docker build -q --label "$HASH_LABEL=$hash" -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
	done_step "build $image"
}

file_is_static() {
	# A static ELF has no PT_INTERP program header.
	! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'
}

# static_binary PACKAGE BIN: builds a static glibc binary and prints its path.
static_binary() {
	local package=$1 bin=$2
	begin "cargo build --release $bin (static)" >&2
	(cd "$ROOT" && RUSTFLAGS="-C target-feature=+crt-static" \
		cargo build --release --locked --target "$TARGET" -p "$package" --bin "$bin" >&2)
	done_step "cargo build $bin" >&2
	local path="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release/$bin"
	file_is_static "$path" || {
		echo "$path is not static" >&2
		exit 1
	}
	echo "$path"
}

# build_scratch NAME PACKAGE BIN: a FROM-scratch image holding one static binary.
build_scratch() {
	local name=$1 package=$2 bin=$3 image="airlock/$1:$TAG" path hash ctx
	path=$(static_binary "$package" "$bin")
	hash=$(hash_of "$path" "$ROOT/images/$name"/*)
	up_to_date "$image" "$hash" && return
	begin "build $image"
	ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
	cp "$path" "$ctx/$bin"
	cp "$ROOT/images/$name"/* "$ctx/"
	docker build -q --label "$HASH_LABEL=$hash" -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
	done_step "build $image"
}

# build_controller: the controller on scratch, with empty /var/lib/airlock and /certs/{ca,server,
# client,api} owned by 65532: a fresh named volume mounted there copies that ownership, so the
# non-root `certs` init and controller can write them.
build_controller() {
	local image="airlock/controller:$TAG" path init hash ctx
	path=$(static_binary airlock airlock)
	# Every sandbox starts through airlock-init: the controller ships it to each node.
	init=$(static_binary airlock-init airlock-init)
	hash=$(hash_of "$path" "$init" "$ROOT/images/controller"/*)
	up_to_date "$image" "$hash" && return
	begin "build $image"
	ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
	mkdir -p "$ctx/rootfs/var/lib/airlock" "$ctx/rootfs/certs/ca" "$ctx/rootfs/certs/server" \
		"$ctx/rootfs/certs/client" "$ctx/rootfs/certs/api"
	cp "$path" "$ctx/airlock"
	cp "$init" "$ctx/airlock-init"
	cp "$ROOT/images/controller/Dockerfile" "$ctx/"
	docker build -q --label "$HASH_LABEL=$hash" -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
	done_step "build $image"
}

# agent_cli_tarball: the cache path of the agent CLIs' node_modules, keyed by the lockfile, the
# package.json beside it and the target platform.
agent_cli_tarball() {
	local inputs
	inputs=$(hash_of "$ROOT/images/agent/package.json" "$ROOT/images/agent/package-lock.json")
	echo "$CACHE/agent-cli-$(hash_str "$inputs ${AGENT_NPM_PLATFORM[*]}").tar"
}

# agent_cli: prints the path of a tarball holding node_modules for images/agent/package-lock.json,
# running `npm ci` on the host when missing. The build container has no network, so the registry
# is reached here; `npm ci` installs exactly the locked versions and checks each tarball against
# its `integrity`. --ignore-scripts: no locked package has an install script (no `hasInstallScript`
# in the lockfile), and one added by a version bump must not run unreviewed on the build host.
agent_cli() {
	command -v npm >/dev/null || {
		echo "npm is not installed (apt-get install npm)" >&2
		exit 1
	}
	local tarball work
	tarball=$(agent_cli_tarball)
	if [[ -s "$tarball" ]]; then
		say "agent CLIs cached: $tarball" >&2
		echo "$tarball"
		return
	fi
	begin "npm ci (images/agent/package-lock.json)" >&2
	work=$(mktemp -d "$CACHE/npm.XXXXXX")
	# RETURN on success; EXIT (of the $(...) subshell this runs in) when a failure exits early.
	trap 'rm -rf "${work:-}"' RETURN EXIT
	cp "$ROOT/images/agent/package.json" "$ROOT/images/agent/package-lock.json" "$work/"
	if ! (cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --include=optional \
		"${AGENT_NPM_PLATFORM[@]}" --cache "$CACHE/npm-cache" >npm.log 2>&1); then
		tail -n 30 "$work/npm.log" >&2
		echo "npm ci failed (log above)" >&2
		exit 1
	fi
	agent_cli_check "$work"
	# Owned by root in the image: the agent (UID 1000) runs the CLIs but cannot change them.
	tar -C "$work" --owner=0 --group=0 --numeric-owner --sort=name \
		-cf "$tarball.tmp" package.json package-lock.json node_modules
	mv "$tarball.tmp" "$tarball"
	done_step "npm ci" >&2
	echo "$tarball"
}

# agent_cli_check DIR: both entry points exist, and Codex's native binary is the x86_64 Linux one
# (its launcher picks the binary by platform at run time and fails when it is missing).
agent_cli_check() {
	local dir=$1 bin
	for bin in claude codex; do
		[[ -e "$dir/node_modules/.bin/$bin" ]] || {
			echo "npm ci installed no $bin entry point" >&2
			exit 1
		}
	done
	bin="$dir/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/bin/codex"
	if [[ ! -x "$bin" ]] || ! LC_ALL=C readelf -h "$bin" | grep 'Machine:.*X86-64' >/dev/null; then
		echo "the x86_64 Linux codex binary is missing: $bin" >&2
		exit 1
	fi
}

# The smoke test every new agent image must pass before it gets its tag: the way a sandbox runs
# it (non-root, read-only root, tmpfs home and /tmp, no network).
AGENT_CHECK='claude --version && codex --version && git --version && node --version'
AGENT_CHECK+=' && npm --version && python3 -c "import requests, httpx"'
AGENT_CHECK+=' && rg --version && jq --version'

# build_agent: Debian bookworm with the agent CLIs. The image is built untagged, verified, then
# tagged, so a failed check never leaves an image that a rerun would take as up to date.
build_agent() {
	local image="airlock/agent:$TAG" rootfs cli base hash ctx id
	rootfs=$(rootfs_tarball agent "$AGENT_PACKAGES" apt)
	cli=$(agent_cli_tarball)
	hash=$(hash_of "$ROOT/images/agent/Dockerfile")
	hash=$(hash_str "$(basename "$rootfs") $(basename "$cli") $hash")
	up_to_date "$image" "$hash" && return
	rootfs=$(rootfs agent "$AGENT_PACKAGES" apt)
	cli=$(agent_cli)
	base="airlock/agent-base:$(basename "$rootfs" .tar | sed 's/^rootfs-agent-//')"
	import_base "$rootfs" "$base"
	begin "build $image"
	ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
	cp "$ROOT/images/agent/Dockerfile" "$ctx/"
	# A hard link, not a copy: the tarball is hundreds of MB and the context lives beside it.
	ln "$cli" "$ctx/agent-cli.tar" 2>/dev/null || cp "$cli" "$ctx/agent-cli.tar"
	id=$(docker build -q --build-arg "BASE=$base" --label "$HASH_LABEL=$hash" "$ctx")
	rm -rf "$ctx"
	done_step "build $image"
	verify_agent "$id" "$image"
}

# verify_agent ID IMAGE: runs AGENT_CHECK in the image ID, then tags it IMAGE.
verify_agent() {
	local id=$1 image=$2
	begin "verify $image"
	if ! docker run --rm --network none --read-only --user 1000:1000 \
		--tmpfs /home/agent:uid=1000,gid=1000 --tmpfs /tmp "$id" sh -c "$AGENT_CHECK" >&2; then
		# Only an untagged result is removed: an identical build may already carry another tag.
		[[ "$(docker image inspect -f '{{len .RepoTags}}' "$id")" != 0 ]] ||
			docker image rm "$id" >/dev/null 2>&1 || true
		echo "$image failed its check; not tagged" >&2
		exit 1
	fi
	docker tag "$id" "$image"
	done_step "verify $image"
}

main() {
	docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
		echo "no Docker daemon answers; start one first (see .ci/run)" >&2
		exit 1
	}
	local images=("$@")
	[[ ${#images[@]} -gt 0 ]] || images=(dind testbox egress probe init controller agent)
	local all_start
	all_start=$(date +%s)
	for image in "${images[@]}"; do
		case "$image" in
		dind) build_dind ;;
		testbox) build_testbox ;;
		egress) build_scratch egress airlock-egress airlock-egress ;;
		probe) build_scratch probe airlock-probe airlock-probe ;;
		init) build_scratch init airlock-init airlock-init ;;
		controller) build_controller ;;
		agent) build_agent ;;
		*)
			echo "unknown image $image (known: dind testbox egress probe init controller agent)" >&2
			exit 2
			;;
		esac
	done
	say "all images ready in $(($(date +%s) - all_start))s:"
	# The CLI trims leading blanks from --format output, so the indent is added afterwards.
	docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^airlock/' |
		grep -v -- '-base:' | sed 's/^/  /' || true
}

main "$@"
