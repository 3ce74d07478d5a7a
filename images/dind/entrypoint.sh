#!/bin/sh
# airlock-dind-entrypoint: the one entrypoint of the Airlock DinD image, for both build paths
# (the offline debootstrap image and the production `FROM docker:27-dind` image).
#
# 1. Makes cgroups writable for the nested dockerd (cgroup v1: remount each hierarchy rw;
#    cgroup v2: move ourselves into a child group so controllers can be delegated).
# 2. Installs INPUT rules, IPv4 and IPv6, that drop every NEW connection arriving from a nested
#    bridge (br-+, docker0). Without them a sandbox on an internal network can still reach every
#    port of this namespace, dockerd's 2376 included (DESIGN.md, "Topology on one host").
# 3. Execs dockerd listening with TLS only (never 2375), requiring a client certificate.
#
# Extra dockerd flags are taken from the command line, e.g. `--storage-driver=overlay2 --mtu=1450`.
set -eu

log() { echo "airlock-dind: $*" >&2; }
die() { log "$*"; exit 64; }

TLS_DIR="${AIRLOCK_DIND_TLS_DIR:-/certs/server}"
TLS_PORT="${AIRLOCK_DIND_TLS_PORT:-2376}"
for f in ca.pem cert.pem key.pem; do
	[ -r "$TLS_DIR/$f" ] || die "missing $TLS_DIR/$f: mount the server certificates from 'airlock certs init' (set AIRLOCK_DIND_TLS_DIR to change the folder)"
done

mounted_ro() {
	# Field 4 of /proc/mounts holds the options; match the mount point exactly.
	awk -v m="$1" '$2 == m { split($4, o, ","); ro = (o[1] == "ro") } END { exit !ro }' /proc/mounts
}

setup_cgroups() {
	if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
		# cgroup v2: processes may not live in a group that delegates controllers, so move
		# everything into /init first (as moby's hack/dind does).
		if mounted_ro /sys/fs/cgroup; then mount -o remount,rw /sys/fs/cgroup; fi
		mkdir -p /sys/fs/cgroup/init
		xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
		sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers \
			> /sys/fs/cgroup/cgroup.subtree_control || log "could not delegate cgroup v2 controllers"
		return
	fi
	# cgroup v1: without --privileged the hierarchies are mounted read-only.
	if mounted_ro /sys/fs/cgroup; then mount -o remount,rw /sys/fs/cgroup; fi
	for dir in /sys/fs/cgroup/*; do
		[ -d "$dir" ] && [ ! -L "$dir" ] || continue
		if mounted_ro "$dir"; then
			mount -o remount,bind,rw "$dir" || die "cannot remount $dir read-write (needs CAP_SYS_ADMIN)"
		fi
	done
}

setup_sysctls() {
	# dockerd writes net.ipv4.ip_forward; /proc/sys is read-only without --privileged.
	if mounted_ro /proc/sys; then mount -o remount,rw /proc/sys 2>/dev/null || log "/proc/sys stays read-only"; fi
}

install_input_rules() {
	# $1: iptables or ip6tables. The chain is flushed and rebuilt, so a restart is idempotent.
	ipt="$1"
	"$ipt" -w -N AIRLOCK-INPUT 2>/dev/null || "$ipt" -w -F AIRLOCK-INPUT
	"$ipt" -w -A AIRLOCK-INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
	"$ipt" -w -A AIRLOCK-INPUT -i br-+ -j DROP
	"$ipt" -w -A AIRLOCK-INPUT -i docker0 -j DROP
	"$ipt" -w -C INPUT -j AIRLOCK-INPUT 2>/dev/null || "$ipt" -w -I INPUT 1 -j AIRLOCK-INPUT
	log "$ipt: INPUT drops new connections from br-+ and docker0"
}

setup_cgroups
setup_sysctls
install_input_rules iptables || die "cannot install the IPv4 INPUT rules (needs CAP_NET_ADMIN and iptables)"
if [ -e /proc/net/if_inet6 ]; then
	install_input_rules ip6tables || die "IPv6 is enabled but the IPv6 INPUT rules cannot be installed"
else
	log "IPv6 is disabled in this namespace; no IPv6 rules needed"
fi

# A restarted container keeps /var/run from its previous life. Stale pid files make dockerd
# refuse to start ("pid file found") and its containerd wait forever.
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid

log "starting dockerd with TLS on :$TLS_PORT"
exec dockerd \
	--host="tcp://0.0.0.0:$TLS_PORT" \
	--host=unix:///var/run/docker.sock \
	--tlsverify \
	--tlscacert="$TLS_DIR/ca.pem" \
	--tlscert="$TLS_DIR/cert.pem" \
	--tlskey="$TLS_DIR/key.pem" \
	"$@"
