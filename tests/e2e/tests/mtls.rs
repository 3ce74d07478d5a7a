//! The DinD over mTLS: the full create/run/logs/remove cycle with bollard, and what the nested
//! dockerd refuses (no client certificate, a foreign-CA certificate, plain HTTP, port 2375).
// Helpers here are test code as much as the #[test] functions: a failed step must fail the
// test loudly, so they unwrap and panic like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use airlock_certs::InitOptions;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use e2e::{dind_with_testbox, Timing};
use futures_util::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use test_support::dind::{connect_mtls, install_crypto_provider, DindOptions, TESTBOX_IMAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const IO_LIMIT: Duration = Duration::from_secs(10);
const PING: &[u8] = b"GET /_ping HTTP/1.1\r\nHost: dind\r\nConnection: close\r\n\r\n";

#[tokio::test]
async fn mtls_cycle() {
    let mut timing = Timing::start("mtls_cycle");
    let dind = dind_with_testbox(DindOptions::new("mtls_cycle"), &mut timing)
        .await
        .unwrap();
    let docker = dind.docker();
    let version = docker.version().await.unwrap();
    // The fixture negotiated the API version down to the nested daemon's (1.41 for the offline
    // image's dockerd 20.10; bollard's default is newer).
    let negotiated = docker.client_version();
    let negotiated = format!("{}.{}", negotiated.major_version, negotiated.minor_version);
    eprintln!("nested dockerd {:?}, API {negotiated}", version.version);
    assert_eq!(version.api_version.as_deref(), Some(negotiated.as_str()));

    let id = uuid::Uuid::new_v4().simple().to_string();
    let net = format!("e2e-cycle-net-{}", &id[..12]);
    let name = format!("e2e-cycle-hello-{}", &id[..12]);
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            internal: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let body = ContainerCreateBody {
        image: Some(TESTBOX_IMAGE.to_owned()),
        cmd: Some(vec!["echo".into(), "hello".into()]),
        host_config: Some(HostConfig {
            network_mode: Some(net.clone()),
            cap_drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    docker.create_container(Some(options), body).await.unwrap();
    docker.start_container(&name, None).await.unwrap();
    let exit = docker
        .wait_container(&name, None::<WaitContainerOptions>)
        .next()
        .await
        .expect("a wait status")
        .unwrap();
    assert_eq!(exit.status_code, 0);
    let logs: Vec<_> = docker
        .logs(
            &name,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
        .map(|chunk| chunk.unwrap().to_string())
        .collect()
        .await;
    assert_eq!(logs.concat(), "hello\n");
    timing.phase("cycle");

    docker
        .remove_container(&name, None::<RemoveContainerOptions>)
        .await
        .unwrap();
    docker.remove_network(&net).await.unwrap();
    assert!(docker.inspect_container(&name, None).await.is_err());
    assert!(docker.inspect_network(&net, None).await.is_err());
    timing.phase("remove");
}

#[tokio::test]
async fn mtls_refusals() {
    let mut timing = Timing::start("mtls_refusals");
    let dind = dind_with_testbox(DindOptions::new("mtls_refusals"), &mut timing)
        .await
        .unwrap();
    let ca = dind.cert_dir().join("ca/cert.pem");
    let client = dind.cert_dir().join("client");
    let (cert, key) = (client.join("cert.pem"), client.join("key.pem"));
    let foreign = tempfile::tempdir().unwrap();
    airlock_certs::init(&InitOptions::new(foreign.path())).unwrap();
    let (foreign_cert, foreign_key) = (
        foreign.path().join("client/cert.pem"),
        foreign.path().join("client/key.pem"),
    );

    // Positive control: the same raw client with the right certificate gets a 200 "OK".
    let good = tls_request(dind.endpoint(), &ca, Some((&cert, &key))).await;
    let good = good.expect("the controller's certificate is accepted");
    assert!(good.starts_with("HTTP/1.1 200"), "{good}");
    assert!(good.ends_with("OK"), "{good}");

    let no_cert = tls_request(dind.endpoint(), &ca, None).await;
    assert_refused("no client certificate", &no_cert);

    let foreign_raw = tls_request(dind.endpoint(), &ca, Some((&foreign_cert, &foreign_key))).await;
    assert_refused("foreign-CA client certificate", &foreign_raw);
    let foreign_bollard = connect_mtls(dind.endpoint(), &ca, &foreign_cert, &foreign_key).unwrap();
    let ping = foreign_bollard.ping().await;
    assert!(ping.is_err(), "bollard with a foreign-CA cert: {ping:?}");

    let plain = plain_request(dind.endpoint()).await.unwrap();
    assert!(
        !plain.contains(" 200 "),
        "plain HTTP must not be served: {plain}"
    );
    eprintln!("plain HTTP to 2376 answered: {plain:?}");

    let port_2375 = SocketAddr::new(dind.endpoint().ip(), 2375);
    let closed = connect(port_2375).await;
    assert_eq!(
        closed.as_ref().map_err(std::io::Error::kind).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{closed:?}"
    );
    let listening = dind
        .exec_in_dind(&["busybox", "netstat", "-ltn"])
        .await
        .unwrap();
    assert!(listening.stdout.contains(":2376"), "{listening:?}");
    assert!(!listening.stdout.contains(":2375"), "{listening:?}");
    timing.phase("checks");
}

/// The outcome as the client saw it: `Ok(response)` or `Err(where it failed)`.
fn assert_refused(case: &str, outcome: &Result<String, String>) {
    eprintln!("{case}: {outcome:?}");
    if let Ok(response) = outcome {
        assert!(
            !response.contains(" 200 ") && !response.ends_with("OK"),
            "{case} must be refused, got {response}"
        );
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    tokio::time::timeout(IO_LIMIT, socket.connect(addr)).await?
}

/// Sends `GET /_ping` over TLS, trusting `ca`, optionally presenting a client certificate.
async fn tls_request(
    addr: SocketAddr,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<String, String> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let exchange = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tls.write_all(PING)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        tls.read_to_end(&mut response)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(IO_LIMIT, exchange)
        .await
        .map_err(|elapsed| elapsed.to_string())?
}

/// Sends a plain-text HTTP request to the TLS port and returns whatever comes back.
async fn plain_request(addr: SocketAddr) -> std::io::Result<String> {
    let mut tcp = connect(addr).await?;
    tcp.write_all(PING).await?;
    let mut response = Vec::new();
    tokio::time::timeout(IO_LIMIT, tcp.read_to_end(&mut response)).await??;
    Ok(String::from_utf8_lossy(&response).into_owned())
}
