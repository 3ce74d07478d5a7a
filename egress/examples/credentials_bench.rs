//! `bench/egress-credentials`: inspected (terminated) traffic against a plain CONNECT tunnel
//! (passthrough) and a direct TLS connection, in one run on loopback. See
//! `bench/egress-credentials/README.md`. Prints a table and a PASS/FAIL line per target.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use airlock_certs::mitm::{InspectionCa, LeafIssuer};
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use test_support::dns::FakeDns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

const HOST: &str = "api.test";
const UPSTREAM_IP: &str = "127.0.0.2";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Direct,
    Passthrough,
    Terminate,
    /// Plain HTTP to the terminating proxy's origin-form gateway (`/gw/api/…`).
    Gateway,
}

struct Rig {
    upstream: SocketAddr,
    passthrough: SocketAddr,
    terminate: SocketAddr,
    terminate_pid: u32,
    passthrough_pid: u32,
    up_ca: String,
    mitm_ca: String,
    procs: Vec<Child>,
    _dns: FakeDns,
    _dir: tempfile::TempDir,
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let (seq, secs, big_mib, idle) = if quick {
        (300, 2, 128, 200)
    } else {
        (2000, 10, 1024, 1000)
    };
    let rig = Rig::start().await;
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "throughput") {
        // Profiling aid: only the throughput table.
        rig.throughput_table(big_mib).await;
        return;
    }
    println!(
        "# bench/egress-credentials ({} run)",
        if quick { "quick" } else { "full" }
    );
    println!("| path | p50@1 µs | p99@1 µs | rps@1 | rps@64 | p99@64 µs | SSE p99 µs |");
    println!("|---|---|---|---|---|---|---|");
    let mut sse = Vec::new();
    for path in [
        Path::Direct,
        Path::Passthrough,
        Path::Terminate,
        Path::Gateway,
    ] {
        let (p50, p99, rps1) = rig.sequential(path, seq).await;
        let (rps64, p99_64) = rig.concurrent(path, 64, Duration::from_secs(secs)).await;
        let sse_p99 = rig.sse(path).await;
        sse.push(sse_p99);
        println!("| {path:?} | {p50} | {p99} | {rps1:.0} | {rps64:.0} | {p99_64} | {sse_p99} |");
    }
    let ratios = rig.throughput_table(big_mib).await;
    let leaf_us = leaf_issuance();
    let kib = rig.idle_rss(idle).await;
    println!();
    println!("leaf issuance: {leaf_us:.0} µs per leaf (mean of 1000)");
    println!("RSS per idle terminated connection: {kib:.1} KiB ({idle} connections)");
    let sse_added = sse[2].saturating_sub(sse[0]);
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    for (cpus, ratio) in ratios {
        println!(
            "{} throughput terminate/direct {ratio:.2}x, {cpus} (target >= 0.5x)",
            verdict(ratio >= 0.5)
        );
    }
    println!(
        "{} leaf issuance {leaf_us:.0} µs (target < 1000 µs)",
        verdict(leaf_us < 1000.0)
    );
    println!(
        "{} idle terminated connection {kib:.1} KiB (target <= 128 KiB)",
        verdict(kib <= 128.0)
    );
    println!(
        "{} SSE added p99 {sse_added} µs (target < 2000 µs)",
        verdict(sse_added < 2000)
    );
}

fn leaf_issuance() -> f64 {
    let ca = InspectionCa::generate("bench", &[], deadline()).unwrap();
    let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    let started = Instant::now();
    for i in 0..1000 {
        issuer.issue(&format!("h{i}.example.com")).unwrap();
    }
    started.elapsed().as_secs_f64() * 1e6 / 1000.0
}

fn deadline() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::hours(2)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// The upstream: `/small` (100 bytes), `/big?MIB` (streamed), `/sse` (50 events 50 ms apart,
/// each carrying its send time in µs).
async fn upstream(issuer: &LeafIssuer) -> SocketAddr {
    let leaf = issuer.issue(HOST).unwrap();
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain, leaf.key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(format!("{UPSTREAM_IP}:0")).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            // As real API servers do; without it small SSE writes wait on delayed ACKs.
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(Response::new(answer(req.uri())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

fn answer(uri: &http::Uri) -> Body {
    match uri.path() {
        "/big" => {
            let mib: usize = uri.query().and_then(|q| q.parse().ok()).unwrap_or(1);
            let chunk = Bytes::from(vec![7u8; 1 << 20]);
            let frames = stream::iter((0..mib).map(move |_| Ok(Frame::data(chunk.clone()))));
            StreamBody::new(frames).boxed()
        }
        "/sse" => {
            let events = stream::unfold(0u32, |i| async move {
                if i == 50 {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let line = format!("data: {}\n\n", now_us());
                Some((Ok(Frame::data(Bytes::from(line))), i + 1))
            });
            StreamBody::new(events).boxed()
        }
        _ => Full::new(Bytes::from(vec![b'x'; 100])).boxed(),
    }
}

impl Rig {
    async fn start() -> Rig {
        let up_ca = InspectionCa::generate("bench-upstream", &[], deadline()).unwrap();
        let up_issuer = LeafIssuer::from_pem(&up_ca.cert_pem, &up_ca.key_pem).unwrap();
        let upstream = upstream(&up_issuer).await;
        let mitm = InspectionCa::generate("bench", &[HOST.to_owned()], deadline()).unwrap();
        let dns = FakeDns::start([(HOST, vec![UPSTREAM_IP.parse().unwrap()])]).await;
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let port = upstream.port();
        let plain = serde_json::json!({"allow_domains": [HOST], "allow_ports": [port]});
        let mut inspected = plain.clone();
        inspected["endpoints"] = serde_json::json!([{"host": HOST, "port": port,
            "tls": "terminate", "gateway": "api",
            "credential": {"secret": "key", "header": "x-api-key", "format": "{secret}"}}]);
        let files = [
            ("--mitm-ca-cert", write("ca.pem", &mitm.cert_pem)),
            ("--mitm-ca-key", write("ca.key", &mitm.key_pem)),
            ("--upstream-ca", write("up.pem", &up_ca.cert_pem)),
        ];
        let credential = format!("key={}", write("key", "sk-bench").display());
        let (passthrough, p) = spawn(&write("plain.json", &plain.to_string()), dns.addr(), &[]);
        let mut extra: Vec<(&str, String)> = files
            .iter()
            .map(|(f, p)| (*f, p.display().to_string()))
            .collect();
        extra.push(("--credential", credential));
        let (terminate, t) = spawn(
            &write("inspected.json", &inspected.to_string()),
            dns.addr(),
            &extra,
        );
        let terminate_pid = t.id();
        let passthrough_pid = p.id();
        for addr in [passthrough, terminate] {
            wait_listening(addr).await;
        }
        Rig {
            upstream,
            passthrough,
            terminate,
            terminate_pid,
            passthrough_pid,
            up_ca: up_ca.cert_pem,
            mitm_ca: mitm.cert_pem,
            procs: vec![p, t],
            _dns: dns,
            _dir: dir,
        }
    }

    /// An HTTP/1.1 connection on `path`.
    async fn conn(&self, path: Path) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
        if path == Path::Gateway {
            let tcp = test_support::upstream::connect(self.terminate)
                .await
                .unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            return sender;
        }
        let (tcp, ca) = match path {
            Path::Direct => (
                test_support::upstream::connect(self.upstream)
                    .await
                    .unwrap(),
                &self.up_ca,
            ),
            Path::Passthrough => (self.tunnel(self.passthrough).await, &self.up_ca),
            Path::Terminate | Path::Gateway => (self.tunnel(self.terminate).await, &self.mitm_ca),
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
            .unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tls = TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender
    }

    async fn tunnel(&self, proxy: SocketAddr) -> TcpStream {
        let mut tcp = test_support::upstream::connect(proxy).await.unwrap();
        let authority = format!("{HOST}:{}", self.upstream.port());
        let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        assert!(
            buf.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        tcp
    }

    /// `GET uri` as sent on `path`: to the upstream, or to the proxy's gateway.
    fn get(&self, path: Path, uri: &str) -> Request<Empty<Bytes>> {
        let (uri, host) = match path {
            Path::Gateway => (format!("/gw/api{uri}"), "airlock.internal:3128".to_owned()),
            _ => (uri.to_owned(), format!("{HOST}:{}", self.upstream.port())),
        };
        Request::get(uri)
            .header("host", host)
            .body(Empty::new())
            .unwrap()
    }

    async fn sequential(&self, path: Path, n: usize) -> (u128, u128, f64) {
        let mut sender = self.conn(path).await;
        let mut lat = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            sender.ready().await.unwrap();
            let resp = sender.send_request(self.get(path, "/small")).await.unwrap();
            resp.into_body().collect().await.unwrap();
            lat.push(t.elapsed().as_micros());
        }
        let rps = n as f64 / started.elapsed().as_secs_f64();
        lat.sort_unstable();
        (pct(&lat, 50), pct(&lat, 99), rps)
    }

    async fn concurrent(&self, path: Path, conns: usize, d: Duration) -> (f64, u128) {
        let mut senders = Vec::new();
        for _ in 0..conns {
            senders.push(self.conn(path).await);
        }
        let until = Instant::now() + d;
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|mut s| {
                let req = self.get(path, "/small");
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        s.ready().await.unwrap();
                        let resp = s.send_request(clone_req(&req)).await.unwrap();
                        resp.into_body().collect().await.unwrap();
                        lat.push(t.elapsed().as_micros());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all.sort_unstable();
        (all.len() as f64 / d.as_secs_f64(), pct(&all, 99))
    }

    /// The 1 GiB stream on every path, twice: with every process free to use every CPU, and
    /// with the load generator (client and upstream, this process) on CPU 0 and the proxies on
    /// the others. Prints MiB/s and the CPU time each side spent per GiB; returns the
    /// terminate/direct ratio of each layout.
    async fn throughput_table(&self, mib: usize) -> Vec<(&'static str, f64)> {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let mut layouts = vec![("shared CPUs", None)];
        if cpus >= 2 {
            layouts.push(("pinned: load on CPU 0, proxy on the rest", Some(cpus)));
        }
        println!();
        println!("| path | CPUs | MiB/s | proxy CPU ms/GiB | load CPU ms/GiB |");
        println!("|---|---|---|---|---|");
        let mut ratios = Vec::new();
        for (name, pin) in layouts {
            if let Some(cpus) = pin {
                self.pin(Some(cpus));
            }
            let mut mibs = Vec::new();
            for path in [
                Path::Direct,
                Path::Passthrough,
                Path::Terminate,
                Path::Gateway,
            ] {
                let proxy = self.proxy_pid(path);
                let (load0, proxy0) = (cpu_ns(std::process::id()), proxy.map_or(0, cpu_ns));
                let rate = self.throughput(path, mib).await;
                let gib = mib as f64 / 1024.0;
                let per_gib = |ns: u64| ns as f64 / 1e6 / gib;
                let load = per_gib(cpu_ns(std::process::id()) - load0);
                let proxy = proxy.map_or(0.0, |pid| per_gib(cpu_ns(pid) - proxy0));
                println!("| {path:?} | {name} | {rate:.0} | {proxy:.0} | {load:.0} |");
                mibs.push(rate);
            }
            if pin.is_some() {
                self.pin(None);
            }
            ratios.push((name, mibs[2] / mibs[0]));
        }
        println!();
        ratios
    }

    /// The proxy process on `path`, if it has one.
    fn proxy_pid(&self, path: Path) -> Option<u32> {
        match path {
            Path::Direct => None,
            Path::Passthrough => Some(self.passthrough_pid),
            Path::Terminate | Path::Gateway => Some(self.terminate_pid),
        }
    }

    /// Pins this process to CPU 0 and the proxies to CPUs 1.., or (`None`) frees them again.
    fn pin(&self, cpus: Option<usize>) {
        let all = format!(
            "0-{}",
            std::thread::available_parallelism().map_or(1, usize::from) - 1
        );
        let (load, proxies) = match cpus {
            Some(n) => ("0".to_owned(), format!("1-{}", n - 1)),
            None => (all.clone(), all),
        };
        for (list, pid) in [
            (&load, std::process::id()),
            (&proxies, self.passthrough_pid),
            (&proxies, self.terminate_pid),
        ] {
            let status = Command::new("taskset")
                .args(["-a", "-p", "-c", list, &pid.to_string()])
                .stdout(Stdio::null())
                .status()
                .expect("taskset (util-linux)");
            assert!(status.success(), "taskset -c {list} {pid}");
        }
    }

    async fn throughput(&self, path: Path, mib: usize) -> f64 {
        let mut sender = self.conn(path).await;
        let started = Instant::now();
        let resp = sender
            .send_request(self.get(path, &format!("/big?{mib}")))
            .await
            .unwrap();
        let mut body = resp.into_body();
        let mut n = 0usize;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                n += data.len();
            }
        }
        assert_eq!(n, mib << 20);
        mib as f64 / started.elapsed().as_secs_f64()
    }

    /// p99 of (arrival − send) over the 50 events, in µs.
    async fn sse(&self, path: Path) -> u128 {
        let mut sender = self.conn(path).await;
        let resp = sender.send_request(self.get(path, "/sse")).await.unwrap();
        let mut body = resp.into_body();
        let mut delays = Vec::new();
        while let Some(frame) = body.frame().await {
            let arrived = now_us();
            if let Ok(data) = frame.unwrap().into_data() {
                let text = String::from_utf8_lossy(&data);
                for sent in text
                    .split("data: ")
                    .filter_map(|s| s.trim().parse::<u128>().ok())
                {
                    delays.push(arrived.saturating_sub(sent));
                }
            }
        }
        delays.sort_unstable();
        pct(&delays, 99)
    }

    /// KiB of the terminating proxy's RSS per open, idle, terminated connection.
    async fn idle_rss(&self, n: usize) -> f64 {
        let before = settled_rss(self.terminate_pid).await;
        let mut held = Vec::new();
        for _ in 0..n {
            let mut s = self.conn(Path::Terminate).await;
            let resp = s
                .send_request(self.get(Path::Terminate, "/small"))
                .await
                .unwrap();
            resp.into_body().collect().await.unwrap();
            held.push(s);
        }
        let after = settled_rss(self.terminate_pid).await;
        drop(held);
        (after.saturating_sub(before)) as f64 / n as f64
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for child in &mut self.procs {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clone_req(req: &Request<Empty<Bytes>>) -> Request<Empty<Bytes>> {
    let mut out = Request::new(Empty::new());
    *out.uri_mut() = req.uri().clone();
    *out.headers_mut() = req.headers().clone();
    out
}

fn pct(sorted: &[u128], p: usize) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// CPU time `pid` has used so far, in ns (the sum over its threads).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// VmRSS in KiB once two reads 200 ms apart agree within 1 %.
async fn settled_rss(pid: u32) -> u64 {
    let read = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
    };
    let mut last = read();
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = read();
        if now.abs_diff(last) * 100 <= last {
            return now;
        }
        last = now;
    }
    last
}

/// Starts `airlock-egress serve` on a free loopback port with `policy` and `extra` flags.
fn spawn(
    policy: &std::path::Path,
    dns: SocketAddr,
    extra: &[(&str, String)],
) -> (SocketAddr, Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bin = std::env::var("AIRLOCK_EGRESS_BIN").map_or_else(
        |_| {
            let exe = std::env::current_exe().unwrap();
            exe.parent().unwrap().join("../airlock-egress")
        },
        PathBuf::from,
    );
    let mut cmd = Command::new(bin);
    cmd.args([
        "serve",
        "--listen",
        &port.to_string(),
        "--dns",
        &dns.to_string(),
    ])
    .args(["--allow-cidr", &format!("{UPSTREAM_IP}/32")])
    .args(["--policy", &policy.display().to_string()])
    .env("RUST_LOG", "warn")
    // Every bench connection comes from one loopback source; the idle step holds 1,000.
    .env("AIRLOCK_EGRESS_MAX_CONNECTIONS_PER_SOURCE", "4096")
    .stdout(Stdio::null());
    for (flag, value) in extra {
        cmd.args([*flag, value.as_str()]);
    }
    let child = cmd
        .spawn()
        .expect("airlock-egress (set AIRLOCK_EGRESS_BIN)");
    (port, child)
}

async fn wait_listening(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(20);
    while test_support::upstream::connect(addr).await.is_err() {
        assert!(Instant::now() < until, "the proxy at {addr} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
