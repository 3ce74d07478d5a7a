#!/usr/bin/env bash
# Builds every Airlock image into the local Docker daemon, offline: no registry is contacted.
#
#   images/build.sh [IMAGE...]      IMAGE: dind testbox egress probe controller (default: all)
#
# Each image is labelled with the sha256 of its inputs (io.airlock.input-hash). An image whose
# inputs are unchanged is skipped, so a rerun costs seconds. The debootstrap rootfs behind the
# dind image is cached as a tarball under $AIRLOCK_IMAGE_CACHE, keyed by its own inputs, so a
# change to the entrypoint does not rerun debootstrap.
#
# Environment:
#   AIRLOCK_IMAGE_CACHE   cache folder (default: ${XDG_CACHE_HOME:-$HOME/.cache}/airlock/images)
#   AIRLOCK_IMAGE_TAG     tag for every image (default: dev)
#   AIRLOCK_DEBIAN_MIRROR Debian mirror for debootstrap (default: the first bookworm source in
#                         this machine's APT configuration)
set -euo pipefail
shopt -s inherit_errexit # a failing step inside $(...) stops the build too

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${AIRLOCK_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airlock/images}
TAG=${AIRLOCK_IMAGE_TAG:-dev}
TARGET=x86_64-unknown-linux-gnu
SUITE=bookworm
DIND_PACKAGES=docker.io,iptables,ca-certificates,busybox
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

# dind_rootfs: prints the path of a cached rootfs tarball, running debootstrap when missing.
dind_rootfs() {
	command -v debootstrap >/dev/null || {
		echo "debootstrap is not installed (apt-get install debootstrap)" >&2
		exit 1
	}
	local mirror key tarball work
	mirror=$(debian_mirror)
	key=$(hash_str "$SUITE minbase $DIND_PACKAGES $mirror")
	tarball="$CACHE/rootfs-dind-$key.tar"
	if [[ -s "$tarball" ]]; then
		say "dind rootfs cached: $tarball" >&2
		echo "$tarball"
		return
	fi
	begin "debootstrap --variant=minbase $SUITE (+ $DIND_PACKAGES)" >&2
	work=$(mktemp -d "$CACHE/rootfs.XXXXXX")
	trap 'rm -rf "$work"' RETURN
	if ! debootstrap --variant=minbase --include="$DIND_PACKAGES" "$SUITE" "$work/root" "$mirror" \
		>"$work/debootstrap.log" 2>&1; then
		tail -n 30 "$work/debootstrap.log" >&2
		echo "debootstrap failed (log above)" >&2
		exit 1
	fi
	rm -rf "$work/root"/var/cache/apt/archives/*.deb "$work/root"/var/lib/apt/lists/*
	tar -C "$work/root" -cf "$tarball.tmp" .
	mv "$tarball.tmp" "$tarball"
	done_step "debootstrap" >&2
	echo "$tarball"
}

build_dind() {
	local image="airlock/dind:$TAG" rootfs base hash
	rootfs=$(dind_rootfs)
	base="airlock/dind-base:$(basename "$rootfs" .tar | sed 's/^rootfs-dind-//')"
	hash=$(hash_str "$(basename "$rootfs") $(hash_of "$ROOT"/images/dind/*)")
	up_to_date "$image" "$hash" && return
	if ! docker image inspect "$base" >/dev/null 2>&1; then
		begin "docker import $base"
		docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			"$rootfs" "$base" >/dev/null
		done_step "import"
	fi
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
# client} owned by 65532: a fresh named volume mounted there copies that ownership, so the
# non-root `certs` init and controller can write them.
build_controller() {
	local image="airlock/controller:$TAG" path hash ctx
	path=$(static_binary airlock airlock)
	hash=$(hash_of "$path" "$ROOT/images/controller"/*)
	up_to_date "$image" "$hash" && return
	begin "build $image"
	ctx=$(mktemp -d "$CACHE/ctx.XXXXXX")
	mkdir -p "$ctx/rootfs/var/lib/airlock" "$ctx/rootfs/certs/ca" "$ctx/rootfs/certs/server" \
		"$ctx/rootfs/certs/client"
	cp "$path" "$ctx/airlock"
	cp "$ROOT/images/controller/Dockerfile" "$ctx/"
	docker build -q --label "$HASH_LABEL=$hash" -t "$image" "$ctx" >/dev/null
	rm -rf "$ctx"
	done_step "build $image"
}

main() {
	docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
		echo "no Docker daemon answers; start one first (see .ci/run)" >&2
		exit 1
	}
	local images=("$@")
	[[ ${#images[@]} -gt 0 ]] || images=(dind testbox egress probe controller)
	local all_start
	all_start=$(date +%s)
	for image in "${images[@]}"; do
		case "$image" in
		dind) build_dind ;;
		testbox) build_testbox ;;
		egress) build_scratch egress airlock-egress airlock-egress ;;
		probe) build_scratch probe airlock-probe airlock-probe ;;
		controller) build_controller ;;
		*)
			echo "unknown image $image (known: dind testbox egress probe controller)" >&2
			exit 2
			;;
		esac
	done
	say "all images ready in $(($(date +%s) - all_start))s:"
	docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^  airlock/' | grep -v dind-base || true
}

main "$@"
