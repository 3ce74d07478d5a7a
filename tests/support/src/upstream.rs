//! Echo and HTTP upstreams on port 0, and the client-side `connect` helper.
//!
//! Each server binds the address it is given (a loopback IP with port 0 in-process; `0.0.0.0`
//! or `[::]` with a fixed port for a canary inside a private network namespace), counts the
//! connections it accepts, and stops when dropped. A server that must never be reached is a
//! *canary*: the test asserts `connections() == 0`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Opens a client TCP connection to `addr` (the proxy under test, or a server a test owns).
#[allow(clippy::disallowed_methods)] // Test clients dial known SocketAddrs; nothing is resolved.
pub async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    TcpStream::connect(addr).await
}

/// A TCP echo server: writes back what it reads and half-closes on EOF.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    dialed: Arc<Mutex<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

/// How an [`HttpUpstream`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpBehavior {
    /// `200`, echoing a non-empty request body, else `hello from <addr>`.
    Respond,
    /// Reads the request and never answers (a slow upstream).
    Hang,
}

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The method.
    pub method: String,
    /// The request target (origin-form path and query, as sent by the proxy).
    pub target: String,
    /// Every header, in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The full body.
    pub body: Vec<u8>,
}

/// A tiny HTTP/1.1 server that records requests.
#[derive(Debug)]
pub struct HttpUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    task: JoinHandle<()>,
}

// === impl EchoServer ===

impl EchoServer {
    /// Listens on `addr` (port 0 for any free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let dialed = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (connections.clone(), dialed.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Ok(local) = stream.local_addr() {
                    log.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(local);
                }
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(echo(stream));
            }
        });
        Ok(EchoServer {
            addr,
            connections,
            dialed,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The destination address of every accepted connection (what the client dialled; an
    /// IPv4 destination on a dual-stack `[::]` listener shows up IPv4-mapped).
    pub fn dialed(&self) -> Vec<SocketAddr> {
        self.dialed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(mut stream: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Some(chunk) = buf.get(..n) else { break };
                if stream.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown().await;
}

// === impl HttpUpstream ===

impl HttpUpstream {
    /// Listens on `addr` (port 0 for any free port) and answers per `behavior`.
    pub async fn start(addr: SocketAddr, behavior: HttpBehavior) -> std::io::Result<HttpUpstream> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (counter, log) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                let service = service_fn(move |req| respond(req, addr, behavior, log.clone()));
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(HttpUpstream {
            addr,
            connections,
            requests,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Every complete request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for HttpUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    req: Request<Incoming>,
    addr: SocketAddr,
    behavior: HttpBehavior,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let recorded = RecordedRequest {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    };
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(recorded);
    if behavior == HttpBehavior::Hang {
        std::future::pending::<()>().await;
    }
    let reply = if body.is_empty() {
        Bytes::from(format!("hello from {addr}"))
    } else {
        body
    };
    let mut response = Response::new(Full::new(reply));
    let headers = response.headers_mut();
    headers.insert("x-upstream", http::HeaderValue::from_static("yes"));
    // Hop-by-hop headers a proxy must strip on the way back.
    headers.insert("connection", http::HeaderValue::from_static("x-hop"));
    headers.insert("x-hop", http::HeaderValue::from_static("secret"));
    headers.insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
    Ok(response)
}

// === impl RecordedRequest ===

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
