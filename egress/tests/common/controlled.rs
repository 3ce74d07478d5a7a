//! A controlled-mode proxy with its plain-loopback admin API and an echo upstream on
//! 127.0.0.2 (admitted by the operator exception `127.0.0.2/32`), and raw client helpers:
//! connections from a chosen loopback source, response heads, admin calls.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use airlock_egress::admin::{serve_admin, AdminState};
use airlock_egress::config::{self, Config};
use airlock_egress::infra::{InfraSet, SystemInterfaces};
use airlock_egress::ledger::Ledger;
use airlock_egress::metrics::Metrics;
use airlock_egress::registry::{credential_hash, Registry};
use airlock_egress::resolve::{DnsStatus, Resolve, StaticResolve};
use airlock_egress::{serve, Services};
use airlock_wire::Event;
use serde_json::{json, Value};
use test_support::upstream::EchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

pub const A_SRC: &str = "127.0.0.1";
pub const B_SRC: &str = "127.0.0.3";
pub const DEADLINE: Duration = Duration::from_secs(10);
/// `HTTP/1.1 200 OK\r\n`, hyper's `date: ...\r\n` and the blank line.
pub const OK_HEAD: u64 = 17 + 37 + 2;

/// A controlled-mode proxy, its plain-loopback admin API and an echo upstream.
pub struct Rig {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub echo: EchoServer,
    pub state: AdminState,
    stop: CancellationToken,
}

impl Rig {
    pub async fn start(spool_capacity: usize) -> Self {
        let vars = [(config::ENV_SPOOL_CAPACITY, spool_capacity.to_string())];
        Self::start_with(&vars, |_| Arc::new(StaticResolve::new())).await
    }

    /// A rig with more `AIRLOCK_EGRESS_*` variables and a resolver made from the registry
    /// (so a test can change the registry from inside a lookup).
    pub async fn start_with(
        extra: &[(&'static str, String)],
        resolver: impl FnOnce(Arc<Registry>) -> Arc<dyn Resolve>,
    ) -> Self {
        let echo = EchoServer::start("127.0.0.2:0".parse().unwrap())
            .await
            .unwrap();
        let mut vars = HashMap::from([
            (config::ENV_MODE, "controlled".to_owned()),
            (config::ENV_LISTEN, "127.0.0.1:0".to_owned()),
            (config::ENV_ALLOW_CIDRS, "127.0.0.2/32".to_owned()),
        ]);
        vars.extend(extra.iter().cloned());
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let infra = InfraSet::new(vec![], &[config.listen], Box::new(SystemInterfaces));
        infra.refresh().unwrap();
        let state = AdminState {
            registry: Arc::new(Registry::controlled()),
            ledger: Arc::new(Ledger::with_limits(
                config.spool_capacity,
                config.spool_per_sandbox,
            )),
            metrics: Arc::new(Metrics::new()),
            infra: Arc::new(infra),
            dns: DnsStatus::Configured,
            upstream_ca: Vec::new(),
        };
        let services = Services {
            resolver: resolver(Arc::clone(&state.registry)),
            registry: Arc::clone(&state.registry),
            ledger: Arc::clone(&state.ledger),
            metrics: Arc::clone(&state.metrics),
            infra: Arc::clone(&state.infra),
        };
        let stop = CancellationToken::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            Arc::new(config),
            services,
            stop.clone().cancelled_owned(),
        ));
        let admin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        tokio::spawn(serve_admin(
            admin_listener,
            None,
            state.clone(),
            stop.clone().cancelled_owned(),
        ));
        Self {
            proxy,
            admin,
            echo,
            state,
            stop,
        }
    }

    /// PUTs sandbox `id` over the admin API; returns the status.
    pub async fn push(
        &self,
        id: &str,
        src: &str,
        token: &str,
        generation: u64,
        policy: Value,
    ) -> u16 {
        let body = json!({
            "sandbox_id": id,
            "source_addrs": [src],
            "credential_hash": credential_hash(token),
            "policy": policy,
            "generation": generation,
        });
        admin_call(
            self.admin,
            "PUT",
            &format!("/v1/sandboxes/{id}"),
            Some(body),
        )
        .await
        .0
    }

    /// A policy admitting the echo upstream's port.
    pub fn echo_policy(&self, extra: Value) -> Value {
        let mut policy = json!({ "allow_ports": [self.echo.addr().port()] });
        if let (Some(p), Some(e)) = (policy.as_object_mut(), extra.as_object()) {
            p.extend(e.clone());
        }
        policy
    }

    /// The `CONNECT echo` head [`Rig::connect`] sends.
    pub fn connect_head(&self, credential: Option<&str>) -> String {
        let target = self.echo.addr();
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(c) = credential {
            request.push_str(&format!("Proxy-Authorization: {c}\r\n"));
        }
        request.push_str("\r\n");
        request
    }

    /// Sends `CONNECT echo` from `src` with an optional credential.
    pub async fn connect(&self, src: &str, credential: Option<&str>) -> (Head, TcpStream) {
        let mut stream = client_from(src.parse().unwrap(), self.proxy).await;
        let request = self.connect_head(credential);
        stream.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut stream).await;
        (head, stream)
    }

    /// Polls the spool until `pred` holds for some event, or fails at the deadline.
    pub async fn wait_for_event(&self, pred: impl Fn(&Event) -> bool) -> Event {
        let started = Instant::now();
        loop {
            let page = self.state.ledger.events_after(0, 10_000);
            if let Some(e) = page.events.into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(started.elapsed() < DEADLINE, "event never spooled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A parsed response head plus its JSON body (if any).
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub raw: String,
    pub body: Value,
}

pub async fn client_from(src: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(src, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// Reads a response head (and a Content-Length body) without reading past it.
pub async fn read_head(stream: &mut TcpStream) -> Head {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "proxy closed before the response head ended: {raw:?}");
        raw.push(byte[0]);
    }
    let raw = String::from_utf8(raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let length = raw
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Head { status, raw, body }
}

/// One plain-HTTP admin call: (status, JSON body or Null).
pub async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut stream = client_from("127.0.0.1".parse().unwrap(), admin).await;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(&mut stream).await;
    (head.status, head.body)
}

/// Proves a tunnel carries bytes both ways.
pub async fn ping(stream: &mut TcpStream) {
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
}

/// Waits until the proxy closes `stream` (EOF or reset), failing at the deadline.
pub async fn closed_by_proxy(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the proxy kept the tunnel open"),
        }
    }
}
