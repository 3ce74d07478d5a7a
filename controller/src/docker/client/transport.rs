//! The mutual-TLS transport to the node's daemon: one pooled hyper client, so requests reuse
//! kept-alive connections instead of paying a TCP and TLS handshake each (bollard's own TLS
//! transport keeps no idle connection). Hijacked streams (attach, exec) take their connection
//! out of the pool. [`client_config`] is also the egress admin client's TLS set-up.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::{BollardRequest, ClientVersion, Docker};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// How long an idle connection is kept.
const IDLE: Duration = Duration::from_secs(30);
/// Most idle connections kept to the daemon.
const MAX_IDLE: usize = 32;

/// A rustls client configuration trusting only `dir/ca.pem` and presenting `dir/cert.pem`
/// with `dir/key.pem` (ring, TLS 1.2 and 1.3, HTTP/1.1); the error names the file.
pub fn client_config(dir: &Path) -> Result<ClientConfig, String> {
    let err = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut roots = RootCertStore::empty();
    let ca = CertificateDer::pem_file_iter(dir.join("ca.pem")).map_err(|e| err("ca.pem", &e))?;
    for cert in ca {
        roots
            .add(cert.map_err(|e| err("ca.pem", &e))?)
            .map_err(|e| err("ca.pem", &e))?;
    }
    let certs = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .map_err(|e| err("cert.pem", &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err("cert.pem", &e))?;
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).map_err(|e| err("key.pem", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err("protocols", &e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| err("client certificate", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A bollard handle on `https://host:port` over a pooled mutual-TLS client from `cert_dir`.
pub(super) fn pooled_tls(
    host: &str,
    port: u16,
    cert_dir: &Path,
    timeout_s: u64,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let mut config =
        client_config(cert_dir).map_err(|message| bollard::errors::Error::IOError {
            err: std::io::Error::other(message),
        })?;
    // The connector sets ALPN itself (`enable_http1`).
    config.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client = Arc::new(
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(MAX_IDLE)
            .build(https),
    );
    let addr = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = Arc::clone(&client);
            async move { Ok(client.request(request).await?) }
        },
        Some(addr),
        timeout_s,
        version,
    )
}
