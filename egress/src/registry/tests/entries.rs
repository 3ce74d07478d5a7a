//! Registry tests of entries: generation fencing, revocation, budget carry-over, validation,
//! listing, credential hashes and ceilings.

use super::*;

#[test]
fn generation_fencing() {
    let registry = Registry::controlled();
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "t", 5)).unwrap(),
        UpsertOutcome::Created
    );
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "t", 5)).unwrap(),
        UpsertOutcome::Unchanged
    );
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "t", 4)).unwrap_err(),
        RegistryError::StaleGeneration {
            current: 5,
            offered: 4
        }
    );
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "other", 5)).unwrap_err(),
        RegistryError::GenerationConflict { generation: 5 }
    );
    assert_eq!(
        registry
            .upsert(entry_with("a", A_ADDR, "t", 5, r#"{"allow_ports":[443]}"#))
            .unwrap_err(),
        RegistryError::GenerationConflict { generation: 5 }
    );
    assert_eq!(
        registry.upsert(entry("a", A_ADDR, "t2", 6)).unwrap(),
        UpsertOutcome::Replaced { previous: 5 }
    );
    let ctx = registry
        .identify(ip(A_ADDR), Some(basic_credential("a", "t2").as_bytes()))
        .unwrap();
    assert_eq!(ctx.generation, 6);
    assert_eq!(
        registry
            .identify(ip(A_ADDR), Some(basic_credential("a", "t").as_bytes()))
            .unwrap_err(),
        IdentityError::BadCredential,
        "the old token stops working with the new generation"
    );
}

#[test]
fn replacement_and_removal_fire_the_revocation_token() {
    let registry = Registry::controlled();
    registry.upsert(entry("a", A_ADDR, "t", 1)).unwrap();
    let cred = basic_credential("a", "t");
    let gen1 = registry
        .identify(ip(A_ADDR), Some(cred.as_bytes()))
        .unwrap();
    // An idempotent re-push does not revoke.
    registry.upsert(entry("a", A_ADDR, "t", 1)).unwrap();
    assert!(!gen1.revoked.is_cancelled());
    // A refused stale push does not revoke either.
    assert!(registry.upsert(entry("a", A_ADDR, "t", 0)).is_err());
    assert!(!gen1.revoked.is_cancelled());
    registry.upsert(entry("a", A_ADDR, "t", 2)).unwrap();
    assert!(gen1.revoked.is_cancelled(), "gen 1 tunnels must close");
    let gen2 = registry
        .identify(ip(A_ADDR), Some(cred.as_bytes()))
        .unwrap();
    assert!(!gen2.revoked.is_cancelled());
    assert!(registry.remove("a"));
    assert!(gen2.revoked.is_cancelled(), "removal closes everything");
    assert!(!registry.remove("a"), "remove is idempotent");
    assert_eq!(
        registry
            .identify(ip(A_ADDR), Some(cred.as_bytes()))
            .unwrap_err(),
        IdentityError::UnknownSource
    );
}

#[test]
fn other_sandboxes_are_not_revoked() {
    let registry = two_sandboxes();
    let b = registry
        .identify(
            ip(B_ADDR),
            Some(basic_credential("b", "token-b").as_bytes()),
        )
        .unwrap();
    registry.upsert(entry("a", A_ADDR, "token-a", 2)).unwrap();
    registry.remove("a");
    assert!(!b.revoked.is_cancelled());
}

#[test]
fn budget_survives_generation_change_with_new_limits() {
    let registry = Registry::controlled();
    registry
        .upsert(entry_with(
            "a",
            A_ADDR,
            "t",
            1,
            r#"{"max_bytes":100,"max_connections":1}"#,
        ))
        .unwrap();
    let cred = basic_credential("a", "t");
    let gen1 = registry
        .identify(ip(A_ADDR), Some(cred.as_bytes()))
        .unwrap();
    let _permit = gen1.budget.open().unwrap();
    gen1.budget.add_bytes(90).unwrap();
    assert!(gen1.budget.open().is_err());
    registry
        .upsert(entry_with(
            "a",
            A_ADDR,
            "t",
            2,
            r#"{"max_bytes":1000,"max_connections":2}"#,
        ))
        .unwrap();
    let gen2 = registry
        .identify(ip(A_ADDR), Some(cred.as_bytes()))
        .unwrap();
    assert!(Arc::ptr_eq(&gen1.budget, &gen2.budget));
    assert_eq!(
        gen2.budget.bytes_used(),
        90,
        "a new policy does not reset the count"
    );
    assert_eq!(gen2.budget.max_bytes(), Some(1000));
    assert!(
        gen2.budget.open().is_ok(),
        "the raised connection limit applies"
    );
}

#[test]
fn addresses_cannot_be_shared_between_sandboxes() {
    let registry = two_sandboxes();
    assert_eq!(
        registry.upsert(entry("c", A_ADDR, "t", 1)).unwrap_err(),
        RegistryError::AddressInUse {
            addr: ip(A_ADDR),
            owner: "a".to_owned()
        }
    );
    // A sandbox may move to a new address; the old one is freed.
    registry
        .upsert(entry("a", "10.213.0.3", "token-a", 2))
        .unwrap();
    registry.upsert(entry("c", A_ADDR, "t", 1)).unwrap();
    assert_eq!(registry.len(), 3);
}

#[test]
fn entries_are_validated() {
    let registry = Registry::controlled();
    for bad_id in ["", "a:b", "a/b", "a b", &"x".repeat(129)] {
        assert_eq!(
            registry.upsert(entry(bad_id, A_ADDR, "t", 1)).unwrap_err(),
            RegistryError::InvalidSandboxId,
            "{bad_id:?}"
        );
    }
    let mut bad_hash = entry("a", A_ADDR, "t", 1);
    bad_hash.credential_hash = "abc".to_owned();
    assert_eq!(
        registry.upsert(bad_hash).unwrap_err(),
        RegistryError::InvalidCredentialHash
    );
    let mut not_hex = entry("a", A_ADDR, "t", 1);
    not_hex.credential_hash = "g".repeat(64);
    assert_eq!(
        registry.upsert(not_hex).unwrap_err(),
        RegistryError::InvalidCredentialHash
    );
    let mut no_addrs = entry("a", A_ADDR, "t", 1);
    no_addrs.source_addrs.clear();
    assert_eq!(
        registry.upsert(no_addrs).unwrap_err(),
        RegistryError::NoSourceAddrs
    );
    // Uppercase hex is accepted and normalised.
    let mut upper = entry("a", A_ADDR, "t", 1);
    upper.credential_hash.make_ascii_uppercase();
    registry.upsert(upper).unwrap();
    assert!(registry
        .identify(ip(A_ADDR), Some(basic_credential("a", "t").as_bytes()))
        .is_ok());
    assert!(!registry.is_empty());
}

#[test]
fn list_is_sorted_and_boot_ids_differ() {
    let registry = two_sandboxes();
    let ids: Vec<_> = registry.list().into_iter().map(|s| s.sandbox_id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(registry.boot_id().len(), 32);
    assert_ne!(registry.boot_id(), Registry::controlled().boot_id());
    let debug = format!("{:?}", registry.get("a").unwrap());
    assert!(
        !debug.contains(&credential_hash("token-a")),
        "hash is redacted: {debug}"
    );
}

#[test]
fn credential_hash_is_lowercase_hex_sha256() {
    assert_eq!(
        credential_hash("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(basic_credential("a", "b"), "Basic YTpi");
}

#[test]
fn standalone_policy_reload_revokes_and_keeps_the_budget() {
    let registry = Registry::standalone(Arc::new(Policy::default()), None);
    let before = registry.identify(ip("127.0.0.1"), None).unwrap();
    before.budget.add_bytes(5).unwrap();
    let limited = Policy::compile(&spec(r#"{"max_bytes":10}"#)).unwrap();
    registry.replace_default_policy(Arc::new(limited)).unwrap();
    assert!(before.revoked.is_cancelled());
    let after = registry.identify(ip("127.0.0.1"), None).unwrap();
    assert_eq!(after.generation, 1);
    assert!(!after.revoked.is_cancelled());
    assert!(Arc::ptr_eq(&before.budget, &after.budget));
    assert_eq!(after.budget.bytes_remaining(), Some(5));
    assert_eq!(
        Registry::controlled()
            .replace_default_policy(Arc::new(Policy::default()))
            .unwrap_err(),
        RegistryError::Controlled
    );
}

mod credential_props {
    use super::super::credential::{self, StoredCredential};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary header bytes never panic and never match a credential they do not encode.
        #[test]
        fn verify_never_panics_or_accepts_garbage(header in proptest::collection::vec(any::<u8>(), 0..200)) {
            let hash = credential::parse_hash(&credential_hash("secret")).unwrap();
            let stored = StoredCredential { sandbox_id: "a", hash: &hash };
            prop_assert!(credential::verify(&header, &stored).is_err());
        }

        /// Every (id, token) pair round-trips through the header encoding.
        #[test]
        fn basic_round_trips(id in "[A-Za-z0-9._-]{1,40}", token in "\\PC{0,60}") {
            let hash = credential::parse_hash(&credential_hash(&token)).unwrap();
            let stored = StoredCredential { sandbox_id: &id, hash: &hash };
            prop_assert!(credential::verify(basic_credential(&id, &token).as_bytes(), &stored).is_ok());
            let other = StoredCredential { sandbox_id: "zz-other", hash: &hash };
            prop_assert!(credential::verify(basic_credential(&id, &token).as_bytes(), &other).is_err());
        }

        /// Hash parsing accepts exactly 64 hex digits.
        #[test]
        fn parse_hash_is_strict(s in "\\PC{0,80}") {
            let ok = s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
            prop_assert_eq!(credential::parse_hash(&s).is_some(), ok);
        }
    }
}

#[test]
fn ceilings_are_validated_kept_and_updated_in_place() {
    let registry = Registry::controlled();
    let mut e = entry("a", A_ADDR, "token-a", 1);
    e.ceiling = Some("role:member@3f2a9c1e".into());
    registry.upsert(e.clone()).unwrap();
    let ctx = registry
        .identify(
            ip(A_ADDR),
            Some(basic_credential("a", "token-a").as_bytes()),
        )
        .unwrap();
    assert_eq!(ctx.ceiling.as_deref(), Some("role:member@3f2a9c1e"));
    // The same generation with only a new label: taken over, nothing revoked.
    e.ceiling = Some("user:42@0badcafe".into());
    assert_eq!(
        registry.upsert(e.clone()).unwrap(),
        UpsertOutcome::Unchanged
    );
    assert!(!ctx.revoked.is_cancelled());
    let owner = registry.owner_of(ip("::ffff:10.213.0.2")).unwrap();
    assert_eq!(
        (
            owner.sandbox.as_str(),
            owner.generation,
            owner.ceiling.as_deref()
        ),
        ("a", 1, Some("user:42@0badcafe"))
    );
    assert!(registry.owner_of(ip(B_ADDR)).is_none());
    for bad in ["", "tab\there", "\u{e9}", &"x".repeat(129)] {
        e.ceiling = Some(bad.to_owned());
        e.generation = 2;
        assert_eq!(
            registry.upsert(e.clone()),
            Err(RegistryError::InvalidCeiling),
            "{bad:?}"
        );
    }
    assert!(validate_ceiling(&"x".repeat(128)).is_ok());
}
