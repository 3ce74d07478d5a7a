//! A stand-in for the proxy's admin API (`egress/src/admin.rs`), mTLS with the server files
//! the controller issued, on a loopback address of the test's own: it records every call in
//! order, answers `healthz` with a boot id the test can change, serves a ledger spool
//! with the `events`/`ack` protocol, and fences sandbox entries by generation the way the
//! proxy's registry does (older: `stale_generation`; equal with other content:
//! `generation_conflict`; both 409).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the fake holds.
#[derive(Default)]
pub(crate) struct FakeState {
    pub(crate) boot_id: String,
    /// `METHOD path` and the JSON body of every call but `healthz` and `events`, in order.
    pub(crate) calls: Vec<(String, Value)>,
    /// Events not acknowledged yet, oldest first.
    pub(crate) spool: VecDeque<Value>,
    /// Each sandbox's registered generation and content (the body without generation and
    /// ceiling), kept across boot id changes unless the test clears it.
    pub(crate) entries: HashMap<String, (u64, Value)>,
}

/// The running fake; stops when dropped.
pub(crate) struct FakeProxy {
    pub(crate) state: Arc<Mutex<FakeState>>,
    task: JoinHandle<()>,
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProxy {
    /// Serves on `ip:port` with the `server/` files under `certs`.
    pub(crate) async fn start(ip: IpAddr, port: u16, certs: &Path) -> FakeProxy {
        let tls = tokio_rustls::TlsAcceptor::from(server_tls(certs));
        let listener = TcpListener::bind(SocketAddr::new(ip, port)).await.unwrap();
        let state = Arc::new(Mutex::new(FakeState {
            boot_id: "b00701".to_owned(),
            ..FakeState::default()
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tls, state) = (tls.clone(), Arc::clone(&shared));
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, request).await) }
                    });
                    let io = TokioIo::new(stream);
                    drop(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await,
                    );
                });
            }
        });
        FakeProxy { state, task }
    }

    pub(crate) fn calls(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().calls.clone()
    }
}

async fn answer(state: &Mutex<FakeState>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (method, uri) = (request.method().clone(), request.uri().clone());
    let bytes = request.into_body().collect().await.unwrap().to_bytes();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut state = state.lock().unwrap();
    let path = uri.path();
    if method == Method::PUT {
        if let Some(refused) = fence(&mut state, path, &body) {
            return refused;
        }
    }
    let reply = match (&method, path) {
        (&Method::GET, "/healthz") => json!({"boot_id": state.boot_id, "sandboxes": 0}),
        (&Method::GET, "/v1/events") => events(&state, uri.query().unwrap_or("")),
        (&Method::GET, "/v1/sandboxes") => json!({"sandboxes": []}),
        _ => {
            state.calls.push((format!("{method} {path}"), body.clone()));
            match (&method, path) {
                (&Method::POST, "/v1/events/ack") => {
                    let seq = body["seq"].as_u64().unwrap();
                    state.spool.retain(|e| e["seq"].as_u64().unwrap() > seq);
                    json!({})
                }
                (&Method::PUT, "/v1/infrastructure") => json!({
                    "effective": body["cidrs"], "pushed": body["cidrs"],
                    "configured": [], "derived": []
                }),
                _ => json!({}),
            }
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() = StatusCode::OK;
    response
}

/// The registry's generation fence on `PUT /v1/sandboxes/{id}`: a 409 refusal, or `None`
/// (the entry is taken).
fn fence(state: &mut FakeState, path: &str, body: &Value) -> Option<Response<Full<Bytes>>> {
    let id = path.strip_prefix("/v1/sandboxes/")?;
    let generation = body["generation"].as_u64()?;
    let mut content = body.clone();
    if let Some(object) = content.as_object_mut() {
        object.remove("generation");
        object.remove("ceiling");
    }
    let code = match state.entries.get(id) {
        Some((held, _)) if generation < *held => Some("stale_generation"),
        Some((held, old)) if generation == *held && *old != content => Some("generation_conflict"),
        _ => None,
    };
    let Some(code) = code else {
        state.entries.insert(id.to_owned(), (generation, content));
        return None;
    };
    state
        .calls
        .push((format!("{} {path} refused", Method::PUT), body.clone()));
    let reply = json!({"error": code, "message": "refused by the fake registry"});
    let mut response = Response::new(Full::new(Bytes::from(reply.to_string())));
    *response.status_mut() = StatusCode::CONFLICT;
    Some(response)
}

fn events(state: &FakeState, query: &str) -> Value {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (after, limit) = (param("after"), param("limit").min(10_000));
    let page: Vec<Value> = state
        .spool
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > after)
        .take(usize::try_from(limit).unwrap())
        .cloned()
        .collect();
    let next = page.last().map_or(after, |e| e["seq"].as_u64().unwrap());
    json!({"events": page, "next": next, "boot_id": state.boot_id, "overflowed": 0})
}

fn server_tls(dir: &Path) -> Arc<ServerConfig> {
    let ca: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("ca.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert).unwrap();
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()
            .unwrap();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}
