//! The client of the proxy's admin API (`egress/src/admin.rs`): HTTP/1.1 over mutual TLS with
//! the controller's egress client certificate, one short connection per call.
//!
//! Every body is an `airlock_wire` type, the same one the proxy serves or reads.
//!
//! The admin address is an IP taken from the configuration; nothing here resolves a name.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_wire::{
    Ack, EventsPage, Health, InfrastructureReport, MemberList, PutInfrastructure, PutMember,
    PutMemberReply, PutSandbox, PutSandboxReply, SandboxList,
};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

use super::EgressError;

/// How long one admin call may take, connect included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest admin answer read.
const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// A client of one proxy's admin API.
#[derive(Clone)]
pub struct AdminClient {
    addr: SocketAddr,
    tls: TlsConnector,
}

// === impl AdminClient ===

impl AdminClient {
    /// A client of `addr` with the `airlock certs init` client layout in `dir`
    /// (`ca.pem`, `cert.pem`, `key.pem`).
    pub fn new(addr: SocketAddr, dir: &Path) -> Result<Self, EgressError> {
        let config =
            crate::docker::client::transport::client_config(dir).map_err(EgressError::Tls)?;
        Ok(Self {
            addr,
            tls: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The admin address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, EgressError> {
        self.json(Method::GET, "/healthz", None).await
    }

    /// `PUT /v1/sandboxes/{id}`.
    pub async fn put_sandbox(&self, id: &str, body: &PutSandbox) -> Result<(), EgressError> {
        let body = to_body(body)?;
        self.call(Method::PUT, &format!("/v1/sandboxes/{id}"), Some(body))
            .await
            .map(drop)
    }

    /// `PUT /v1/sandboxes/{id}` naming the pool member `member` it claims: the proxy replaces
    /// the member's unbound registration with this entry in one step, on the same source
    /// addresses (409 `member_mismatch` when they differ, `address_in_use` when another
    /// sandbox holds them). Idempotent at the same generation, refused at an older one.
    pub async fn bind_member(
        &self,
        id: &str,
        member: &str,
        body: &PutSandbox,
    ) -> Result<PutSandboxReply, EgressError> {
        let mut body = body.clone();
        body.member = Some(member.to_owned());
        let body = to_body(&body)?;
        self.json(Method::PUT, &format!("/v1/sandboxes/{id}"), Some(body))
            .await
    }

    /// `PUT /v1/members/{id}`: registers an unbound pool member, whose every request the proxy
    /// refuses `sandbox_not_claimed` until [`AdminClient::bind_member`] claims it.
    pub async fn put_member(
        &self,
        member: &str,
        body: &PutMember,
    ) -> Result<PutMemberReply, EgressError> {
        let body = to_body(body)?;
        self.json(Method::PUT, &format!("/v1/members/{member}"), Some(body))
            .await
    }

    /// `DELETE /v1/members/{id}` (idempotent): forgets an unbound member.
    pub async fn delete_member(&self, member: &str) -> Result<(), EgressError> {
        self.call(Method::DELETE, &format!("/v1/members/{member}"), None)
            .await
            .map(drop)
    }

    /// `GET /v1/members`: the unbound members.
    pub async fn list_members(&self) -> Result<MemberList, EgressError> {
        self.json(Method::GET, "/v1/members", None).await
    }

    /// `PUT /v1/infrastructure`: replaces the pushed infrastructure list.
    pub async fn put_infrastructure(
        &self,
        cidrs: &[ipnet::IpNet],
    ) -> Result<InfrastructureReport, EgressError> {
        let body = to_body(&PutInfrastructure::new(cidrs))?;
        self.json(Method::PUT, "/v1/infrastructure", Some(body))
            .await
    }

    /// `GET /v1/sandboxes`.
    pub async fn list_sandboxes(&self) -> Result<SandboxList, EgressError> {
        self.json(Method::GET, "/v1/sandboxes", None).await
    }

    /// `DELETE /v1/sandboxes/{id}` (idempotent).
    pub async fn delete_sandbox(&self, id: &str) -> Result<(), EgressError> {
        self.call(Method::DELETE, &format!("/v1/sandboxes/{id}"), None)
            .await
            .map(drop)
    }

    /// `GET /v1/events?after=&limit=`.
    pub async fn events(&self, after: u64, limit: usize) -> Result<EventsPage, EgressError> {
        let path = format!("/v1/events?after={after}&limit={limit}");
        self.json(Method::GET, &path, None).await
    }

    /// `POST /v1/events/ack`.
    pub async fn ack(&self, seq: u64) -> Result<(), EgressError> {
        let body = to_body(&Ack { seq })?;
        self.call(Method::POST, "/v1/events/ack", Some(body))
            .await
            .map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, EgressError> {
        let bytes = self.call(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| EgressError::Admin {
            status: 200,
            message: format!("unreadable answer: {e}"),
        })
    }

    /// One call; a status outside 2xx is an [`EgressError::Admin`].
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, EgressError> {
        let exchange = self.exchange(method, path, body);
        let (status, bytes) = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_elapsed| {
                EgressError::Unreachable(format!("no answer within {CALL_TIMEOUT:?}"))
            })??;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(EgressError::Admin {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            })
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), EgressError> {
        let unreachable = |e: &dyn std::fmt::Display| EgressError::Unreachable(e.to_string());
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| unreachable(&e))?;
        let stream = socket
            .connect(self.addr)
            .await
            .map_err(|e| unreachable(&e))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let tls = self
            .tls
            .connect(name, stream)
            .await
            .map_err(|e| EgressError::Tls(format!("handshake with {}: {e}", self.addr)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(&e))?;
        let driver = tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, self.addr.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    }
}

/// A request body as JSON.
fn to_body<T: Serialize>(body: &T) -> Result<Vec<u8>, EgressError> {
    serde_json::to_vec(body).map_err(|e| EgressError::Admin {
        status: 0,
        message: e.to_string(),
    })
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .finish()
    }
}
