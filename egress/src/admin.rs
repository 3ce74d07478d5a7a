//! The admin API: the controller's interface to the proxy, served over mutual TLS.
//!
//! The controller pushes sandbox entries (source addresses, credential hash, policy, generation)
//! and pulls ledger events with a cursor. Every request needs a client certificate issued by the
//! `airlock-certs` CA (`DIR/{ca,cert,key}.pem`, the `server/` directory of `airlock certs init`).
//! Plain HTTP is accepted only on a loopback listener, for local tooling and tests; anything
//! else without TLS is refused at start (fail closed).
//!
//! Routes (JSON; errors are `{"error":"<code>","message":".."}`):
//! - `GET /healthz` -> `{"status":"ok","boot_id":..,"sandboxes":N,"controlled":..,
//!   "events_overflowed":N,"infrastructure":N,"dns":"configured"|"system"|"none"}`
//! - `GET /metrics` -> Prometheus text
//! - `GET /v1/sandboxes` -> `{"boot_id":..,"sandboxes":[{sandbox_id,generation,source_addrs}]}`
//! - `GET /v1/sandboxes/{id}` -> `{sandbox_id,generation,source_addrs,policy,ceiling,
//!   bytes_used,open_connections}`
//! - `PUT /v1/sandboxes/{id}` `{sandbox_id?, source_addrs, credential_hash, policy?, generation,
//!   ceiling?, inspection?, member?}` -> 201 created / 200 replaced or unchanged; 409 stale
//!   generation; 400 bad input or policy. The interfaces are read again first (the controller
//!   attaches the proxy to the sandbox's network just before), so the new network is
//!   infrastructure before it is used.
//! - `GET /v1/infrastructure`, `PUT /v1/infrastructure` `{"cidrs":[..]}` (replaces the pushed
//!   list) -> `{"effective":[..],"pushed":[..],"configured":[..],"derived":[..]}`; 400 bad CIDR
//! - `DELETE /v1/sandboxes/{id}` -> 204 (idempotent)
//! - `PUT /v1/members/{id}` `{source_addrs, generation}` -> 201 / 200: an unbound pool member,
//!   whose addresses are refused `sandbox_not_claimed`; 409 stale generation or an address a
//!   sandbox or another member holds (`address_in_use`). `DELETE /v1/members/{id}` -> 204
//!   (idempotent); `GET /v1/members` -> `{"boot_id":..,"members":[{member_id,generation,
//!   source_addrs}]}`. A claim is `PUT /v1/sandboxes/{id}` with `"member":"<id>"`: the member's
//!   registration becomes the sandbox entry in one step (409 `member_mismatch` when the
//!   addresses differ from the member's).
//! - `GET /v1/events?after=SEQ&limit=N` -> `{"events":[..],"next":SEQ,"overflowed":N,"boot_id":..}`
//! - `POST /v1/events/ack` `{"seq":N}` -> 204
//!
//! Request bodies are capped at [`MAX_BODY_BYTES`], headers must arrive within
//! [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] admin connections are served at once.

mod infra;
mod members;
mod routes;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::infra::InfraSet;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::resolve::DnsStatus;

/// Largest admin request body (a policy with ~10,000 domain rules fits comfortably).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Time allowed for the TLS handshake and for the request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to read a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Admin connections served at once; further ones wait in the accept queue.
pub const MAX_CONNECTIONS: usize = 64;
/// How long shutdown waits for in-flight admin requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin handlers share with the proxy.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The identity registry the controller pushes entries into.
    pub registry: Arc<Registry>,
    /// The ledger whose spool the controller pages through.
    pub ledger: Arc<Ledger>,
    /// The proxy's metrics.
    pub metrics: Arc<Metrics>,
    /// The infrastructure set the controller pushes into and reads back.
    pub infra: Arc<InfraSet>,
    /// Where the proxy's resolvers came from, for `/healthz`.
    pub dns: DnsStatus,
    /// Extra roots for inspected upstreams (`--upstream-ca`), given to every pushed entry.
    pub upstream_ca: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// Why the admin TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A PEM file could not be read or parsed.
    #[error("cannot read {path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A PEM file held no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The CA certificate was rejected.
    #[error("bad CA certificate in {path}: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// rustls refused the certificate/key pair or the protocol versions.
    #[error("bad admin TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Loads `dir/{ca,cert,key}.pem` into a server config that requires a client certificate issued
/// by `ca.pem`. TLS 1.2 and 1.3 only, ring provider, ALPN `http/1.1`.
pub fn load_admin_tls(dir: &Path) -> Result<Arc<ServerConfig>, AdminError> {
    let ca_path = dir.join("ca.pem");
    let mut roots = RootCertStore::empty();
    for ca in read_certs(&ca_path)? {
        roots.add(ca).map_err(|source| AdminError::BadCa {
            path: ca_path.clone(),
            source,
        })?;
    }
    let certs = read_certs(&dir.join("cert.pem"))?;
    let key_path = dir.join("key.pem");
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|source| AdminError::Pem {
        path: key_path,
        source,
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, AdminError> {
    let pem_err = |source| AdminError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(AdminError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// Serves the admin API on `listener` until `shutdown` completes, then drains in-flight requests
/// for up to a few seconds. `tls` may be `None` only for a loopback listener; otherwise this
/// returns `InvalidInput` at once.
pub async fn serve_admin(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    state: AdminState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    if tls.is_none() {
        if !local.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the admin API needs TLS unless it listens on loopback",
            ));
        }
        tracing::warn!(admin.addr = %local, "Admin API serving plain HTTP on loopback");
    }
    tracing::info!(admin.addr = %local, admin.tls = tls.is_some(), "Admin API listening");
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let stop = CancellationToken::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = accept(&listener, &slots) => {
                let Some((stream, peer, permit)) = accepted else { continue };
                let conn = Conn { state: state.clone(), stop: stop.clone(), peer };
                let acceptor = acceptor.clone();
                tasks.spawn(async move {
                    conn.run(stream, acceptor).await;
                    drop(permit);
                });
            }
        }
    }
    stop.cancel();
    drain(tasks).await;
    Ok(())
}

/// Accepts one connection once a slot is free. Accept errors (e.g. EMFILE) are logged and
/// answered with `None` after a short pause so the loop never spins.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(
    TcpStream,
    std::net::SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let permit = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, peer)) => Some((stream, peer, permit)),
        Err(error) => {
            tracing::warn!(%error, "Admin accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

async fn drain(mut tasks: JoinSet<()>) {
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(admin.connections = tasks.len(), "Admin drain timed out");
        tasks.abort_all();
    }
}

/// One admin connection.
struct Conn {
    state: AdminState,
    stop: CancellationToken,
    peer: std::net::SocketAddr,
}

impl Conn {
    async fn run(self, stream: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = acceptor else {
            return self.serve(stream).await;
        };
        match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => self.serve(tls).await,
            Ok(Err(error)) => {
                tracing::warn!(%error, client.addr = %self.peer, "Admin TLS handshake failed");
            }
            Err(_elapsed) => {
                tracing::warn!(client.addr = %self.peer, "Admin TLS handshake timed out");
            }
        }
    }

    async fn serve<S>(self, io: S)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = self.state;
        let service = service_fn(move |req| routes::handle(state.clone(), req));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = self.stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, client.addr = %self.peer, "Admin connection ended with an error");
        }
    }
}
