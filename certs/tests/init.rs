//! `airlock_certs::init`: layout, modes, idempotence, renewal, refusal of bad input, and real
//! TLS handshakes with the files it writes (rustls in-process, `openssl verify` as a second
//! opinion).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test helpers may fail loudly.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use airlock_certs::{init, init_at, ActionKind, CertsError, InitOptions, InitReport, San};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use time::{Duration, OffsetDateTime};

const FILES: [&str; 8] = [
    "ca/cert.pem",
    "ca/key.pem",
    "server/ca.pem",
    "server/cert.pem",
    "server/key.pem",
    "client/ca.pem",
    "client/cert.pem",
    "client/key.pem",
];

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    FILES
        .iter()
        .map(|f| (f.to_string(), fs::read(dir.join(f)).unwrap()))
        .collect()
}

fn kinds(report: &InitReport) -> Vec<(String, ActionKind)> {
    report
        .actions
        .iter()
        .map(|a| (a.path.display().to_string(), a.kind.clone()))
        .collect()
}

fn opts(dir: &Path) -> InitOptions {
    InitOptions::new(dir).san("10.231.7.2".parse().unwrap())
}

#[test]
fn writes_layout_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let report = init(&opts(tmp.path())).unwrap();
    assert_eq!(report.actions.len(), FILES.len());
    assert!(report.actions.iter().all(|a| a.kind == ActionKind::Created));
    for f in FILES {
        let mode = fs::metadata(tmp.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let want = if f.ends_with("key.pem") { 0o600 } else { 0o644 };
        assert_eq!(mode, want, "{f}");
    }
    let ca_mode = fs::metadata(tmp.path().join("ca"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(ca_mode, 0o700);
    // No temporary files are left behind.
    for dir in ["ca", "server", "client"] {
        let n = fs::read_dir(tmp.path().join(dir)).unwrap().count();
        assert_eq!(n, if dir == "ca" { 2 } else { 3 }, "{dir}");
    }
}

#[test]
fn second_run_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    let before = snapshot(tmp.path());
    let report = init(&opts(tmp.path())).unwrap();
    assert!(!report.changed(), "{report}");
    assert_eq!(snapshot(tmp.path()), before);
    assert!(report.to_string().lines().all(|l| l.starts_with("kept")));
}

#[test]
fn new_san_reissues_only_the_server_leaf() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    let before = snapshot(tmp.path());
    let report = init(&opts(tmp.path()).san("dind.internal".parse().unwrap())).unwrap();
    let after = snapshot(tmp.path());
    for ((name, old), (_, new)) in before.iter().zip(&after) {
        let changed = name == "server/cert.pem" || name == "server/key.pem";
        assert_eq!(old != new, changed, "{name}");
    }
    let reissued: Vec<_> = kinds(&report)
        .into_iter()
        .filter(|(_, k)| matches!(k, ActionKind::Reissued(_)))
        .collect();
    assert_eq!(
        reissued,
        vec![
            (
                "server/cert.pem".to_string(),
                ActionKind::Reissued("lacked SAN dind.internal".into())
            ),
            (
                "server/key.pem".to_string(),
                ActionKind::Reissued("lacked SAN dind.internal".into())
            ),
        ]
    );
    let info = airlock_certs::inspect_cert(
        &fs::read_to_string(tmp.path().join("server/cert.pem")).unwrap(),
        Path::new("server/cert.pem"),
    )
    .unwrap();
    for san in [
        "localhost",
        "127.0.0.1",
        "::1",
        "10.231.7.2",
        "dind.internal",
    ] {
        assert!(info.sans.contains(&san.parse::<San>().unwrap()), "{san}");
    }
}

#[test]
fn leaves_near_expiry_are_reissued_and_the_ca_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    init_at(&opts(tmp.path()).clone(), now).unwrap();
    let ca_before = fs::read(tmp.path().join("ca/cert.pem")).unwrap();

    // 800 of 825 days later the leaves expire within 30 days.
    let report = init_at(&opts(tmp.path()), now + Duration::days(800)).unwrap();
    assert_eq!(fs::read(tmp.path().join("ca/cert.pem")).unwrap(), ca_before);
    for (path, kind) in kinds(&report) {
        let leaf = path.ends_with("cert.pem") || path.ends_with("key.pem");
        if leaf && !path.starts_with("ca/") {
            assert!(
                matches!(&kind, ActionKind::Reissued(why) if why.contains("within 30 days")),
                "{path}: {kind:?}"
            );
        } else {
            assert_eq!(kind, ActionKind::Kept, "{path}");
        }
    }

    // Past the end they are reported as expired.
    let report = init_at(&opts(tmp.path()), now + Duration::days(800 + 900)).unwrap();
    assert!(report.to_string().contains("expired"), "{report}");
}

#[test]
fn replaced_ca_forces_new_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    fs::remove_file(tmp.path().join("ca/cert.pem")).unwrap();
    fs::remove_file(tmp.path().join("ca/key.pem")).unwrap();
    let report = init(&opts(tmp.path())).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("reissued  server/ca.pem (differs from ca/cert.pem)"),
        "{text}"
    );
    assert!(
        text.contains("reissued  client/cert.pem (issued by another CA)"),
        "{text}"
    );
    verify_with_openssl(tmp.path());
}

#[test]
fn loose_key_permissions_are_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    let key = tmp.path().join("client/key.pem");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let report = init(&opts(tmp.path())).unwrap();
    assert!(report.to_string().contains("chmod 600 client/key.pem"));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn corrupt_files_are_refused_and_nothing_is_written() {
    for victim in [
        "ca/key.pem",
        "ca/cert.pem",
        "server/cert.pem",
        "client/key.pem",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        init(&opts(tmp.path())).unwrap();
        // A new SAN means the run would write the server leaf, if it got that far.
        fs::write(tmp.path().join(victim), "-----BEGIN GARBAGE-----\nxx\n").unwrap();
        let before = snapshot(tmp.path());
        let err = init(&opts(tmp.path()).san("new.example".parse().unwrap())).unwrap_err();
        assert!(matches!(err, CertsError::Corrupt { .. }), "{victim}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(victim), "{msg}");
        assert!(msg.contains("move it away"), "{msg}");
        assert_eq!(snapshot(tmp.path()), before, "{victim}");
    }
}

#[test]
fn half_a_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    fs::remove_file(tmp.path().join("ca/key.pem")).unwrap();
    let err = init(&opts(tmp.path())).unwrap_err().to_string();
    assert!(err.contains("ca/key.pem is corrupt"), "{err}");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn unusable_output_directory_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, "x").unwrap();
    let err = init(&InitOptions::new(file.join("certs"))).unwrap_err();
    assert!(matches!(err, CertsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");

    let err = init(&InitOptions::new(&file)).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

#[test]
fn bad_days_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for days in [0, 3651] {
        let mut o = opts(tmp.path());
        o.days = days;
        let err = init(&o).unwrap_err();
        assert!(matches!(err, CertsError::InvalidOption(_)), "{err}");
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn openssl_verifies_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    init(&opts(tmp.path())).unwrap();
    verify_with_openssl(tmp.path());
}

fn verify_with_openssl(dir: &Path) {
    for (leaf, purpose) in [("server", "sslserver"), ("client", "sslclient")] {
        let out = Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(dir.join(leaf).join("ca.pem"))
            .arg(dir.join(leaf).join("cert.pem"))
            .output()
            .expect("openssl must be installed (Debian package openssl)");
        assert!(
            out.status.success(),
            "{leaf}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// --- rustls handshakes ---

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn roots(path: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(path) {
        roots.add(c).unwrap();
    }
    Arc::new(roots)
}

fn server_config(dir: &Path) -> Arc<rustls::ServerConfig> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots(&dir.join("server/ca.pem")),
        provider(),
    )
    .build()
    .unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certs(&dir.join("server/cert.pem")),
                key(&dir.join("server/key.pem")),
            )
            .unwrap(),
    )
}

fn client_config(ca_of: &Path, client_of: Option<&Path>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&ca_of.join("client/ca.pem")));
    Arc::new(match client_of {
        Some(dir) => builder
            .with_client_auth_cert(
                certs(&dir.join("client/cert.pem")),
                key(&dir.join("client/key.pem")),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Drives a full TLS handshake in memory; returns the first error either side saw.
fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    name: &str,
) -> Result<(), rustls::Error> {
    let mut c =
        rustls::ClientConnection::new(client, ServerName::try_from(name.to_string()).unwrap())?;
    let mut s = rustls::ServerConnection::new(server)?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        s.write_tls(&mut buf).unwrap();
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // TLS 1.3: the server learns of a bad client certificate after the client finishes.
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets()?;
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn rustls_handshake_accepts_our_client_and_refuses_others() {
    let ours = tempfile::tempdir().unwrap();
    let foreign = tempfile::tempdir().unwrap();
    init(&opts(ours.path())).unwrap();
    init(&opts(foreign.path())).unwrap();
    let server = server_config(ours.path());

    for name in ["localhost", "127.0.0.1", "10.231.7.2"] {
        handshake(
            client_config(ours.path(), Some(ours.path())),
            server.clone(),
            name,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // A name that is not a SAN.
    assert!(handshake(
        client_config(ours.path(), Some(ours.path())),
        server.clone(),
        "other.example"
    )
    .is_err());
    // A client certificate from another CA.
    assert!(handshake(
        client_config(ours.path(), Some(foreign.path())),
        server.clone(),
        "localhost"
    )
    .is_err());
    // No client certificate at all.
    assert!(handshake(
        client_config(ours.path(), None),
        server.clone(),
        "localhost"
    )
    .is_err());
    // A client that trusts another CA refuses our server.
    assert!(handshake(
        client_config(foreign.path(), Some(ours.path())),
        server,
        "localhost"
    )
    .is_err());
}

/// `--api-san`: an `api/` server leaf from the same CA, with the loopback names and the given
/// ones, key 0600; kept on a second run, and absent without `--api-san`.
#[test]
fn api_leaf_is_issued_only_when_asked_and_kept_after() {
    let dir = tempfile::tempdir().unwrap();
    init(&opts(dir.path())).unwrap();
    assert!(!dir.path().join("api").exists());
    let mut with_api = opts(dir.path());
    with_api.api_sans = vec!["api.example.test".parse().unwrap()];
    init(&with_api).unwrap();
    let pem = fs::read_to_string(dir.path().join("api/cert.pem")).unwrap();
    let info = airlock_certs::inspect_cert(&pem, Path::new("api/cert.pem")).unwrap();
    assert!(!info.is_ca);
    for san in ["api.example.test", "localhost", "127.0.0.1"] {
        let san: San = san.parse().unwrap();
        assert!(info.sans.contains(&san), "{san:?} in {:?}", info.sans);
    }
    let mode = fs::metadata(dir.path().join("api/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = snapshot(dir.path());
    let again = init(&with_api).unwrap();
    assert!(!again.changed(), "{again}");
    assert_eq!(snapshot(dir.path()), before);
}
