//! Registry tests: the identity matrix (source address and credential together), the error codes,
//! and the two modes; entries, generations and budgets are in `tests/entries.rs`.

use super::*;

mod entries;

const A_ADDR: &str = "10.213.0.2";
const B_ADDR: &str = "10.213.0.10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn spec(json: &str) -> PolicySpec {
    serde_json::from_str(json).unwrap()
}

fn entry(id: &str, addr: &str, token: &str, generation: u64) -> SandboxEntry {
    entry_with(id, addr, token, generation, "{}")
}

fn entry_with(id: &str, addr: &str, token: &str, generation: u64, policy: &str) -> SandboxEntry {
    let policy_spec = spec(policy);
    SandboxEntry {
        sandbox_id: id.to_owned(),
        source_addrs: vec![ip(addr)],
        credential_hash: credential_hash(token),
        policy: Arc::new(Policy::compile(&policy_spec).unwrap()),
        policy_spec,
        generation,
        ceiling: None,
        inspection: None,
    }
}

fn two_sandboxes() -> Registry {
    let registry = Registry::controlled();
    registry.upsert(entry("a", A_ADDR, "token-a", 1)).unwrap();
    registry.upsert(entry("b", B_ADDR, "token-b", 1)).unwrap();
    registry
}

#[test]
fn identity_matrix() {
    let registry = two_sandboxes();
    let cred_a = basic_credential("a", "token-a");
    let cred_b = basic_credential("b", "token-b");
    let a_with_b_token = basic_credential("a", "token-b");
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Result<&'a str, IdentityError>,
    );
    let cases: &[Case<'_>] = &[
        (
            "right source, right credential",
            A_ADDR,
            Some(&cred_a),
            Ok("a"),
        ),
        ("B from B's address", B_ADDR, Some(&cred_b), Ok("b")),
        (
            "mapped IPv6 source",
            "::ffff:10.213.0.2",
            Some(&cred_a),
            Ok("a"),
        ),
        (
            "no credential",
            A_ADDR,
            None,
            Err(IdentityError::MissingCredential),
        ),
        (
            "wrong token",
            A_ADDR,
            Some(&basic_credential("a", "nope")),
            Err(IdentityError::BadCredential),
        ),
        (
            "B's credential from A's address",
            A_ADDR,
            Some(&cred_b),
            Err(IdentityError::BadCredential),
        ),
        (
            "A's id with B's token",
            A_ADDR,
            Some(&a_with_b_token),
            Err(IdentityError::BadCredential),
        ),
        (
            "unknown source with a valid credential",
            "10.213.0.99",
            Some(&cred_a),
            Err(IdentityError::UnknownSource),
        ),
        (
            "unknown source without credential",
            "10.213.0.99",
            None,
            Err(IdentityError::UnknownSource),
        ),
        (
            "not Basic",
            A_ADDR,
            Some("Bearer token-a"),
            Err(IdentityError::BadCredential),
        ),
        (
            "bad base64",
            A_ADDR,
            Some("Basic !!!"),
            Err(IdentityError::BadCredential),
        ),
        (
            "no colon",
            A_ADDR,
            Some("Basic YQ=="),
            Err(IdentityError::BadCredential),
        ),
        (
            "empty header",
            A_ADDR,
            Some(""),
            Err(IdentityError::BadCredential),
        ),
    ];
    for (name, src, header, want) in cases {
        let got = registry
            .identify(ip(src), header.map(str::as_bytes))
            .map(|ctx| ctx.sandbox.unwrap());
        assert_eq!(
            got.as_deref().map_err(|e| *e),
            want.as_ref().map(|s| *s).map_err(|e| *e),
            "{name}"
        );
    }
}

#[test]
fn scheme_is_case_insensitive_and_whitespace_tolerated() {
    let registry = two_sandboxes();
    let cred = basic_credential("a", "token-a");
    let header = format!("  bAsIc   {}  ", cred.trim_start_matches("Basic "));
    let ctx = registry
        .identify(ip(A_ADDR), Some(header.as_bytes()))
        .unwrap();
    assert_eq!(ctx.sandbox.as_deref(), Some("a"));
    assert_eq!(ctx.generation, 1);
}

#[test]
fn token_may_contain_colons() {
    let registry = Registry::controlled();
    registry.upsert(entry("c", A_ADDR, "to:ken", 1)).unwrap();
    let cred = basic_credential("c", "to:ken");
    assert!(registry.identify(ip(A_ADDR), Some(cred.as_bytes())).is_ok());
}

#[test]
fn error_codes_and_statuses() {
    assert_eq!(IdentityError::MissingCredential.status(), 407);
    assert_eq!(IdentityError::BadCredential.status(), 403);
    assert_eq!(IdentityError::UnknownSource.status(), 403);
    assert_eq!(
        IdentityError::MissingCredential.code(),
        "proxy_auth_required"
    );
    assert_eq!(IdentityError::BadCredential.code(), "bad_credential");
    assert_eq!(IdentityError::UnknownSource.code(), "unknown_source");
}

#[test]
fn empty_controlled_registry_denies_everyone() {
    let registry = Registry::controlled();
    let cred = basic_credential("a", "token-a");
    for src in ["127.0.0.1", "10.0.0.1", "::1"] {
        assert_eq!(
            registry
                .identify(ip(src), Some(cred.as_bytes()))
                .unwrap_err(),
            IdentityError::UnknownSource
        );
    }
}

#[test]
fn standalone_accepts_every_source_without_credential() {
    let policy = Arc::new(Policy::default());
    let registry = Registry::standalone(Arc::clone(&policy), None);
    for (src, header) in [
        ("127.0.0.1", None),
        ("2001:db8::1", Some(&b"Basic garbage"[..])),
    ] {
        let ctx = registry.identify(ip(src), header).unwrap();
        assert_eq!(ctx.sandbox, None);
        assert_eq!(ctx.generation, 0);
        assert!(Arc::ptr_eq(&ctx.policy, &policy));
    }
    assert!(!registry.is_controlled());
    assert_eq!(registry.len(), 0);
    assert!(registry.list().is_empty());
    assert!(!registry.remove("a"));
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "t", 1)).unwrap_err(),
        RegistryError::Standalone
    );
}
