//! The client-side TLS handshake of a terminated tunnel. Each failure is its ledger reason:
//! `not_tls` (the first byte is not a TLS handshake record, or the hello does not parse),
//! `sni_mismatch` (no SNI, or one other than the CONNECT host), `client_rejected_ca` (the client
//! aborted with a certificate alert: it does not trust the sandbox's CA), `tls_handshake_failed`
//! and `tls_handshake_timeout`. A refused client gets no relay of any kind.

use std::sync::Arc;
use std::time::Duration;

use rustls::{AlertDescription, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use super::io::MeteredIo;

/// How long a client has to finish its handshake.
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS record type of a handshake message.
const TLS_HANDSHAKE: u8 = 0x16;

/// Completes the handshake for `host`, or says why not.
pub(super) async fn accept(
    mut io: MeteredIo,
    host: &str,
    config: impl FnOnce() -> Option<Arc<ServerConfig>>,
) -> Result<TlsStream<MeteredIo>, &'static str> {
    let handshake = async move {
        match io.fill_prefix().await {
            Ok(Some(TLS_HANDSHAKE)) => {}
            Ok(Some(_)) => return Err("not_tls"),
            Ok(None) | Err(_) => return Err("client_gone"),
        }
        let acceptor = rustls::server::Acceptor::default();
        let start = LazyConfigAcceptor::new(acceptor, io)
            .await
            .map_err(|_not_a_hello| "not_tls")?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        if !sni.is_some_and(|sni| sni.eq_ignore_ascii_case(host)) {
            return Err("sni_mismatch");
        }
        let config = config().ok_or("internal")?;
        start.into_stream(config).await.map_err(|e| classify(&e))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err("tls_handshake_timeout"))
}

/// A handshake error's ledger reason.
fn classify(error: &std::io::Error) -> &'static str {
    let rejected = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::AlertReceived(
                    AlertDescription::UnknownCA
                        | AlertDescription::BadCertificate
                        | AlertDescription::CertificateUnknown
                        | AlertDescription::UnsupportedCertificate
                        | AlertDescription::AccessDenied
                )
            )
        });
    if rejected {
        "client_rejected_ca"
    } else {
        "tls_handshake_failed"
    }
}
