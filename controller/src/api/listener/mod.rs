//! The API's own accept loop (hyper-util over hyper's HTTP/1 server), in place of
//! `axum::serve`, so a hostile client cannot hold the server's sockets or memory:
//!
//! - a global connection cap and a per-source cap (the peer address), checked at accept: a
//!   connection over either is answered at once (`503 too_many_connections` or
//!   `429 too_many_connections_from_source`) and closed;
//! - a connection must send a complete request head within the header timeout of its first
//!   byte (and of being accepted), or it is closed; one with no request in flight and no byte
//!   for the keep-alive idle time is closed (see `conn`);
//! - with TLS, the handshake runs under the header timeout too.
//!
//! Shutdown stops accepting, asks every connection to finish its request in flight and close,
//! and waits for them.

mod conn;
mod sources;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::config::HttpConfig;
use sources::Sources;

/// How long an over-cap refusal may take to write before the socket is dropped.
const REFUSAL_WRITE: Duration = Duration::from_secs(2);

/// What the accept loop needs.
#[derive(Clone)]
pub struct Listener {
    /// The limits.
    pub http: HttpConfig,
    /// The TLS acceptor, when the API serves HTTPS.
    pub tls: Option<TlsAcceptor>,
}

// === impl Listener ===

impl Listener {
    /// Plain HTTP with `http`'s limits.
    pub fn plain(http: HttpConfig) -> Self {
        Self { http, tls: None }
    }

    /// `http`'s limits, over TLS when `http.tls` names the files (read now).
    pub fn from_config(http: HttpConfig) -> Result<Self, tls::TlsError> {
        let tls = http.tls.as_ref().map(tls::acceptor).transpose()?;
        Ok(Self { http, tls })
    }

    /// Serves `app` on `listener` until `shutdown` completes, then drains the connections.
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let global = Arc::new(Semaphore::new(self.http.max_connections));
        let sources = Sources::new(self.http.max_connections_per_source);
        let settings = Arc::new(conn::Settings::from(&self.http));
        let (stop, stopped) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: back off a little and go on.
                        warn!(%error, "Accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(global) = global.clone().try_acquire_owned() else {
                debug!(client.addr = %peer, "Connection refused: server at its cap");
                connections.spawn(refuse(stream, Refusal::Global));
                continue;
            };
            let Some(source) = sources.admit(peer.ip()) else {
                debug!(client.addr = %peer, "Connection refused: source at its cap");
                connections.spawn(refuse(stream, Refusal::Source));
                continue;
            };
            let permit = conn::Permit {
                _global: global,
                _source: source,
            };
            let task = conn::Connection {
                peer,
                app: app.clone(),
                settings: settings.clone(),
                tls: self.tls.clone(),
                stop: stopped.clone(),
            };
            connections.spawn(task.run(stream, permit));
        }
        // Every connection holds a receiver until it ends, so this reaches them all.
        let _no_receivers = stop.send(true);
        drop(listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("http", &self.http)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Global,
    Source,
}

/// Answers an over-cap connection with a short JSON error and closes it.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let (status, code, message) = match refusal {
        Refusal::Global => (
            "503 Service Unavailable",
            "too_many_connections",
            "the server is at its connection limit; retry shortly",
        ),
        Refusal::Source => (
            "429 Too Many Requests",
            "too_many_connections_from_source",
            "too many open connections from this address; close some and retry",
        ),
    };
    let body = format!(r#"{{"error":"{code}","message":"{message}"}}"#);
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    drop(tokio::time::timeout(REFUSAL_WRITE, write).await);
}

/// The address a listener is bound to, for the log.
pub fn local_addr(listener: &TcpListener) -> Option<SocketAddr> {
    listener.local_addr().ok()
}
