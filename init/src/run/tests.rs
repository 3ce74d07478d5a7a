//! Settings and failure codes; the process behaviour is tested in real containers
//! (`tests/e2e/tests/init.rs`).
#![allow(clippy::unwrap_used)]

use super::*;

fn settings(pairs: &[(&str, &str)]) -> Result<Settings, Failure> {
    let map: std::collections::BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Settings::from_env(|name| map.get(name).cloned())
}

#[test]
fn defaults_wait_forever_with_no_writable_roots() {
    let s = settings(&[]).unwrap();
    assert_eq!(s.idle, None);
    assert!(s.writable_roots.is_empty());
    assert_eq!(s.ca_file, crate::trust::CA_FILE);
}

#[test]
fn settings_are_read_and_checked() {
    let s = settings(&[
        (IDLE_VAR, "30"),
        (WRITABLE_VAR, "/tmp::/home/agent"),
        (CA_FILE_VAR, "/x/ca"),
    ]);
    let s = s.unwrap();
    assert_eq!(s.idle, Some(Duration::from_secs(30)));
    assert_eq!(s.writable_roots, ["/tmp", "/home/agent"]);
    assert_eq!(s.ca_file, "/x/ca");
    assert_eq!(settings(&[(IDLE_VAR, "0")]).unwrap().idle, None);
    for bad in [
        (IDLE_VAR, "1s"),
        (WRITABLE_VAR, "tmp"),
        (WRITABLE_VAR, "/a/../b"),
        (CA_FILE_VAR, "/"),
    ] {
        let failure = settings(&[bad]).unwrap_err();
        assert_eq!(
            (failure.code(), failure.exit()),
            ("init_config", EXIT_CONFIG),
            "{bad:?}"
        );
    }
}

#[test]
fn exit_statuses() {
    let frame = Failure::Frame(FrameError::ArgvEmpty);
    assert_eq!((frame.code(), frame.exit()), ("argv_empty", EXIT_BAD_FRAME));
    let idle = Failure::IdleTimeout { seconds: 1 };
    assert_eq!((idle.code(), idle.exit()), ("idle_timeout", EXIT_NO_FRAME));
    let eof = Failure::Eof { got: 3 };
    assert_eq!(
        (eof.code(), eof.exit()),
        ("eof_before_frame", EXIT_NO_FRAME)
    );
    assert_eq!(Failure::Signalled { signal: 15 }.exit(), 143);
}

#[test]
fn the_trust_files_are_written_read_only_beside_each_other() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::env::temp_dir().join(format!("airlock-init-trust-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    let ca_file = root.join("tls/ca.pem");
    let pem = "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
    let written = seed::write_trust(ca_file.to_str().unwrap(), pem);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let bundle = std::fs::read_to_string(root.join("tls/bundle.pem"));
    let modes = [
        ca_file.clone(),
        root.join("tls/bundle.pem"),
        root.join("tls"),
    ]
    .map(|p| mode(&p));
    let ca = std::fs::read_to_string(&ca_file);
    // Clean up before asserting: the directory is 0555.
    std::fs::set_permissions(root.join("tls"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    written.unwrap();
    assert_eq!(ca.unwrap(), pem);
    assert!(bundle.unwrap().ends_with(pem));
    assert_eq!(modes, [0o444, 0o444, 0o555]);
}
