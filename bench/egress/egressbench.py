#!/usr/bin/env python3
"""Helpers for bench/egress/run.sh (standard library only).

Subcommands:
  freeports N                     print N free TCP ports on 127.0.0.1
  idle-upstream PORTFILE          accept connections on 127.0.0.1, send one byte ("!") on each,
                                  then hold them open and idle; writes its port to PORTFILE
  tunnels --proxy H:P --target H:P --count N --pid PID
                                  open N concurrent CONNECT tunnels through the proxy, wait for
                                  each 200 and the upstream's byte, and print the proxy's VmRSS
                                  before and after as a RESULT line
  criterion LOGFILE               extract the slowest criterion estimate (ns) from a bench log
  report RESULTS                  print the final table and the target checks

Every socket this file opens is on 127.0.0.1; it refuses any other address.
"""

import asyncio
import ipaddress
import json
import os
import re
import resource
import socket
import sys
import time

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


def loopback_addr(text):
    """Parses HOST:PORT and refuses anything outside 127.0.0.0/8."""
    host, _, port = text.rpartition(":")
    if ipaddress.ip_address(host) not in LOOPBACK:
        sys.exit(f"refusing non-loopback address {text}")
    return host, int(port)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- freeports -------------------------------------------------------------------------------


def cmd_freeports(count):
    socks = []
    for _ in range(int(count)):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


# --- idle upstream ---------------------------------------------------------------------------


async def idle_upstream(portfile):
    held = []

    async def on_client(reader, writer):
        writer.write(b"!")
        await writer.drain()
        held.append(writer)
        # Hold the connection idle until the peer closes it.
        await reader.read()
        writer.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, portfile)
    async with server:
        await server.serve_forever()


# --- tunnels ---------------------------------------------------------------------------------


def vmrss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def settled_rss(pid, deadline_s=15.0):
    """Polls VmRSS until two samples 0.3 s apart differ by under 0.5 %, or the deadline."""
    end = time.monotonic() + deadline_s
    last = vmrss_kib(pid)
    while time.monotonic() < end:
        await asyncio.sleep(0.3)
        now = vmrss_kib(pid)
        if abs(now - last) <= max(64, last // 200):
            return now
        last = now
    return last


async def open_tunnel(proxy, target, sem, timeout):
    async with sem:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(proxy[0], proxy[1]), timeout
        )
        t = f"{target[0]}:{target[1]}"
        writer.write(f"CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b"?"
        if status != b"200":
            writer.close()
            raise RuntimeError(f"CONNECT answered {head[:60]!r}")
        greeting = await asyncio.wait_for(reader.readexactly(1), timeout)
        if greeting != b"!":
            raise RuntimeError("upstream byte missing")
        return writer


async def tunnels(proxy, target, count, pid, concurrency, timeout):
    raise_nofile()
    before = await settled_rss(pid)
    sem = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    tasks = [asyncio.ensure_future(open_tunnel(proxy, target, sem, timeout)) for _ in range(count)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    writers = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    elapsed = time.monotonic() - start
    after = await settled_rss(pid)
    opened = len(writers)
    per = (after - before) / opened if opened else float("nan")
    if failures:
        sample = repr(failures[0])[:160]
        print(f"tunnels: {len(failures)} of {count} failed, first: {sample}", file=sys.stderr)
    print(
        f"RESULT opened={opened} failed={len(failures)} before_kib={before} after_kib={after}"
        f" per_tunnel_kib={per:.2f} open_s={elapsed:.1f}"
    )
    for w in writers:
        w.close()


# --- criterion -------------------------------------------------------------------------------

UNITS_NS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}


def cmd_criterion(logfile):
    """Prints `<ns> <bench name>` for the slowest benchmark's point estimate, or `n/a`."""
    text = open(logfile, errors="replace").read()
    pat = re.compile(
        r"^(\S[^\n]*?)?\s*time:\s+\[\s*[\d.]+\s*\S+\s+([\d.]+)\s*(ps|ns|µs|us|ms|s)\s",
        re.MULTILINE,
    )
    best = None
    name = None
    for line in text.splitlines():
        m = pat.match(line)
        if not m:
            stripped = line.strip()
            if stripped and not stripped.startswith(("Benchmarking", "Found", "change:", "Warning")):
                name = stripped.split()[0]
            continue
        bench = (m.group(1) or "").strip() or name or "?"
        ns = float(m.group(2)) * UNITS_NS[m.group(3)]
        if best is None or ns > best[0]:
            best = (ns, bench)
    print(f"{best[0]:.1f} {best[1]}" if best else "n/a")


# --- report ----------------------------------------------------------------------------------

PEERS = ["direct", "airlock-egress", "squid", "tinyproxy"]


def load(path):
    """RESULTS holds lines `peer key value`."""
    data = {p: {} for p in PEERS}
    extra = {}
    for line in open(path):
        parts = line.rstrip("\n").split(None, 2)
        if len(parts) != 3:
            continue
        peer, key, value = parts
        (extra if peer == "-" else data.setdefault(peer, {}))[key] = value
    return data, extra


def num(d, key):
    try:
        v = float(d.get(key, "nan"))
    except ValueError:
        return None
    return None if v != v else v


def fmt_rps(d, c):
    v = num(d, f"rps{c}")
    if v is None:
        return "n/a"
    bad = (num(d, f"non2xx{c}") or 0) + (num(d, f"errors{c}") or 0)
    return f"{v:,.0f}" + ("*" if bad else "")


def fmt_us(v):
    if v is None:
        return "n/a"
    return f"{v / 1000:.2f}ms" if v >= 10000 else f"{v:.0f}µs"


def cmd_report(path):
    data, extra = load(path)
    header = ["peer", "rps@1", "rps@64", "rps@256", "p50@64", "p99@64", "p50@1",
              "CPU µs/req@64", "CONNECT MiB/s", "KiB/idle tunnel"]
    rows = []
    for p in PEERS:
        d = data[p]
        mib = num(d, "connect_mibs")
        kib = num(d, "kib_per_tunnel")
        rows.append([
            p, fmt_rps(d, 1), fmt_rps(d, 64), fmt_rps(d, 256),
            fmt_us(num(d, "p50_64")), fmt_us(num(d, "p99_64")), fmt_us(num(d, "p50_1")),
            "-" if p == "direct" else ("n/a" if num(d, "cpu64") is None else f"{num(d, 'cpu64'):.0f}"),
            "n/a" if mib is None else f"{mib:,.0f}",
            "-" if p == "direct" else ("n/a" if kib is None else f"{kib:.1f}"),
        ])
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    print(line(header))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print(line(r))
    print()
    print(f"settings: {extra.get('settings', '')}")
    print("* = some requests failed or were not 2xx (see the log); rps counts completed responses.")
    print("CPU µs/req@64 = the proxy's own user+system CPU time per request at 64 connections.")
    print()
    checks(data, extra)


def verdict(ok):
    return "n/a " if ok is None else ("PASS" if ok else "FAIL")


def checks(data, extra):
    a, s, d = data["airlock-egress"], data["squid"], data["direct"]
    out = []

    def check(name, ok, detail):
        out.append(ok)
        print(f"[{verdict(ok)}] {name}: {detail}")

    ar, sr = num(a, "rps64"), num(s, "rps64")
    clean = lambda x, c: (num(x, f"non2xx{c}") or 0) + (num(x, f"errors{c}") or 0) == 0
    if ar is not None and sr:
        ok = ar >= 2 * sr and clean(a, 64)
        check("rps@64 >= 2x squid", ok, f"{ar:,.0f} vs {sr:,.0f} req/s = {ar / sr:.2f}x"
              + ("" if clean(a, 64) else " (airlock had failed requests)"))
    else:
        check("rps@64 >= 2x squid", None, "missing figures")
    ap, sp = num(a, "p99_64"), num(s, "p99_64")
    if ap is not None and sp is not None:
        check("p99@64 <= squid", ap <= sp, f"{fmt_us(ap)} vs {fmt_us(sp)} = {ap / sp:.2f}x")
    else:
        check("p99@64 <= squid", None, "missing figures")
    ac, dc = num(a, "connect_mibs"), num(d, "connect_mibs")
    if ac is not None and dc:
        check("CONNECT >= 0.9x direct", ac >= 0.9 * dc,
              f"{ac:,.0f} vs {dc:,.0f} MiB/s = {ac / dc:.2f}x")
    else:
        check("CONNECT >= 0.9x direct", None, "missing figures")
    a1, d1 = num(a, "p50_1"), num(d, "p50_1")
    if a1 is not None and d1 is not None:
        check("added p50 < 150µs", a1 - d1 < 150,
              f"airlock p50@1 {a1:.0f}µs - direct p50@1 {d1:.0f}µs = {a1 - d1:.0f}µs")
    else:
        check("added p50 < 150µs", None, "missing figures")
    k = num(a, "kib_per_tunnel")
    if k is not None:
        check("<= 64 KiB per idle tunnel", k <= 64,
              f"{k:.1f} KiB ({a.get('tunnel_detail', '')})")
    else:
        check("<= 64 KiB per idle tunnel", None, "missing figures")
    pe = extra.get("policy_ns", "n/a")
    if not pe.startswith("n/a"):
        ns, _, bench = pe.partition(" ")
        check("policy eval < 2µs (10k domain rules)", float(ns) < 2000,
              f"{float(ns):,.0f} ns/op (slowest criterion case: {bench})")
    else:
        reason = pe if pe != "n/a" else "n/a (no criterion figure in the bench output)"
        check("policy eval < 2µs (10k domain rules)", None, reason)
    passed = sum(1 for o in out if o)
    failed = sum(1 for o in out if o is False)
    print(f"\ntargets: {passed} PASS, {failed} FAIL, {len(out) - passed - failed} n/a")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "freeports":
        cmd_freeports(args[0])
    elif cmd == "idle-upstream":
        raise_nofile()
        asyncio.run(idle_upstream(args[0]))
    elif cmd == "tunnels":
        opts = dict(zip(args[0::2], args[1::2]))
        asyncio.run(tunnels(
            loopback_addr(opts["--proxy"]), loopback_addr(opts["--target"]),
            int(opts["--count"]), int(opts["--pid"]),
            int(opts.get("--concurrency", "200")), float(opts.get("--timeout", "60")),
        ))
    elif cmd == "criterion":
        cmd_criterion(args[0])
    elif cmd == "report":
        cmd_report(args[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
