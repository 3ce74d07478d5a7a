//! Unbound members: registration fencing, the refusal of their traffic whatever credential it
//! carries, claims, and address exclusivity between members and sandboxes.

use std::net::IpAddr;
use std::sync::Arc;

use airlock_egress_policy::{Policy, PolicySpec};

use crate::registry::{
    basic_credential, credential_hash, IdentityError, Registry, RegistryError, SandboxEntry,
    UpsertOutcome,
};

const M_ADDR: &str = "10.213.0.11";
const S_ADDR: &str = "10.213.0.3";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn entry(id: &str, addr: &str, generation: u64) -> SandboxEntry {
    let policy_spec = PolicySpec::default();
    SandboxEntry {
        sandbox_id: id.to_owned(),
        source_addrs: vec![ip(addr)],
        credential_hash: credential_hash(&format!("token-{id}")),
        policy: Arc::new(Policy::compile(&policy_spec).unwrap()),
        policy_spec,
        generation,
        ceiling: None,
        inspection: None,
    }
}

fn identify(registry: &Registry, addr: &str, id: &str) -> Result<Option<String>, IdentityError> {
    let cred = basic_credential(id, &format!("token-{id}"));
    registry
        .identify(ip(addr), Some(cred.as_bytes()))
        .map(|ctx| ctx.sandbox)
}

#[test]
fn an_unbound_member_is_refused_whatever_it_presents() {
    let registry = Registry::controlled();
    registry.upsert(entry("s", S_ADDR, 1)).unwrap();
    assert_eq!(
        registry.upsert_member("m", vec![ip(M_ADDR)], 1),
        Ok(UpsertOutcome::Created)
    );
    // A real sandbox's credential, none, or garbage: the address alone decides.
    assert_eq!(
        identify(&registry, M_ADDR, "s"),
        Err(IdentityError::SandboxNotClaimed)
    );
    assert_eq!(
        registry.identify(ip(M_ADDR), None).unwrap_err(),
        IdentityError::SandboxNotClaimed
    );
    assert_eq!(
        registry.identify_source(ip(M_ADDR)).unwrap_err(),
        IdentityError::SandboxNotClaimed
    );
    let mapped: IpAddr = "::ffff:10.213.0.11".parse().unwrap();
    assert_eq!(
        registry.identify(mapped, None).unwrap_err(),
        IdentityError::SandboxNotClaimed
    );
    assert_eq!(registry.owner_of(ip(M_ADDR)), None, "no sandbox to charge");
    assert_eq!(IdentityError::SandboxNotClaimed.status(), 403);
    assert_eq!(
        IdentityError::SandboxNotClaimed.code(),
        "sandbox_not_claimed"
    );
    assert_eq!(registry.len(), 1);
    assert_eq!(registry.member_count(), 1);
}

#[test]
fn member_registrations_are_fenced_by_generation() {
    let registry = Registry::controlled();
    registry.upsert_member("m", vec![ip(M_ADDR)], 2).unwrap();
    assert_eq!(
        registry.upsert_member("m", vec![ip(M_ADDR)], 2),
        Ok(UpsertOutcome::Unchanged)
    );
    assert_eq!(
        registry.upsert_member("m", vec![ip(M_ADDR)], 1),
        Err(RegistryError::StaleGeneration {
            current: 2,
            offered: 1
        })
    );
    assert_eq!(
        registry.upsert_member("m", vec![ip("10.213.0.12")], 2),
        Err(RegistryError::GenerationConflict { generation: 2 })
    );
    assert_eq!(
        registry.upsert_member("m", vec![ip("10.213.0.12")], 3),
        Ok(UpsertOutcome::Replaced { previous: 2 })
    );
    // The old address is free again; the new one is the member's.
    assert_eq!(
        registry.identify(ip(M_ADDR), None).unwrap_err(),
        IdentityError::UnknownSource
    );
    let rows = registry.members();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].generation, rows[0].source_addrs.clone()),
        (3, vec![ip("10.213.0.12")])
    );
    assert!(registry.remove_member("m"));
    assert!(!registry.remove_member("m"));
    assert!(registry.members().is_empty());
}

#[test]
fn bad_member_input_is_refused() {
    let registry = Registry::controlled();
    assert_eq!(
        registry.upsert_member("a/b", vec![ip(M_ADDR)], 1),
        Err(RegistryError::InvalidMemberId)
    );
    assert_eq!(
        registry.upsert_member("m", vec![], 1),
        Err(RegistryError::NoSourceAddrs)
    );
    assert_eq!(
        registry.upsert_claim(entry("s", S_ADDR, 1), Some("")),
        Err(RegistryError::InvalidMemberId)
    );
    let standalone = Registry::standalone(
        Arc::new(Policy::compile(&PolicySpec::default()).unwrap()),
        None,
    );
    assert_eq!(
        standalone.upsert_member("m", vec![ip(M_ADDR)], 1),
        Err(RegistryError::Standalone)
    );
}

#[test]
fn a_claim_replaces_the_member_with_the_sandbox() {
    let registry = Registry::controlled();
    registry.upsert_member("m", vec![ip(M_ADDR)], 1).unwrap();
    assert_eq!(
        registry.upsert_claim(entry("s", M_ADDR, 1), Some("m")),
        Ok(UpsertOutcome::Created)
    );
    assert_eq!(identify(&registry, M_ADDR, "s"), Ok(Some("s".to_owned())));
    assert!(registry.members().is_empty());
    // A second bind: idempotent at the same generation, refused at an older one.
    assert_eq!(
        registry.upsert_claim(entry("s", M_ADDR, 1), Some("m")),
        Ok(UpsertOutcome::Unchanged)
    );
    assert_eq!(
        registry.upsert_claim(entry("s", M_ADDR, 0), Some("m")),
        Err(RegistryError::StaleGeneration {
            current: 1,
            offered: 0
        })
    );
    // Another sandbox claiming the same member: the addresses are the first sandbox's.
    assert_eq!(
        registry.upsert_claim(entry("t", M_ADDR, 1), Some("m")),
        Err(RegistryError::AddressInUse {
            addr: ip(M_ADDR),
            owner: "s".to_owned()
        })
    );
    // A late registration of the member cannot take the address back.
    assert_eq!(
        registry.upsert_member("m", vec![ip(M_ADDR)], 2),
        Err(RegistryError::AddressInUse {
            addr: ip(M_ADDR),
            owner: "s".to_owned()
        })
    );
}

#[test]
fn members_and_sandboxes_never_share_an_address() {
    let registry = Registry::controlled();
    registry.upsert(entry("s", S_ADDR, 1)).unwrap();
    registry.upsert_member("m", vec![ip(M_ADDR)], 1).unwrap();
    assert_eq!(
        registry.upsert_member("n", vec![ip(S_ADDR)], 1),
        Err(RegistryError::AddressInUse {
            addr: ip(S_ADDR),
            owner: "s".to_owned()
        })
    );
    assert_eq!(
        registry.upsert_member("n", vec![ip(M_ADDR)], 1),
        Err(RegistryError::AddressHeldByMember {
            addr: ip(M_ADDR),
            member: "m".to_owned()
        })
    );
    // A plain push, or a claim of another member, cannot take a member's address.
    let held = Err(RegistryError::AddressHeldByMember {
        addr: ip(M_ADDR),
        member: "m".to_owned(),
    });
    assert_eq!(registry.upsert(entry("t", M_ADDR, 1)), held);
    registry
        .upsert_member("n", vec![ip("10.213.0.19")], 1)
        .unwrap();
    assert_eq!(
        registry.upsert_claim(entry("t", M_ADDR, 1), Some("n")),
        Err(RegistryError::MemberMismatch {
            member: "n".to_owned()
        })
    );
    // A claim that would move a registered sandbox without a new generation: refused, and
    // the member keeps its registration.
    assert_eq!(
        registry.upsert_claim(entry("s", M_ADDR, 1), Some("m")),
        Err(RegistryError::GenerationConflict { generation: 1 })
    );
    assert_eq!(
        registry.member_count(),
        2,
        "refused claims leave the members"
    );
    assert_eq!(
        identify(&registry, M_ADDR, "s"),
        Err(IdentityError::SandboxNotClaimed)
    );
}

#[test]
fn a_claim_whose_member_is_gone_is_a_plain_push() {
    let registry = Registry::controlled();
    assert_eq!(
        registry.upsert_claim(entry("s", M_ADDR, 1), Some("never-registered")),
        Ok(UpsertOutcome::Created)
    );
    assert_eq!(identify(&registry, M_ADDR, "s"), Ok(Some("s".to_owned())));
}
