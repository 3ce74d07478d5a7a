//! An unbound pool member, attacked from inside a real container on its own /29 with the proxy
//! attached (DinD over mTLS): once the container's address is registered at the proxy as a
//! member instead of a sandbox, every request from it is refused `403 sandbox_not_claimed`,
//! whatever credential it presents (its own former one, another sandbox's, none); the claim
//! (the sandbox entry pushed naming the member) gives the address back to the sandbox.
//!
//! It drives the proxy image the node runs, so it needs that image rebuilt from this tree.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use airlock::sandbox::SandboxId;
use airlock_wire::{PutMember, PutOutcome, PutSandbox};
use e2e::plane::{error_code, Plane, PlaneOptions};
use e2e::Timing;
use serde_json::Value;

#[tokio::test]
async fn an_unbound_member_is_refused_from_inside_until_it_is_claimed() {
    let mut timing = Timing::start("unbound_member");
    let mut opts = PlaneOptions::new("unbound_member", env!("CARGO_BIN_EXE_fake-dns"));
    opts.names = vec!["allowed.test={upstream}".to_owned()];
    let f = Plane::start(opts, &mut timing).await;
    let a = f.create(Value::Null).await;
    let b = f.create(Value::Null).await;
    let (proxy, a_cred) = f.credential(&a).await;
    let (_, b_cred) = f.credential(&b).await;
    let url = format!("http://{}/", f.upstream);
    let ok = f.fetch(&a, proxy, &url, Some(&a_cred)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    timing.phase("sandboxes");

    // The container at a's address becomes an unbound member.
    let id: SandboxId = a.parse().unwrap();
    let stored = f.store.live_egress_entries().await.unwrap();
    let entry = stored.into_iter().find(|e| e.sandbox_id == id).unwrap();
    let admin = f.plane.admin();
    admin.delete_sandbox(&a).await.unwrap();
    let member = PutMember {
        source_addrs: vec![entry.source_addr],
        generation: 1,
    };
    let registered = admin.put_member("member-a", &member).await.unwrap();
    assert_eq!(registered.outcome, PutOutcome::Created);

    for cred in [Some(a_cred.as_str()), Some(b_cred.as_str()), None] {
        let refused = f.fetch(&a, proxy, &url, cred).await;
        assert_eq!(refused.status, 403, "{refused:?}");
        assert_eq!(error_code(&refused), "sandbox_not_claimed", "{refused:?}");
    }
    let authority = format!("{}:443", f.upstream);
    let tunnel = f.connect(&a, proxy, &authority, &b_cred).await;
    assert_eq!(tunnel.status, 403, "{tunnel:?}");
    assert_eq!(error_code(&tunnel), "sandbox_not_claimed", "{tunnel:?}");
    let gateway = "GET /gw/anthropic/v1/messages HTTP/1.1\r\nHost: airlock.internal:3128\r\n\
                   Connection: close\r\n\r\n";
    let refused = f.send(&a, proxy, gateway).await;
    assert_eq!(error_code(&refused), "sandbox_not_claimed", "{refused:?}");
    timing.phase("refused-from-inside");

    // The claim: a's entry again, naming the member, at a newer generation.
    let body = PutSandbox {
        sandbox_id: None,
        source_addrs: vec![entry.source_addr],
        credential_hash: entry.credential_hash.clone(),
        policy: entry
            .policy
            .as_deref()
            .map(|p| serde_json::from_str(p).unwrap()),
        generation: u64::try_from(entry.generation).unwrap() + 1,
        ceiling: entry.ceiling.clone(),
        inspection: None,
        member: None,
    };
    let bound = admin.bind_member(&a, "member-a", &body).await.unwrap();
    assert_eq!(bound.outcome, PutOutcome::Created);
    assert!(admin.list_members().await.unwrap().members.is_empty());
    let ok = f.fetch(&a, proxy, &url, Some(&a_cred)).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let stolen = f.fetch(&a, proxy, &url, Some(&b_cred)).await;
    assert_eq!(error_code(&stolen), "bad_credential", "{stolen:?}");
    timing.phase("claimed");
}
