//! Shared harness for the in-process proxy tests: start `airlock_egress::serve` on
//! `127.0.0.1:0` with a real `Config` (operator exceptions through `AIRLOCK_EGRESS_ALLOW_CIDRS`
//! exactly as a deployment sets them), talk raw HTTP/1.1 to it, and poll with deadlines.

#![allow(dead_code, unreachable_pub)]
// Each test binary uses a different subset; not API.
// Test harness code outside #[test] fns: failing loudly is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod controlled;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_egress::config::{load_policy_spec, Config, ENV_ALLOW_CIDRS, ENV_LISTEN, ENV_POLICY};
use airlock_egress::infra::{InfraSet, SystemInterfaces};
use airlock_egress::inspect::Inspection;
use airlock_egress::ledger::Ledger;
use airlock_egress::metrics::Metrics;
use airlock_egress::registry::Registry;
use airlock_egress::resolve::{HickoryResolve, Resolve};
use airlock_egress::Services;
use test_support::dns::FakeDns;
use test_support::upstream::{HttpBehavior, HttpUpstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A proxy running in this process.
pub struct TestProxy {
    pub addr: SocketAddr,
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub infra: Arc<InfraSet>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _policy_dir: tempfile::TempDir,
}

/// Options for [`TestProxy::start`].
pub struct ProxyOptions {
    /// The policy JSON (written to a file and passed as `AIRLOCK_EGRESS_POLICY`).
    pub policy: serde_json::Value,
    /// More `AIRLOCK_EGRESS_*` variables.
    pub env: Vec<(&'static str, String)>,
    /// Controlled-mode registry (empty) instead of standalone with the policy.
    pub controlled: bool,
    /// A pre-bound listener (to know the proxy's port before writing the policy).
    pub listener: Option<TcpListener>,
}

impl ProxyOptions {
    pub fn new(policy: serde_json::Value) -> Self {
        Self {
            policy,
            env: Vec::new(),
            controlled: false,
            listener: None,
        }
    }
    pub fn env(mut self, var: &'static str, value: impl Into<String>) -> Self {
        self.env.push((var, value.into()));
        self
    }
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }
    pub fn controlled(mut self) -> Self {
        self.controlled = true;
        self
    }
}

impl TestProxy {
    /// Starts a proxy whose DNS is `dns` (a `FakeDns`).
    pub async fn start(dns: SocketAddr, opts: ProxyOptions) -> TestProxy {
        let resolver = Arc::new(HickoryResolve::new(&[dns], Duration::from_secs(2)).unwrap());
        Self::start_with(resolver, opts).await
    }

    pub async fn start_with(resolver: Arc<dyn Resolve>, opts: ProxyOptions) -> TestProxy {
        let dir = tempfile::tempdir().unwrap();
        let policy_path = dir.path().join("policy.json");
        std::fs::write(&policy_path, opts.policy.to_string()).unwrap();
        let mut env: HashMap<&str, String> = HashMap::from([
            (ENV_LISTEN, "127.0.0.1:0".to_owned()),
            (ENV_POLICY, policy_path.display().to_string()),
        ]);
        env.extend(opts.env.iter().cloned());
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let (spec, policy) = load_policy_spec(config.policy.as_deref()).unwrap();
        let inspection =
            Inspection::load(spec.endpoints.as_deref(), &policy, &config.inspection).unwrap();
        let registry = Arc::new(if opts.controlled {
            Registry::controlled()
        } else {
            Registry::standalone(Arc::new(policy), inspection.map(Arc::new))
        });
        let ledger = Arc::new(Ledger::with_limits(
            config.spool_capacity,
            config.spool_per_sandbox,
        ));
        let metrics = Arc::new(Metrics::new());
        let infra = Arc::new(infra_set(&config));
        let services = Services {
            resolver,
            registry: registry.clone(),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            infra: infra.clone(),
        };
        let listener = match opts.listener {
            Some(listener) => listener,
            None => TcpListener::bind(config.listen).await.unwrap(),
        };
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(airlock_egress::serve(
            listener,
            Arc::new(config),
            services,
            async {
                let _ = rx.await;
            },
        ));
        TestProxy {
            addr,
            ledger,
            metrics,
            registry,
            infra,
            stop: Some(tx),
            task: Some(task),
            _policy_dir: dir,
        }
    }

    /// Stops the proxy and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Every ledger event so far.
    pub fn events(&self) -> Vec<airlock_wire::Event> {
        self.ledger.events_after(0, 10_000).events
    }

    /// Waits until the ledger holds at least `n` events.
    pub async fn wait_events(&self, n: usize) -> Vec<airlock_wire::Event> {
        let events = eventually(|| {
            let e = self.events();
            (e.len() >= n).then_some(e)
        })
        .await;
        events
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The infrastructure set a deployment would build from `config`: `--deny-cidr`, the listen
/// address, and this host's (or namespace's) non-loopback interfaces. The tests' upstreams are
/// on loopback, which is never derived.
pub fn infra_set(config: &Config) -> InfraSet {
    let set = InfraSet::new(
        config.deny_cidrs.clone(),
        &[config.listen],
        Box::new(SystemInterfaces),
    );
    set.refresh().unwrap();
    set
}

/// Polls `f` every 10 ms until it returns `Some`, failing after 10 s.
pub async fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "condition not met within 10s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts a JSON refusal with this status and error code.
    pub fn assert_refused(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?} {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let json = self.json();
        assert_eq!(json["error"], code, "{json}");
        assert!(json["message"].is_string(), "{json}");
        assert!(
            json.get("host").is_some() && json.get("sandbox").is_some(),
            "{json}"
        );
    }
}

/// Sends raw bytes (a whole request) and reads the response until the proxy closes.
pub async fn raw(proxy: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = test_support::upstream::connect(proxy).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut buf)).await;
    // A reset after the response is fine: the bytes are already in `buf`.
    let _ = read.expect("proxy did not close the connection within 15s");
    parse_response(&buf)
        .unwrap_or_else(|| panic!("unparsable response: {:?}", String::from_utf8_lossy(&buf)))
}

/// `METHOD target` with `Connection: close` and extra header lines.
pub async fn request(
    proxy: SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
) -> RawResponse {
    let mut req = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    raw(proxy, req.as_bytes()).await
}

/// Sends `CONNECT authority`; returns the status and, on 200, the open tunnel.
pub async fn connect(
    proxy: SocketAddr,
    authority: &str,
    headers: &[&str],
) -> (RawResponse, Option<TcpStream>) {
    let mut stream = test_support::upstream::connect(proxy).await.unwrap();
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    let mut response = parse_response(&head).expect("bad CONNECT response head");
    if response.status == 200 {
        return (response, Some(stream));
    }
    let len: usize = response
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    response.body = body;
    (response, None)
}

async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut byte))
            .await
            .expect("no response head within 15s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed before the response head: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    head
}

/// Parses a complete response (Content-Length, chunked, or read-to-close body).
pub fn parse_response(buf: &[u8]) -> Option<RawResponse> {
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest[..len.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim(),
            16,
        )
        .unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Where the tests' "internet" lives: upstreams bind here, and the proxy admits exactly this
/// address through the operator exception.
pub const UP: &str = "127.0.0.2";

/// `UP:port`.
pub fn at_up(port: u16) -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::from([127, 0, 0, 2]), port)
}

/// DNS with `up.test → 127.0.0.2`, an HTTP upstream there, and a proxy admitting it
/// (`AIRLOCK_EGRESS_ALLOW_CIDRS=127.0.0.2/32`, the policy `policy_ports(&[upstream port])`).
/// `tweak` adjusts the proxy's options (policy fields, more variables) before it starts.
pub async fn upstream_setup(
    behavior: HttpBehavior,
    tweak: impl FnOnce(ProxyOptions) -> ProxyOptions,
) -> (FakeDns, HttpUpstream, TestProxy) {
    let upstream = HttpUpstream::start(at_up(0), behavior).await.unwrap();
    let dns = FakeDns::start([("up.test", vec![at_up(0).ip()])]).await;
    let port = upstream.addr().port();
    let opts = ProxyOptions::new(policy_ports(&[port])).env(ENV_ALLOW_CIDRS, "127.0.0.2/32");
    let proxy = TestProxy::start(dns.addr(), tweak(opts)).await;
    (dns, upstream, proxy)
}

/// The default test policy: every public destination, plus the given ports.
pub fn policy_ports(ports: &[u16]) -> serde_json::Value {
    serde_json::json!({ "allow_ports": ports })
}
