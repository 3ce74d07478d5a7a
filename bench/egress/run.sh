#!/usr/bin/env bash
# Egress benchmark: airlock-egress against squid, tinyproxy and a direct connection, in one
# run on this machine, over loopback only (127.0.0.0/8). See bench/egress/README.md.
#
# Knobs (environment):
#   BENCH_QUICK=1          smoke run: 2 s per wrk run, 1,000 tunnels, 64 MiB stream, 1 stream run
#   BENCH_SECONDS=10       seconds per wrk run
#   BENCH_ROUNDS=3         wrk rounds (1 in quick mode); each figure is the median round's
#   BENCH_CONNS="1 64 256" wrk connection counts (1 and 64 feed the target checks)
#   BENCH_TUNNELS=10000    idle CONNECT tunnels for the RSS measurement (capped by RLIMIT_NOFILE)
#   BENCH_STREAM_MIB=1024  size of the CONNECT stream
#   BENCH_STREAM_RUNS=5    CONNECT stream runs per peer; the median is reported
#   BENCH_PEERS="direct airlock-egress squid tinyproxy"
#   BENCH_TUNNEL_PEERS="airlock-egress squid tinyproxy"
#   BENCH_POLICY=1         run `cargo bench -p airlock-egress-policy` (0 skips: reported n/a)
#   AIRLOCK_EGRESS_BIN     use this binary instead of `cargo build --release -p airlock-egress`
#   BENCH_WAIT_IDLE=0      wait up to this many seconds for the 1-min load average to drop under
#                          1.0 before measuring (other work on the machine skews every figure)
#   BENCH_KEEP=1           keep the work directory (logs, configs) instead of deleting it
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY="$HERE/egressbench.py"
LUA="$HERE/proxy.lua"

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    SECS=${BENCH_SECONDS:-2}; ROUNDS=${BENCH_ROUNDS:-1}; TUNNELS=${BENCH_TUNNELS:-1000}
    STREAM_MIB=${BENCH_STREAM_MIB:-64}; STREAM_RUNS=${BENCH_STREAM_RUNS:-1}
else
    SECS=${BENCH_SECONDS:-10}; ROUNDS=${BENCH_ROUNDS:-3}; TUNNELS=${BENCH_TUNNELS:-10000}
    STREAM_MIB=${BENCH_STREAM_MIB:-1024}; STREAM_RUNS=${BENCH_STREAM_RUNS:-5}
fi
CONNS=${BENCH_CONNS:-"1 64 256"}
PEERS=${BENCH_PEERS:-"direct airlock-egress squid tinyproxy"}
TUNNEL_PEERS=${BENCH_TUNNEL_PEERS:-"airlock-egress squid tinyproxy"}
SMALL_BYTES=100

# Never let an inherited proxy variable reroute the direct runs or the readiness probes.
unset http_proxy https_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY

log() { printf '%s bench: %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- dependencies ---------------------------------------------------------------------------
install_deps() {
    local missing=() pkg cmd
    for pair in nginx:nginx-light squid:squid tinyproxy:tinyproxy wrk:wrk curl:curl python3:python3; do
        cmd=${pair%%:*}; pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || [[ -x /usr/sbin/$cmd ]] || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root or install them"
    log "installing ${missing[*]}"
    apt-get update -qq
    # A policy-rc.d that answers 101 keeps the packages from starting their system services
    # (nginx on :80, squid on :3128, ...): this benchmark runs its own instances only.
    local rcd=/usr/sbin/policy-rc.d ours=0 rc=0
    if [[ ! -e $rcd ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$rcd" && chmod 755 "$rcd" && ours=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || rc=$?
    ((ours == 0)) || rm -f "$rcd"
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}
export PATH="$PATH:/usr/sbin:/sbin"

# --- process bookkeeping --------------------------------------------------------------------
declare -A PID=()
WORK=""
cleanup() {
    local rc=$? name
    for name in "${!PID[@]}"; do stop "$name"; done
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        rm -f "$WORK/www/big"
        if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop NAME: SIGTERM, then SIGKILL if it has not exited within 5 s.
stop() {
    local name=$1 pid=${PID[$1]:-} i
    [[ -n "$pid" ]] || return 0
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$name]"
}

# wait_until DESC SECONDS CMD...: polls CMD every 0.1 s until it succeeds or the deadline passes.
wait_until() {
    local desc=$1 deadline=$((SECONDS + $2)); shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            log "$desc not ready in time (see logs in $WORK)"
            return 1
        fi
        sleep 0.1
    done
}

record() { echo "$1 $2 $3" >>"$WORK/results"; }

# --- upstream and peers ---------------------------------------------------------------------
start_nginx() {
    mkdir -p "$WORK/nginx" "$WORK/www"
    head -c "$SMALL_BYTES" /dev/zero | tr '\0' 'a' >"$WORK/www/small"
    # A sparse file: reads come back as zeros without touching the disk.
    truncate -s "${STREAM_MIB}M" "$WORK/www/big"
    cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server {
        listen 127.0.0.1:$UP_PORT;
        root $WORK/www;
        location / { }
    }
}
EOF
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr" &
    PID[nginx]=$!
    wait_until nginx 20 curl -sf -o /dev/null "http://127.0.0.1:$UP_PORT/small" || die "no upstream"
    # One untimed read puts the big file in the page cache, so no peer pays for the first read.
    curl -sf -o /dev/null --max-time 300 "http://127.0.0.1:$UP_PORT/big" || die "no big file"
}

start_idle_upstream() {
    python3 "$PY" idle-upstream "$WORK/idle.port" 2>"$WORK/idle.log" &
    PID[idle]=$!
    wait_until idle-upstream 20 test -s "$WORK/idle.port" || die "no idle upstream"
    IDLE_PORT=$(cat "$WORK/idle.port")
}

port_of() {
    case $1 in
        airlock-egress) echo "$AIRLOCK_PORT" ;;
        squid) echo "$SQUID_PORT" ;;
        tinyproxy) echo "$TINY_PORT" ;;
    esac
}

start_airlock() {
    [[ -n "${AIRLOCK_BIN:-}" ]] || return 1
    printf '{"allow_ports":[%s,%s]}\n' "$UP_PORT" "$IDLE_PORT" >"$WORK/airlock-policy.json"
    # The upstream is on loopback, which the proxy refuses unless the operator allows the
    # exact address. DNS points at loopback: every target here is an IP literal.
    # JSON is the ledger's production format; like squid's access log it goes to a file.
    # Every client here is one loopback source standing for many sandboxes, so the per-source
    # caps (256 connections, 32 partial heads) are lifted as for squid, which has none.
    AIRLOCK_EGRESS_MAX_CONNECTIONS_PER_SOURCE=1000000 \
        AIRLOCK_EGRESS_MAX_PENDING_HEADS_PER_SOURCE=1000000 \
        LOG_FORMAT=json "$AIRLOCK_BIN" serve --listen "127.0.0.1:$AIRLOCK_PORT" --allow-cidr 127.0.0.1/32 \
        --policy "$WORK/airlock-policy.json" --dns 127.0.0.1:53 \
        2>>"$WORK/airlock-egress.log" &
    PID[airlock-egress]=$!
}

start_squid() {
    local d="$WORK/squid"
    mkdir -p "$d"
    # squid drops to the `proxy` user and must still write its logs here.
    chown proxy: "$d" 2>/dev/null || chmod 777 "$d"
    cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$SQUID_PORT
pid_filename $d/squid.pid
cache_log $d/cache.log
access_log stdio:$d/access.log
cache_store_log none
coredump_dir $d
cache deny all
max_filedescriptors $NOFILE
pinger_enable off
shutdown_lifetime 0 seconds
dns_nameservers 127.0.0.1
acl localnet src 127.0.0.0/8
acl bench_ports port $UP_PORT $IDLE_PORT
http_access deny !bench_ports
http_access allow localnet
http_access deny all
EOF
    squid -N -f "$d/squid.conf" >"$d/stderr" 2>&1 &
    PID[squid]=$!
}

start_tinyproxy() {
    local d="$WORK/tinyproxy"
    mkdir -p "$d"
    chown nobody: "$d" 2>/dev/null || chmod 777 "$d"
    cat >"$d/tinyproxy.conf" <<EOF
User nobody
Group nogroup
Port $TINY_PORT
Listen 127.0.0.1
Timeout 600
MaxClients $((TUNNELS + 1000))
LogFile "$d/tinyproxy.log"
LogLevel Info
PidFile "$d/tinyproxy.pid"
Allow 127.0.0.0/8
ConnectPort $UP_PORT
ConnectPort $IDLE_PORT
EOF
    tinyproxy -d -c "$d/tinyproxy.conf" >"$d/stderr" 2>&1 &
    PID[tinyproxy]=$!
}

start_peer() {
    local peer=$1 port
    case $peer in
        airlock-egress) start_airlock || return 1 ;;
        squid) start_squid ;;
        tinyproxy) start_tinyproxy ;;
    esac
    port=$(port_of "$peer")
    wait_until "$peer" 30 curl -sf -o /dev/null -x "http://127.0.0.1:$port" \
        "http://127.0.0.1:$UP_PORT/small"
}

# --- measurements ---------------------------------------------------------------------------
# wrk_run PEER CONNS: plain HTTP GET of the small file; appends wrk's RESULT line, plus the
# proxy's CPU time per request, to wrk-PEER-CONNS.results.
wrk_run() {
    local peer=$1 c=$2 threads=2 url target line out cpu0 cpu1 requests cpu
    ((c > 1)) || threads=1
    if [[ $peer == direct ]]; then
        url="http://127.0.0.1:$UP_PORT/" target=/small
    else
        url="http://127.0.0.1:$(port_of "$peer")/" target="http://127.0.0.1:$UP_PORT/small"
    fi
    out="$WORK/wrk-$peer-$c.txt"
    cpu0=$(cpu_ticks "$peer")
    timeout $((SECS + 60)) wrk -t"$threads" -c"$c" -d"${SECS}s" --timeout 5s --latency \
        -s "$LUA" "$url" -- "$target" "127.0.0.1:$UP_PORT" >>"$out" 2>&1 || true
    cpu1=$(cpu_ticks "$peer")
    line=$(grep '^RESULT' "$out" | tail -n 1 || true)
    [[ -n "$line" ]] || { log "$peer c=$c: wrk gave no result (see $out)"; return 0; }
    sed -i 's/^RESULT/DONE/' "$out"
    line=${line#RESULT }
    requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    if [[ -n "$cpu0" && -n "$cpu1" ]] && ((requests > 0)); then
        # CPU time the proxy spent per request: far less sensitive to other load on the
        # machine than requests per second.
        cpu=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$requests" \
            'BEGIN { printf "%.1f", t * 1e6 / hz / n }')
        line+=" cpu_us_per_req=$cpu"
    fi
    log "$peer c=$c: $line"
    echo "$line" >>"$WORK/wrk-$peer-$c.results"
}

# wrk_record PEER CONNS: records the round with the median requests/s (its latencies too, so
# that every figure in a row comes from the same run).
wrk_record() {
    local peer=$1 c=$2 file="$WORK/wrk-$1-$2.results" line kv
    [[ -s "$file" ]] || return 0
    line=$(sed 's/^rps=\([^ ]*\)/\1 &/' "$file" | sort -n -k1,1 \
        | awk '{ l[NR] = $0 } END { print l[int((NR + 1) / 2)] }' | cut -d' ' -f2-)
    for kv in $line; do
        case ${kv%%=*} in
            rps) record "$peer" "rps$c" "${kv#*=}" ;;
            p50_us) record "$peer" "p50_$c" "${kv#*=}" ;;
            p99_us) record "$peer" "p99_$c" "${kv#*=}" ;;
            non2xx) record "$peer" "non2xx$c" "${kv#*=}" ;;
            errors) record "$peer" "errors$c" "${kv#*=}" ;;
            cpu_us_per_req) record "$peer" "cpu$c" "${kv#*=}" ;;
        esac
    done
}

# cpu_ticks PEER: user+system CPU ticks of the proxy process (all its threads); empty for direct.
cpu_ticks() {
    local pid=${PID[$1]:-}
    [[ -n "$pid" && -r /proc/$pid/stat ]] || return 0
    # Fields after the ")" that closes the command name: utime and stime are the 12th and 13th.
    sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'
}

# stream_once PEER: fetches the big file once (through a CONNECT tunnel for proxies) and
# appends its MiB/s to stream-PEER. A short or non-200 transfer counts as no result.
stream_once() {
    local peer=$1 res code size speed args=()
    [[ $peer == direct ]] || args=(--proxytunnel -x "http://127.0.0.1:$(port_of "$peer")")
    res=$(curl -s "${args[@]}" --max-time 300 -o /dev/null \
        -w '%{http_code} %{size_download} %{speed_download}' \
        "http://127.0.0.1:$UP_PORT/big" 2>>"$WORK/curl-$peer.log" || true)
    read -r code size speed <<<"$res"
    if [[ $code != 200 || $size != $((STREAM_MIB * 1048576)) ]]; then
        log "$peer stream: bad transfer ($res)"
        return 0
    fi
    awk -v s="$speed" 'BEGIN { printf "%.1f\n", s / 1048576 }' >>"$WORK/stream-$peer"
}

# stream_record PEER: records the median of PEER's stream runs.
stream_record() {
    local peer=$1 median
    [[ -s "$WORK/stream-$peer" ]] || return 0
    median=$(sort -n "$WORK/stream-$peer" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    log "$peer stream ${STREAM_MIB} MiB: $(tr '\n' ' ' <"$WORK/stream-$peer")MiB/s (median $median)"
    record "$peer" connect_mibs "$median"
}

# tunnel_run PEER: RSS per idle CONNECT tunnel, on a freshly started proxy.
tunnel_run() {
    local peer=$1 out="$WORK/tunnels-$1.txt" line per opened
    timeout 600 python3 "$PY" tunnels --proxy "127.0.0.1:$(port_of "$peer")" \
        --target "127.0.0.1:$IDLE_PORT" --count "$TUNNELS_EFF" --pid "${PID[$peer]}" \
        --timeout 60 >"$out" 2>&1 || true
    line=$(grep '^RESULT' "$out" || true)
    [[ -n "$line" ]] || { log "$peer tunnels: no result (see $out)"; return 0; }
    log "$peer tunnels: ${line#RESULT }"
    per=$(sed -n 's/.*per_tunnel_kib=\([^ ]*\).*/\1/p' <<<"$line")
    opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' <<<"$line")
    if ((opened < TUNNELS_EFF * 99 / 100)); then
        log "$peer tunnels: only $opened of $TUNNELS_EFF opened; not reported"
        record "$peer" tunnel_detail "only $opened/$TUNNELS_EFF opened"
        return 0
    fi
    record "$peer" kib_per_tunnel "$per"
    record "$peer" tunnel_detail "${line#RESULT }"
}

# run_peers: every peer's load and stream steps, interleaved (for each step, every peer in
# turn), so that a change in background load over time falls on all peers alike.
run_peers() {
    local peer c i live=()
    for peer in $PEERS; do
        if [[ $peer == direct ]] || start_peer "$peer"; then
            live+=("$peer")
        else
            log "$peer: did not start; its row is n/a"
            stop "$peer"
        fi
    done
    for ((i = 0; i < ROUNDS; i++)); do
        for c in $CONNS; do
            for peer in "${live[@]}"; do wrk_run "$peer" "$c"; done
        done
    done
    for c in $CONNS; do
        for peer in "${live[@]}"; do wrk_record "$peer" "$c"; done
    done
    for ((i = 0; i < STREAM_RUNS; i++)); do
        for peer in "${live[@]}"; do stream_once "$peer"; done
    done
    for peer in "${live[@]}"; do
        stream_record "$peer"
        [[ $peer == direct ]] || stop "$peer"
    done
    # Each proxy starts afresh for its tunnel run, alone, so that memory kept from the load
    # steps does not hide the cost of a tunnel.
    for peer in "${live[@]}"; do
        [[ " $TUNNEL_PEERS " == *" $peer "* && $peer != direct ]] || continue
        start_peer "$peer" && tunnel_run "$peer"
        stop "$peer"
    done
}

# --- policy evaluation (criterion) ----------------------------------------------------------
policy_bench() {
    local out="$WORK/policy-bench.txt" figure
    if [[ "${BENCH_POLICY:-1}" != 1 ]]; then
        record - policy_ns "n/a (skipped: BENCH_POLICY=0)"
        return 0
    fi
    if [[ ! -f "$ROOT/egress/policy/benches/evaluate.rs" ]]; then
        record - policy_ns "n/a (egress/policy/benches/evaluate.rs does not exist)"
        return 0
    fi
    log "policy: cargo bench -p airlock-egress-policy (criterion)"
    (cd "$ROOT" && timeout 1800 cargo bench -p airlock-egress-policy --bench evaluate) \
        >"$out" 2>&1 || log "policy: cargo bench failed (see $out)"
    figure=$(python3 "$PY" criterion "$out")
    log "policy: slowest criterion estimate: $figure ns"
    record - policy_ns "$figure"
}

build_airlock() {
    if [[ -n "${AIRLOCK_EGRESS_BIN:-}" ]]; then
        AIRLOCK_BIN=$AIRLOCK_EGRESS_BIN
        [[ -x "$AIRLOCK_BIN" ]] || { log "$AIRLOCK_BIN is not executable; its row is n/a"; AIRLOCK_BIN=""; }
        return 0
    fi
    log "building airlock-egress (release)"
    if (cd "$ROOT" && timeout 1800 cargo build --release -p airlock-egress) >"$WORK/build.log" 2>&1; then
        # A private copy: a rebuild in the shared target dir must not swap the binary mid-run.
        cp "$ROOT/target/release/airlock-egress" "$WORK/airlock-egress"
        AIRLOCK_BIN="$WORK/airlock-egress"
    else
        log "airlock-egress build failed (see $WORK/build.log); its row is n/a"
        AIRLOCK_BIN=""
    fi
}

# wait_idle: the other figures are only comparable on a quiet machine; wait (bounded) for one.
wait_idle() {
    local deadline=$((SECONDS + ${BENCH_WAIT_IDLE:-0}))
    while ((SECONDS < deadline)); do
        awk '{ exit !($1 < 1.0) }' /proc/loadavg && return 0
        sleep 5
    done
    awk '{ exit !($1 < 1.0) }' /proc/loadavg || log "machine busy (loadavg $(cut -d' ' -f1-3 /proc/loadavg)): figures will be noisy"
}

main() {
    install_deps
    WORK=$(mktemp -d /tmp/airlock-egress-bench.XXXXXX)
    chmod 755 "$WORK"
    : >"$WORK/results"
    ulimit -n "$(ulimit -Hn)"
    NOFILE=$(ulimit -n)
    CLK_TCK=$(getconf CLK_TCK)
    # A proxy holds two sockets per tunnel, so the hard file limit bounds the tunnel count.
    TUNNELS_EFF=$TUNNELS
    if ((TUNNELS_EFF > (NOFILE - 256) / 2)); then
        TUNNELS_EFF=$(((NOFILE - 256) / 2))
        log "tunnels capped at $TUNNELS_EFF (asked $TUNNELS): RLIMIT_NOFILE hard limit is $NOFILE"
    fi

    build_airlock
    policy_bench

    wait_idle
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    read -r UP_PORT AIRLOCK_PORT SQUID_PORT TINY_PORT <<<"$(python3 "$PY" freeports 4)"
    start_nginx
    start_idle_upstream
    log "upstream 127.0.0.1:$UP_PORT, idle upstream 127.0.0.1:$IDLE_PORT, work dir $WORK"

    run_peers

    local versions
    versions="$(nginx -v 2>&1 | sed 's/.*\///'), squid $(squid -v | sed -n '1s/.*Version //p'),"
    versions+=" tinyproxy $(tinyproxy -v | awk '{ print $2 }'), airlock $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)"
    record - settings "${SECS}s per wrk run (median of $ROUNDS rounds), conns ($CONNS), ${STREAM_MIB} MiB stream x$STREAM_RUNS (median), $TUNNELS_EFF idle tunnels (asked $TUNNELS, RLIMIT_NOFILE $NOFILE), $(nproc) cores, loadavg $LOAD_BEFORE at start; nginx $versions"
    echo
    python3 "$PY" report "$WORK/results"
}

main "$@"
