//! `airlock health`: a container health check for images without a shell or curl (the
//! controller image is `FROM scratch`). It sends `GET PATH` to an address on the container's
//! own network namespace and succeeds on a `200`. When `AIRLOCK_TLS_CERT` is set (the same
//! variable `serve` in that container reads), it speaks HTTPS and accepts only a server that
//! presents exactly that certificate (the leaf, pinned), so it needs no CA file or name.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::ENV_TLS_CERT;

/// Arguments of `airlock health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The API's address.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// The path to ask (`/healthz` for liveness, `/readyz` for readiness).
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// How long the whole check may take, in seconds.
    #[arg(long, default_value_t = 3)]
    pub timeout_s: u64,
    /// Speak HTTPS and accept only the server certificate in this PEM file (its first
    /// certificate). Default: `AIRLOCK_TLS_CERT` when set, else plain HTTP.
    #[arg(long, value_name = "PEM")]
    pub pin: Option<PathBuf>,
}

// === impl HealthArgs ===

impl HealthArgs {
    /// Runs the check; `Ok(false)` when the server answered something other than 200.
    pub fn run(&self, out: &mut impl Write) -> anyhow::Result<bool> {
        let pin = self.pin.clone().or_else(|| {
            std::env::var_os(ENV_TLS_CERT)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let limit = Duration::from_secs(self.timeout_s.max(1));
        let stream = TcpStream::connect_timeout(&self.addr, limit)?;
        stream.set_read_timeout(Some(limit))?;
        stream.set_write_timeout(Some(limit))?;
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.path, self.addr
        );
        let mut head = [0u8; 64];
        let n = match pin {
            None => exchange(stream, request.as_bytes(), &mut head)?,
            Some(pin) => {
                let config = pinned_client(&pin)?;
                let name = ServerName::IpAddress(self.addr.ip().into());
                let connection = ClientConnection::new(config, name)?;
                let tls = StreamOwned::new(connection, stream);
                exchange(tls, request.as_bytes(), &mut head)?
            }
        };
        let status_line = String::from_utf8_lossy(&head[..n]);
        let status_line = status_line.lines().next().unwrap_or_default();
        writeln!(out, "{} {}: {status_line}", self.addr, self.path)?;
        Ok(status_line.split_whitespace().nth(1) == Some("200"))
    }
}

/// Writes `request` and reads the start of the answer into `head`.
fn exchange(
    mut stream: impl Read + Write,
    request: &[u8],
    head: &mut [u8],
) -> anyhow::Result<usize> {
    stream.write_all(request)?;
    stream.flush()?;
    Ok(stream.read(head)?)
}

/// A TLS client that accepts only the first certificate of the PEM file at `pin`.
fn pinned_client(pin: &Path) -> anyhow::Result<Arc<ClientConfig>> {
    let leaf = CertificateDer::pem_file_iter(pin)
        .with_context(|| format!("{}: not a readable PEM certificate", pin.display()))?
        .next()
        .with_context(|| format!("{}: no CERTIFICATE block", pin.display()))?
        .with_context(|| format!("{}: not a PEM certificate", pin.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Pinned {
        leaf,
        provider: provider.clone(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts exactly one end-entity certificate; the handshake signatures are still checked.
#[derive(Debug)]
struct Pinned {
    leaf: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.leaf.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the pinned one".to_owned(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
