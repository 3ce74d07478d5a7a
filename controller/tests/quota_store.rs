//! Quotas, secrets and the audit trail at the store, on SQLite (a file) and on Postgres (a
//! fresh database on the test-support server): parallel creates never overshoot a quota, the
//! create rate is counted, a create's audit row commits with its reservation (and a refusal
//! leaves none), audit rows cannot be changed or removed, and secrets survive a key
//! rotation while a wrong key is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use airlock::accounts::quota::{Quota, QuotaKind, QuotaOverride};
use airlock::config::DatabaseConfig;
use airlock::sandbox::{Cpus, SandboxRequest, SandboxSpec};
use airlock::secrets::vault::{KeySource, SecretKey, Vault, VaultError};
use airlock::secrets::Exposure;
use airlock::store::{Created, Holds, NewAuditRecord, NewSandbox, StoreError, User};
use futures_util::future::join_all;

mod common;
use common::backends::{both_backends, Fixture};
use common::{maximums, user};

fn spec() -> SandboxSpec {
    SandboxRequest {
        image: "alpine:3".into(),
        cmd: vec!["sleep".into(), "60".into()],
        ..SandboxRequest::default()
    }
    .validate(&maximums())
    .unwrap()
}

/// Generous everywhere but `max_sandboxes`.
fn quota(max_sandboxes: u64) -> Quota {
    Quota {
        max_sandboxes,
        max_memory_mb: 1 << 30,
        max_cpus: Cpus::from_millis(1_000_000),
        max_lifetime: Duration::from_secs(86_400),
        creates_per_min: 1000,
        creates_per_hour: 1000,
    }
}

fn new_sandbox(owner: &User) -> NewSandbox {
    NewSandbox {
        owner: owner.id,
        spec: spec(),
        idempotency_key: None,
        node: Some("node-a".into()),
    }
}

// 20 parallel creates against a quota of 5: exactly 5 succeed, 15 are refused naming the
// quota, and the store holds exactly 5 live sandboxes. Another user is not affected.
both_backends!(parallel_creates_never_overshoot, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let bob = user(&f.store, "bob").await;
    let creates = (0..20).map(|_| {
        let store = f.store.clone();
        let new = new_sandbox(&alice);
        tokio::spawn(async move { store.create_sandbox_within_quota(new, quota(5)).await })
    });
    let results: Vec<_> = join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = results
        .iter()
        .filter(|r| matches!(r, Ok(Created::New(_))))
        .count();
    let refused: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Err(StoreError::QuotaExceeded(e)) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!((created, refused.len()), (5, 15), "created, refused");
    assert!(refused.iter().all(|e| e.kind == QuotaKind::MaxSandboxes));
    let usage = f.store.quota_usage(alice.id).await.unwrap();
    assert_eq!(usage.sandboxes, 5);
    assert_eq!(usage.memory_mb, 5 * 512);
    // Bob's quota is his own.
    let bobs = f
        .store
        .create_sandbox_within_quota(new_sandbox(&bob), quota(5));
    assert!(matches!(bobs.await, Ok(Created::New(_))));
});

// Overrides replace the defaults per field; the create rate is counted per minute and says
// when to retry; the memory quota sums live sandboxes.
both_backends!(overrides_rate_and_memory, |f: Fixture| async move {
    let carol = user(&f.store, "carol").await;
    let over = QuotaOverride {
        max_sandboxes: Some(100),
        creates_per_min: Some(3),
        ..QuotaOverride::default()
    };
    f.store.set_quota_override(carol.id, &over).await.unwrap();
    assert_eq!(f.store.quota_override(carol.id).await.unwrap(), over);
    for _ in 0..3 {
        let created = f
            .store
            .create_sandbox_within_quota(new_sandbox(&carol), quota(1))
            .await;
        assert!(matches!(created, Ok(Created::New(_))), "{created:?}");
    }
    let refused = f
        .store
        .create_sandbox_within_quota(new_sandbox(&carol), quota(1))
        .await;
    match refused {
        Err(StoreError::QuotaExceeded(e)) => {
            assert_eq!(e.kind, QuotaKind::CreatesPerMin);
            assert!(e.retry_after.is_some_and(|r| r <= Duration::from_secs(60)));
        }
        other => panic!("expected the rate quota, got {other:?}"),
    }

    let dave = user(&f.store, "dave").await;
    let over = QuotaOverride {
        max_memory_mb: Some(1000),
        ..QuotaOverride::default()
    };
    f.store.set_quota_override(dave.id, &over).await.unwrap();
    let first = f
        .store
        .create_sandbox_within_quota(new_sandbox(&dave), quota(10))
        .await;
    assert!(matches!(first, Ok(Created::New(_))));
    match f
        .store
        .create_sandbox_within_quota(new_sandbox(&dave), quota(10))
        .await
    {
        Err(StoreError::QuotaExceeded(e)) => assert_eq!(e.kind, QuotaKind::MaxMemoryMb),
        other => panic!("expected the memory quota, got {other:?}"),
    }
    let missing = airlock::accounts::user::UserId::new();
    let gone = f.store.set_quota_override(missing, &over).await;
    assert!(matches!(gone, Err(StoreError::NotFound)));
});

// The hourly create quota counts the creates of the last hour, ended sandboxes included: a
// create 59 minutes ago counts, one 61 minutes ago does not, and the refusal says to retry
// when the oldest counted create leaves the hour. Another user is not affected.
both_backends!(creates_per_hour_window, |f: Fixture| async move {
    let gail = user(&f.store, "gail").await;
    let hank = user(&f.store, "hank").await;
    let over = QuotaOverride {
        creates_per_hour: Some(3),
        ..QuotaOverride::default()
    };
    f.store.set_quota_override(gail.id, &over).await.unwrap();
    f.store.set_quota_override(hank.id, &over).await.unwrap();
    assert_eq!(f.store.quota_override(gail.id).await.unwrap(), over);
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    let (old, recent) = (now_ms - 61 * 60_000, now_ms - 59 * 60_000);
    let uid = |u: &User| match f.config {
        DatabaseConfig::Sqlite { .. } => format!("X'{}'", u.id.as_uuid().simple()),
        DatabaseConfig::Postgres { .. } => format!("'{}'::uuid", u.id.as_uuid()),
    };
    let sql = format!(
        "INSERT INTO sandbox_creates (user_id, at_ms) VALUES ({g}, {old}), ({g}, {old}),          ({g}, {old}), ({g}, {recent})",
        g = uid(&gail)
    );
    assert_eq!(raw(&f.config, &sql).await.unwrap(), 4);
    let usage = f.store.quota_usage(gail.id).await.unwrap();
    assert_eq!((usage.hour_creates, usage.recent_creates), (1, 0));
    // Two more fit (1 + 2 = 3); each is ended at once, and still counts.
    for _ in 0..2 {
        let created = f
            .store
            .create_sandbox_within_quota(new_sandbox(&gail), quota(100))
            .await;
        assert!(matches!(created, Ok(Created::New(_))), "{created:?}");
    }
    let ended = format!(
        "UPDATE sandboxes SET observed_state = 'exited' WHERE owner_id = {}",
        uid(&gail)
    );
    assert_eq!(raw(&f.config, &ended).await.unwrap(), 2);
    let usage = f.store.quota_usage(gail.id).await.unwrap();
    assert_eq!((usage.sandboxes, usage.hour_creates), (0, 3));
    match f
        .store
        .create_sandbox_within_quota(new_sandbox(&gail), quota(100))
        .await
    {
        Err(StoreError::QuotaExceeded(e)) => {
            assert_eq!(e.kind, QuotaKind::CreatesPerHour);
            assert_eq!(e.limit, airlock::accounts::quota::Amount::Whole(3));
            // The 59-minute-old create leaves the hour in about a minute.
            let retry = e.retry_after.unwrap();
            assert!(
                retry > Duration::from_secs(50) && retry <= Duration::from_secs(60),
                "{retry:?}"
            );
        }
        other => panic!("expected the hourly quota, got {other:?}"),
    }
    // The creates that passed the hour were pruned by the creates after them.
    let stale = format!("DELETE FROM sandbox_creates WHERE at_ms <= {old}");
    assert_eq!(raw(&f.config, &stale).await.unwrap(), 0);
    let created = f
        .store
        .create_sandbox_within_quota(new_sandbox(&hank), quota(100))
        .await;
    assert!(matches!(created, Ok(Created::New(_))), "{created:?}");
});

/// Runs raw SQL on the fixture's database, beside the store.
async fn raw(config: &DatabaseConfig, sql: &str) -> Result<u64, sqlx::Error> {
    match config {
        DatabaseConfig::Sqlite { path } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await?;
            let result = sqlx::query(sql).execute(&pool).await;
            pool.close().await;
            result.map(|r| r.rows_affected())
        }
        DatabaseConfig::Postgres { url } => {
            let pool = sqlx::PgPool::connect(url.expose()).await?;
            let result = sqlx::query(sql).execute(&pool).await;
            pool.close().await;
            result.map(|r| r.rows_affected())
        }
    }
}

// The audit table takes inserts, pages newest first, and refuses UPDATE and DELETE (and, on
// Postgres, TRUNCATE) from any client.
both_backends!(audit_is_append_only, |f: Fixture| async move {
    for i in 0..5 {
        let record = NewAuditRecord {
            action: format!("test.action{i}"),
            status: 200,
            ..NewAuditRecord::default()
        };
        f.store.append_audit(&record).await.unwrap();
    }
    let page = f.store.list_audit(None, 3).await.unwrap();
    let actions: Vec<_> = page.iter().map(|r| r.record.action.as_str()).collect();
    assert_eq!(actions, ["test.action4", "test.action3", "test.action2"]);
    let rest = f.store.list_audit(Some(page[2].id), 10).await.unwrap();
    assert_eq!(rest.len(), 2);

    for sql in [
        "UPDATE audit SET status = 500",
        "DELETE FROM audit",
        "DELETE FROM audit WHERE action = 'test.action0'",
    ] {
        let error = raw(&f.config, sql).await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{sql}: {error}");
    }
    if matches!(f.config, DatabaseConfig::Postgres { .. }) {
        let error = raw(&f.config, "TRUNCATE audit").await.unwrap_err();
        assert!(error.to_string().contains("append-only"), "{error}");
    }
    assert_eq!(f.store.list_audit(None, 100).await.unwrap().len(), 5);
});

// The create's audit row is appended in the reserving transaction: 12 parallel creates
// against a quota of 3 leave exactly 3 rows, each naming one of the 3 reserved sandboxes; the
// 9 refused creates leave none; an idempotent repeat writes no second row.
both_backends!(create_audit_row_in_reservation, |f: Fixture| async move {
    let alice = user(&f.store, "alice").await;
    let intent = NewAuditRecord {
        user: Some(alice.id),
        token: Some("session:1".into()),
        action: "POST /v1/sandboxes".into(),
        status: 201,
        ..NewAuditRecord::default()
    };
    let creates = (0..12).map(|_| {
        let (store, new, intent) = (f.store.clone(), new_sandbox(&alice), intent.clone());
        tokio::spawn(async move {
            store
                .create_sandbox_within_quota_holding(new, quota(3), Holds::default(), Some(&intent))
                .await
        })
    });
    let mut reserved = Vec::new();
    for result in join_all(creates).await {
        match result.unwrap() {
            Ok(Created::New(sandbox)) => reserved.push(sandbox.id.to_string()),
            Err(StoreError::QuotaExceeded(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(reserved.len(), 3);
    let rows = f.store.list_audit(None, 100).await.unwrap();
    let mut objects: Vec<String> = rows
        .iter()
        .map(|r| {
            assert_eq!(r.record.action, "POST /v1/sandboxes");
            assert_eq!((r.record.user, r.record.status), (Some(alice.id), 201));
            r.record.object.clone().unwrap()
        })
        .collect();
    objects.sort();
    reserved.sort();
    assert_eq!(
        objects, reserved,
        "one row per reserved sandbox, none for a refusal"
    );

    let bob = user(&f.store, "bob").await;
    let keyed = || NewSandbox {
        idempotency_key: Some("k1".into()),
        ..new_sandbox(&bob)
    };
    let intent = NewAuditRecord {
        user: Some(bob.id),
        ..intent
    };
    for _ in 0..2 {
        f.store
            .create_sandbox_within_quota_holding(keyed(), quota(3), Holds::default(), Some(&intent))
            .await
            .unwrap();
    }
    let bobs = f.store.list_audit(None, 100).await.unwrap();
    let bobs = bobs
        .iter()
        .filter(|r| r.record.user == Some(bob.id))
        .count();
    assert_eq!(bobs, 1, "an idempotent repeat writes no second row");
});

// Secrets are stored sealed (never the plaintext), a wrong key is refused at open, and a
// rotation re-seals everything so only the new key opens them.
both_backends!(secrets_seal_check_and_rotate, |f: Fixture| async move {
    let (erin, frank) = (user(&f.store, "erin").await, user(&f.store, "frank").await);
    let (key1, key2) = (SecretKey::generate(), SecretKey::generate());
    let source = KeySource::Env;
    let vault = Vault::open(&f.store, &key1, &source).await.unwrap();
    // Opening again with the same key works; another key is refused.
    Vault::open(&f.store, &key1, &source).await.unwrap();
    let wrong = Vault::open(&f.store, &key2, &source).await.unwrap_err();
    assert!(matches!(wrong, VaultError::KeyMismatch { .. }), "{wrong}");
    assert!(wrong.to_string().contains("rotate-key"), "{wrong}");

    let canary = format!("canary-{}", uuid::Uuid::new_v4());
    let sealed = vault.seal(erin.id, "db", canary.as_bytes());
    assert!(f
        .store
        .put_secret(erin.id, "db", &sealed, None)
        .await
        .unwrap());
    // A new secret with no exposure stays at the proxy.
    let exposure = |list: Vec<airlock::store::SecretMeta>| list[0].expose;
    let listed = f.store.list_secrets(erin.id).await.unwrap();
    assert_eq!(exposure(listed), Exposure::EgressOnly);
    let sealed = vault.seal(erin.id, "db", canary.as_bytes());
    let replaced = f
        .store
        .put_secret(erin.id, "db", &sealed, Some(Exposure::Env));
    assert!(!replaced.await.unwrap(), "a replace");
    let listed = f.store.list_secrets(erin.id).await.unwrap();
    assert_eq!(exposure(listed), Exposure::Env);
    // A replace that names no exposure keeps the stored one.
    let sealed = vault.seal(erin.id, "db", canary.as_bytes());
    assert!(!f
        .store
        .put_secret(erin.id, "db", &sealed, None)
        .await
        .unwrap());
    let other = vault.seal(frank.id, "db", b"frank's");
    f.store
        .put_secret(frank.id, "db", &other, None)
        .await
        .unwrap();
    let stored = f.store.sealed_secret(erin.id, "db").await.unwrap().unwrap();
    assert!(!stored.windows(canary.len()).any(|w| w == canary.as_bytes()));
    let names: Vec<_> = f.store.list_secrets(erin.id).await.unwrap();
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].name, "db");
    assert_eq!(names[0].expose, Exposure::Env);
    let (_, theirs) = f
        .store
        .sealed_secret_exposed(frank.id, "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(theirs, Exposure::EgressOnly, "each owner's row is its own");

    let (old, new) = (Vault::new(&key1), Vault::new(&key2));
    let rotated = f
        .store
        .rotate_secrets(
            |check| old.matches(check),
            |s| {
                let value = old.open_secret(s.owner, &s.name, &s.sealed)?;
                Ok::<_, VaultError>(new.seal(s.owner, &s.name, &value))
            },
            new.check_value(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated, 2);
    assert!(Vault::open(&f.store, &key1, &source).await.is_err());
    let vault2 = Vault::open(&f.store, &key2, &source).await.unwrap();
    let stored = f.store.sealed_secret(erin.id, "db").await.unwrap().unwrap();
    let opened = vault2.open_secret(erin.id, "db", &stored).unwrap();
    assert_eq!(opened, canary.as_bytes());
    // Re-sealing keeps each secret's exposure.
    let (_, kept) = f
        .store
        .sealed_secret_exposed(erin.id, "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept, Exposure::Env);
    let (_, kept) = f
        .store
        .sealed_secret_exposed(frank.id, "db")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept, Exposure::EgressOnly);

    // A rotation from a key that is not the current one changes nothing.
    let stale = f
        .store
        .rotate_secrets(
            |check| old.matches(check),
            |s| Ok::<_, VaultError>(s.sealed.clone()),
            old.check_value(),
        )
        .await;
    assert!(matches!(stale, Err(StoreError::KeyMismatch)));
    Vault::open(&f.store, &key2, &source).await.unwrap();

    assert!(f.store.delete_secret(erin.id, "db").await.unwrap());
    assert!(!f.store.delete_secret(erin.id, "db").await.unwrap());
    assert!(f
        .store
        .sealed_secret(frank.id, "db")
        .await
        .unwrap()
        .is_some());
});
