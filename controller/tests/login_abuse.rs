//! Logins under abuse, in process over SQLite: the lockout turned against the admin (directly
//! and behind a trusted proxy), oversized emails, and the aggregated audit rows of failed
//! logins and refused tokens. Figures are printed (`--nocapture`). The argon2 flood has its
//! own binary (`argon2_flood.rs`), since it fills the process-wide argon2 queue on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/mod.rs"]
mod common;
#[path = "login_abuse/support.rs"]
mod support;

use airlock::accounts::user::Role;
use axum::http::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use support::{ip, Abuse, PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hammering_the_admin_never_locks_the_admin_out() {
    let h = Abuse::new(&[]).await;
    h.user("root@example.org", Role::Admin).await;
    let attacker = ip("198.51.100.66");
    let mut answers = (0, 0);
    let started = Instant::now();
    for _ in 0..50 {
        let reply = h
            .login("root@example.org", "not the password", attacker, None)
            .await;
        match reply.status {
            StatusCode::UNAUTHORIZED => answers.0 += 1,
            StatusCode::TOO_MANY_REQUESTS => answers.1 += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let hammered = started.elapsed();
    // The attacker's own source is slowed, even with the right password...
    let reply = h.login("root@example.org", PASSWORD, attacker, None).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // ...and the admin, from their own address, gets in right away.
    let asked = Instant::now();
    let reply = h
        .login("root@example.org", PASSWORD, ip("192.0.2.1"), None)
        .await;
    let admin_time = asked.elapsed();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    println!(
        "lockout: 50 wrong passwords for the admin from one source in {hammered:?}: {} answered \
         401, {} answered 429; the admin's login from another source succeeded in \
         {admin_time:?}",
        answers.0, answers.1
    );
    // Three free failures, then one per growing delay (1 s, 2 s, 4 s, ...).
    assert!((3..=8).contains(&answers.0), "{answers:?}");
    // One aggregated row (two if a minute turned) holds all fifty.
    let rows: Vec<Value> = h
        .audit()
        .await
        .into_iter()
        .filter(|r| r["action"] == "auth.login.failed" && r["source_ip"] == "198.51.100.66")
        .collect();
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert!((1..=2).contains(&rows.len()), "{rows:#?}");
    assert_eq!(total, 51, "{rows:#?}");
    assert_eq!(rows[0]["object"], "root@example.org");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_source() {
    let h = Abuse::new(&[("AIRLOCK_TRUSTED_PROXIES", "10.0.0.0/8")]).await;
    h.user("root@example.org", Role::Admin).await;
    let proxy = ip("10.0.0.5");
    for _ in 0..10 {
        let reply = h
            .login(
                "root@example.org",
                "not the password",
                proxy,
                Some("203.0.113.1"),
            )
            .await;
        assert!(
            reply.status == StatusCode::UNAUTHORIZED
                || reply.status == StatusCode::TOO_MANY_REQUESTS
        );
    }
    // The attacker behind the proxy is slowed; the admin behind the same proxy is not.
    let reply = h
        .login("root@example.org", PASSWORD, proxy, Some("203.0.113.1"))
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    // A client cannot pick its address: the proxy's right-most entry counts.
    let reply = h
        .login(
            "root@example.org",
            PASSWORD,
            proxy,
            Some("192.0.2.50, 203.0.113.1"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let reply = h
        .login("root@example.org", PASSWORD, proxy, Some("203.0.113.2"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // An untrusted peer's X-Forwarded-For is ignored.
    let reply = h
        .login(
            "nobody@example.org",
            "not the password",
            ip("192.0.2.9"),
            Some("203.0.113.77"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let audit = h.audit().await;
    let sources: Vec<&str> = audit
        .iter()
        .filter(|r| r["action"].as_str().unwrap().starts_with("auth.login"))
        .filter_map(|r| r["source_ip"].as_str())
        .collect();
    assert!(sources.contains(&"203.0.113.1"), "{sources:?}");
    assert!(sources.contains(&"203.0.113.2"), "{sources:?}");
    assert!(sources.contains(&"192.0.2.9"), "{sources:?}");
    assert!(
        !sources.contains(&"10.0.0.5") && !sources.contains(&"203.0.113.77"),
        "{sources:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_emails_are_refused_before_any_work() {
    let h = Abuse::new(&[]).await;
    h.user("kim@example.org", Role::Member).await;
    let source = ip("198.51.100.20");
    let long = format!("{}@example.org", "k".repeat(250));
    for _ in 0..50 {
        let reply = h.login(&long, "whatever password", source, None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert_eq!(reply.body["fields"][0]["field"], "email", "{}", reply.body);
    }
    // Nothing was throttled or recorded.
    let reply = h.login("kim@example.org", PASSWORD, source, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let audit = h.audit().await;
    assert!(
        !audit
            .iter()
            .any(|r| r["object"].as_str() == Some(long.as_str())),
        "{audit:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_one_row_per_source_and_minute() {
    let h = Abuse::new(&[]).await;
    for n in 0..40 {
        let bearer = format!("Bearer alt_{n:064x}");
        let reply = h
            .post(
                "/v1/tokens",
                json!({"name": "x"}),
                ip("198.51.100.30"),
                &[("authorization", &bearer)],
            )
            .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let rows: Vec<Value> = h
        .audit()
        .await
        .into_iter()
        .filter(|r| r["action"] == "auth.unauthorized")
        .collect();
    let total: u64 = rows.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert!((1..=2).contains(&rows.len()), "{rows:#?}");
    assert_eq!(total, 40);
    assert_eq!(rows[0]["source_ip"], "198.51.100.30");
    assert_eq!(rows[0]["status"], 401);
}
